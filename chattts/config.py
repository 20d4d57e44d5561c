"""Typed model configuration with the official defaults, read from a checkpoint's shapes.

Every dimension that a tensor shape shows is taken from the checkpoint (so a smaller model in
the official layout loads with no extra argument); hyper-parameters that no shape shows keep
the official values (docs/architecture.md, "Model files").
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Optional

from .errors import AssetNotFoundError, WeightsError

#: Files of a model root, relative to it.
GPT_CONFIG = "asset/gpt/config.json"
GPT_WEIGHTS = "asset/gpt/model.safetensors"
EMBED_WEIGHTS = "asset/Embed.safetensors"
DVAE_WEIGHTS = "asset/DVAE.safetensors"
DECODER_WEIGHTS = "asset/Decoder.safetensors"
VOCOS_WEIGHTS = "asset/Vocos.safetensors"
TOKENIZER_DIR = "asset/tokenizer"
SPK_STAT = "asset/spk_stat.pt"


@dataclass
class GPTConfig:
    """The LLaMA body and its embeddings/heads (official: 768 hidden, 20 layers)."""

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_attention_heads: int = 12
    num_key_value_heads: int = 12
    num_hidden_layers: int = 20
    max_position_embeddings: int = 4096
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    #: ``"default"`` or ``"linear"`` (positions divided by ``rope_factor``)
    rope_type: str = "default"
    rope_factor: float = 1.0
    #: per-head size; None: hidden_size // num_attention_heads (official 64)
    head_dim: Optional[int] = None
    hidden_act: str = "silu"
    attention_bias: bool = False
    mlp_bias: bool = False
    num_audio_tokens: int = 626
    num_text_tokens: int = 21178
    num_vq: int = 4


@dataclass
class ConvStackConfig:
    """A ConvNeXt decoder stack: conv_in (idim -> bn_dim -> hidden), n_layer blocks, conv_out."""

    idim: int
    odim: int
    hidden: int
    n_layer: int
    bn_dim: int
    kernel_size: int = 7
    dilation: int = 2


@dataclass
class GFSQConfig:
    """Grouped residual finite scalar quantiser of the DVAE."""

    dim: int = 1024
    levels: tuple[int, ...] = (5, 5, 5, 5)
    groups: int = 2
    num_quantizers: int = 2


@dataclass
class DVAEConfig:
    """The DVAE: mel encoder, GFSQ, decoder (official dim 512)."""

    dim: int = 512
    n_mels: int = 100
    encoder: ConvStackConfig = field(
        default_factory=lambda: ConvStackConfig(512, 1024, 256, 12, 128)
    )
    decoder: ConvStackConfig = field(
        default_factory=lambda: ConvStackConfig(512, 512, 256, 12, 128)
    )
    vq: GFSQConfig = field(default_factory=GFSQConfig)


@dataclass
class DecoderConfig:
    """The Decoder that turns GPT hidden states into mels (official dim 384)."""

    dim: int = 384
    n_mels: int = 100
    decoder: ConvStackConfig = field(
        default_factory=lambda: ConvStackConfig(384, 384, 512, 12, 128)
    )


@dataclass
class VocosConfig:
    """The Vocos vocoder (mel -> 24 kHz waveform)."""

    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 100
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8


@dataclass
class ModelConfig:
    """Configuration of the whole stack."""

    gpt: GPTConfig = field(default_factory=GPTConfig)
    dvae: DVAEConfig = field(default_factory=DVAEConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    vocos: VocosConfig = field(default_factory=VocosConfig)

    @property
    def sample_rate(self) -> int:
        return self.vocos.sample_rate

    @property
    def samples_per_step(self) -> int:
        """Audio samples per code step: two mel frames of one hop each."""
        return 2 * self.vocos.hop_length

    @classmethod
    def from_model_root(cls, root: str) -> ModelConfig:
        """Read every dimension from the files under ``root`` (a model root: docs/architecture.md,
        "Model files")."""
        gpt = _gpt_config(root)
        return cls(
            gpt=gpt,
            dvae=dvae_config(os.path.join(root, DVAE_WEIGHTS)),
            decoder=decoder_config(os.path.join(root, DECODER_WEIGHTS)),
            vocos=vocos_config(os.path.join(root, VOCOS_WEIGHTS)),
        )


def read_shapes(path: str) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a safetensors file, read from its header only."""
    from safetensors import safe_open

    if not os.path.isfile(path):
        raise AssetNotFoundError(f"model file not found: {path}")
    try:
        with safe_open(path, framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise WeightsError(f"{path}: not a readable safetensors file ({e})") from e


def _need(shapes: dict, path: str, name: str, ndim: int) -> tuple[int, ...]:
    if name not in shapes:
        raise WeightsError(f"{path}: missing tensor {name!r}")
    shape = shapes[name]
    if len(shape) != ndim:
        raise WeightsError(f"{path}: tensor {name!r} has shape {list(shape)}, expected {ndim} dims")
    return shape


def _count(shapes: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(idx) + 1 if idx else 0


def _check(path: str, name: str, expected: object, found: object) -> None:
    if expected != found:
        raise WeightsError(f"{path}: tensor {name!r}: expected {expected}, found {found}")


#: RoPE variants the GPT implements (transformers' names).
ROPE_TYPES = ("default", "linear")


def _read_json(cfg_path: str) -> dict:
    if not os.path.isfile(cfg_path):
        raise AssetNotFoundError(f"model file not found: {cfg_path}")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise WeightsError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise WeightsError(f"{cfg_path}: expected a JSON object")
    return raw


def read_gpt_json(cfg_path: str) -> GPTConfig:
    """The LLaMA hyper-parameters of ``asset/gpt/config.json`` (transformers 4 or 5 format)."""
    return _gpt_from_dict(_read_json(cfg_path), cfg_path)


def _gpt_from_dict(raw: dict, cfg_path: str) -> GPTConfig:
    # transformers 5 writes "rope_parameters", transformers 4 "rope_theta" + "rope_scaling"
    rope = raw.get("rope_parameters") or raw.get("rope_scaling") or {}
    defaults = GPTConfig()
    try:
        head_dim = raw.get("head_dim")
        gpt = GPTConfig(
            hidden_size=int(raw["hidden_size"]),
            intermediate_size=int(raw["intermediate_size"]),
            num_attention_heads=int(raw["num_attention_heads"]),
            num_key_value_heads=int(raw.get("num_key_value_heads", raw["num_attention_heads"])),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            max_position_embeddings=int(
                raw.get("max_position_embeddings", defaults.max_position_embeddings)
            ),
            rms_norm_eps=float(raw.get("rms_norm_eps", defaults.rms_norm_eps)),
            rope_theta=float(raw.get("rope_theta", rope.get("rope_theta", defaults.rope_theta))),
            rope_type=str(rope.get("rope_type", rope.get("type", "default"))),
            rope_factor=float(rope.get("factor", 1.0)),
            head_dim=None if head_dim is None else int(head_dim),
            hidden_act=str(raw.get("hidden_act", "silu")),
            attention_bias=bool(raw.get("attention_bias", False)),
            mlp_bias=bool(raw.get("mlp_bias", False)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise WeightsError(f"{cfg_path}: missing or invalid field {e}") from e
    if gpt.rope_type not in ROPE_TYPES:
        raise WeightsError(
            f"{cfg_path}: rope type {gpt.rope_type!r} is not supported (only {ROPE_TYPES})"
        )
    if gpt.hidden_act != "silu":
        raise WeightsError(f"{cfg_path}: hidden_act {gpt.hidden_act!r} (only 'silu' is supported)")
    for key in ("num_audio_tokens", "num_text_tokens", "num_vq"):
        if key in raw:
            setattr(gpt, key, int(raw[key]))
    return gpt


def _gpt_config(root: str) -> GPTConfig:
    cfg_path = os.path.join(root, GPT_CONFIG)
    raw = _read_json(cfg_path)
    gpt = _gpt_from_dict(raw, cfg_path)
    emb_path = os.path.join(root, EMBED_WEIGHTS)
    shapes = read_shapes(emb_path)
    gpt.num_vq = _count(shapes, r"emb_code\.(\d+)\.weight$")
    if gpt.num_vq == 0:
        raise WeightsError(f"{emb_path}: missing tensor 'emb_code.0.weight'")
    gpt.num_text_tokens, h = _need(shapes, emb_path, "emb_text.weight", 2)
    _check(emb_path, "emb_text.weight", f"hidden size {gpt.hidden_size}", f"hidden size {h}")
    gpt.num_audio_tokens = _need(shapes, emb_path, "emb_code.0.weight", 2)[0]
    for key in ("num_audio_tokens", "num_text_tokens", "num_vq"):
        if key in raw and int(raw[key]) != getattr(gpt, key):
            raise WeightsError(
                f"{emb_path}: {key} is {getattr(gpt, key)} but {cfg_path} says {raw[key]}"
            )
    return gpt


def conv_stack_config(shapes: dict, path: str, prefix: str) -> ConvStackConfig:
    """Read a ConvNeXt stack's dimensions from the tensors under ``prefix``."""
    bn_dim, idim, _ = _need(shapes, path, f"{prefix}conv_in.0.weight", 3)
    hidden = _need(shapes, path, f"{prefix}conv_in.2.weight", 3)[0]
    odim = _need(shapes, path, f"{prefix}conv_out.weight", 3)[0]
    n_layer = _count(shapes, re.escape(prefix) + r"decoder_block\.(\d+)\.")
    kernel = _need(shapes, path, f"{prefix}decoder_block.0.dwconv.weight", 3)[2] if n_layer else 7
    return ConvStackConfig(idim, odim, hidden, n_layer, bn_dim, kernel_size=kernel)


def dvae_config(path: str) -> DVAEConfig:
    """DVAE dimensions read from ``DVAE.safetensors``."""
    shapes = read_shapes(path)
    n_mels = _need(shapes, path, "coef", 3)[1]
    encoder = conv_stack_config(shapes, path, "encoder.")
    decoder = conv_stack_config(shapes, path, "decoder.")
    groups = _count(shapes, r"vq_layer\.quantizer\.rvqs\.(\d+)\.")
    if groups == 0:
        raise WeightsError(f"{path}: missing tensors 'vq_layer.quantizer.rvqs.N.*'")
    vq = GFSQConfig(dim=encoder.odim, groups=groups)
    proj = shapes.get("vq_layer.quantizer.rvqs.0.project_in.weight")
    if proj is not None:
        _check(
            path,
            "vq_layer.quantizer.rvqs.0.project_in.weight",
            [len(vq.levels), vq.dim // groups],
            list(proj),
        )
    return DVAEConfig(dim=decoder.idim, n_mels=n_mels, encoder=encoder, decoder=decoder, vq=vq)


def decoder_config(path: str) -> DecoderConfig:
    """Decoder dimensions read from ``Decoder.safetensors``."""
    shapes = read_shapes(path)
    n_mels = _need(shapes, path, "coef", 3)[1]
    decoder = conv_stack_config(shapes, path, "decoder.")
    return DecoderConfig(dim=decoder.idim, n_mels=n_mels, decoder=decoder)


def vocos_config(path: str) -> VocosConfig:
    """Vocos dimensions read from ``Vocos.safetensors``."""
    shapes = read_shapes(path)
    dim, n_mels, _ = _need(shapes, path, "backbone.embed.weight", 3)
    inter = _need(shapes, path, "backbone.convnext.0.pwconv1.weight", 2)[0]
    out = _need(shapes, path, "head.out.weight", 2)[0]
    return VocosConfig(
        n_fft=out - 2,
        n_mels=n_mels,
        dim=dim,
        intermediate_dim=inter,
        num_layers=_count(shapes, r"backbone\.convnext\.(\d+)\."),
    )


def default_device(experimental: bool = False) -> "Optional[str]":
    """CUDA when present, else MPS when ``experimental`` and present, else CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if experimental and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
