"""Random checkpoints in the official layout, for tests and benchmarks.

``make_random_checkpoint(root, size="tiny" | "full", seed=0)`` writes a complete model root
(``root/asset/...``): random weights of the tiny conformance dimensions or of the official ones,
a synthetic BERT WordPiece tokenizer of the matching size (21178 ids at full size) with the 50
official special tokens, and speaker statistics. Load it with ``verify=False``.

``speech_like(seconds)`` makes a synthetic voice for the finishing tests and benchmarks: a
harmonic series with a moving pitch, formant peaks, syllables and pauses, which can also be
rendered as the ideal result of a tempo or pitch change.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict

import numpy as np
import torch

from .config import (
    DECODER_WEIGHTS,
    DVAE_WEIGHTS,
    EMBED_WEIGHTS,
    GPT_WEIGHTS,
    SPK_STAT,
    TOKENIZER_DIR,
    VOCOS_WEIGHTS,
    ConvStackConfig,
    DecoderConfig,
    DVAEConfig,
    GFSQConfig,
    GPTConfig,
    VocosConfig,
)

#: The official added tokens, in id order (docs/architecture.md, "Tokenizer").
SPECIAL_TOKENS: list[str] = (
    [
        "[Sasr]",
        "[Pasr]",
        "[Easr]",
        "[Stts]",
        "[Ptts]",
        "[Etts]",
        "[Sbreak]",
        "[Pbreak]",
        "[Ebreak]",
        "[uv_break]",
        "[v_break]",
        "[lbreak]",
        "[llbreak]",
        "[undefine]",
        "[laugh]",
        "[spk_emb]",
        "[empty_spk]",
        "[music]",
        "[pure]",
    ]
    + [f"[break_{i}]" for i in range(8)]
    + [f"[laugh_{i}]" for i in range(3)]
    + [f"[oral_{i}]" for i in range(10)]
    + [f"[speed_{i}]" for i in range(10)]
)

_SIZES = {
    "tiny": dict(
        gpt=GPTConfig(64, 128, 4, 4, 2, 1024, num_text_tokens=170),
        dvae=DVAEConfig(
            32,
            100,
            ConvStackConfig(32, 64, 16, 1, 8),
            ConvStackConfig(32, 32, 16, 1, 8),
            GFSQConfig(dim=64),
        ),
        decoder=DecoderConfig(32, 100, ConvStackConfig(32, 32, 16, 1, 8)),
        vocos=VocosConfig(dim=32, intermediate_dim=64, num_layers=1),
    ),
    "full": dict(gpt=GPTConfig(), dvae=DVAEConfig(), decoder=DecoderConfig(), vocos=VocosConfig()),
}


def _wordpiece_vocab(size: int) -> list[str]:
    """A BERT-style vocabulary of ``size`` entries: specials, ASCII, pieces, then CJK."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = [chr(c) for c in range(33, 127) if not chr(c).isupper()]
    vocab += ascii_chars
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    words = ["hello", "world", "chat", "speech", "model", "test", "text", "the", "is", "this"]
    vocab += [w for w in words if w not in vocab]
    cjk = 0x4E00
    while len(vocab) < size and cjk <= 0x9FFF:
        vocab.append(chr(cjk))
        cjk += 1
    n = 0
    while len(vocab) < size:
        vocab.append(f"##{n}x")
        n += 1
    return vocab[:size]


def _write_tokenizer(path: str, num_text_tokens: int) -> None:
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers
    from transformers import BertTokenizerFast

    base = num_text_tokens - len(SPECIAL_TOKENS)
    vocab = {tok: i for i, tok in enumerate(_wordpiece_vocab(base))}
    raw = RawTokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    raw.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.decoder = decoders.WordPiece()
    tok = BertTokenizerFast(tokenizer_object=raw, do_lower_case=True)
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    if len(tok) != num_text_tokens:
        raise RuntimeError(f"synthetic tokenizer has {len(tok)} ids, wanted {num_text_tokens}")
    tok.save_pretrained(path)


def _save(module: torch.nn.Module, path: str) -> None:
    """The module's tensors as the official files hold them: floating tensors in float32 (the
    DVAE's mel front end runs in float64, but its window is stored as float32)."""
    from safetensors.torch import save_file

    state = {}
    for k, v in module.state_dict().items():
        v = v.detach()
        state[k] = (v.float() if v.is_floating_point() else v).contiguous()
    save_file(state, path)


def _random_tensor(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if name.endswith("norm.weight"):
        return 1 + 0.1 * torch.randn(shape, generator=gen)
    return torch.randn(shape, generator=gen) / shape[-1] ** 0.5


def _randomize(module: torch.nn.Module, gen: torch.Generator, layer_scale: float = 0.1) -> None:
    """Deterministic random weights: normal for matrices, small for biases and scales."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("coef"):
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            elif p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in**0.5)
            elif "norm" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:  # ConvNeXt layer scales
                p.fill_(layer_scale)


def make_random_checkpoint(root: str, size: str = "tiny", seed: int = 0) -> str:
    """Write a random model root in the official layout; returns ``root``."""
    from transformers import LlamaConfig, LlamaModel

    from .model.dvae import DVAE, Decoder
    from .model.embed import EmbedFile
    from .model.vocos import build_vocos

    if size not in _SIZES:
        raise ValueError(f"size must be 'tiny' or 'full', not {size!r}")
    cfg = _SIZES[size]
    g: GPTConfig = cfg["gpt"]
    gen = torch.Generator().manual_seed(seed)
    os.makedirs(os.path.join(root, "asset", "gpt"), exist_ok=True)
    path = lambda rel: os.path.join(root, rel)  # noqa: E731

    llama = LlamaConfig(
        hidden_size=g.hidden_size,
        intermediate_size=g.intermediate_size,
        num_attention_heads=g.num_attention_heads,
        num_key_value_heads=g.num_key_value_heads,
        num_hidden_layers=g.num_hidden_layers,
        max_position_embeddings=g.max_position_embeddings,
        rms_norm_eps=g.rms_norm_eps,
        vocab_size=8,
        use_cache=False,
    )
    with torch.device("meta"):  # shapes only: random values are drawn below, once
        body = LlamaModel(llama)
    state = {k: _random_tensor(k, tuple(v.shape), gen) for k, v in body.state_dict().items()}
    from safetensors.torch import save_file

    save_file(state, path(GPT_WEIGHTS), metadata={"format": "pt"})
    conf = llama.to_dict()
    conf.update(
        num_audio_tokens=g.num_audio_tokens,
        num_text_tokens=g.num_text_tokens,
        num_vq=g.num_vq,
        architectures=["LlamaModel"],
    )
    with open(os.path.join(root, "asset", "gpt", "config.json"), "w", encoding="utf-8") as f:
        json.dump(conf, f, indent=2)
    del state

    embed = EmbedFile(g.hidden_size, g.num_text_tokens, g.num_audio_tokens, g.num_vq)
    _randomize(embed, gen)
    _save(embed, path(EMBED_WEIGHTS))
    for module, rel in (
        (DVAE(cfg["dvae"]), DVAE_WEIGHTS),
        (Decoder(cfg["decoder"]), DECODER_WEIGHTS),
        (build_vocos(cfg["vocos"]), VOCOS_WEIGHTS),
    ):
        _randomize(module, gen)
        _save(module, path(rel))
    std = torch.rand(g.hidden_size, generator=gen) + 0.5
    mean = 0.1 * torch.randn(g.hidden_size, generator=gen)
    torch.save(torch.cat([std, mean]), path(SPK_STAT))
    _write_tokenizer(path(TOKENIZER_DIR), g.num_text_tokens)
    with open(os.path.join(root, "chattts-random.json"), "w", encoding="utf-8") as f:
        json.dump({"size": size, "seed": seed, "gpt": asdict(g)}, f, indent=2)
    return root


def speech_like(
    seconds: float, rate: int = 24000, *, seed: int = 0, tempo: float = 1.0, pitch: float = 0.0
) -> np.ndarray:
    """A synthetic voice, float32 (round(seconds · rate / tempo),) peaking near 0.3.

    Harmonics (to 4 kHz) of a pitch of 140 Hz ± 25 Hz with 5.5 Hz vibrato, shaped by three
    formant peaks (600, 1700, 2600 Hz), in 4 Hz syllables with a pause every 3.3 s. ``tempo``
    and ``pitch`` (semitones) render what an ideal stretcher would make of the same voice:
    the same contours played ``tempo`` times faster, the pitch moved and the formants kept.
    ``seed`` draws the harmonics' phases.
    """
    rng = np.random.default_rng(seed)
    n = int(round(seconds * rate / tempo))
    t = np.arange(n) / rate * tempo  # the voice's own time
    f0 = 2.0 ** (pitch / 12) * (
        140 + 25 * np.sin(2 * np.pi * 0.7 * t) + 4 * np.sin(2 * np.pi * 5.5 * t)
    )
    phase = 2 * np.pi * np.cumsum(f0) / rate
    wav = np.zeros(n)
    for k in range(1, 60):
        f = k * f0
        formants = (
            1
            + 2 * np.exp(-(((f - 600) / 200) ** 2))
            + 1.5 * np.exp(-(((f - 1700) / 300) ** 2))
            + np.exp(-(((f - 2600) / 400) ** 2))
        )
        wav += (f < 4000) * formants / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    syllables = (0.5 - 0.5 * np.cos(2 * np.pi * 4 * t)) ** 1.5
    pauses = np.sin(2 * np.pi * 0.3 * t) > -0.7
    return (0.05 * wav * syllables * pauses).astype(np.float32)
