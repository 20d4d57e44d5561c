"""The Decoder and Vocos on ONNX Runtime: GPT hidden states or log-mels -> 24 kHz audio.

The float32 ONNX Runtime backend decodes with these graphs. Measured on 2 idle cores
(full-size random weights, 96 code steps, seconds per audio second, batch 1 / 8): torch
float32 0.037 / 0.034, these graphs 0.033 / 0.029 (error 1e-6), torch int8 0.019 / 0.019 —
so ``quantize="int8"`` keeps torch's int8 Decoder and Vocos (docs/engine.md, "ONNX Runtime").

Two graphs, exported once with ``torch.onnx.export`` from the float modules of the model
files and cached beside the GPT's graph (:func:`chattts.generation.ort_convert.converted_entry`):

* ``decoder.onnx``: hidden states (B, H, T) -> log-mel (B, n_mels, 2T);
* ``vocos.onnx``: log-mel (B, n_mels, F) -> the real and imaginary parts of Vocos' spectrum
  (B, n_fft / 2 + 1, F) (its backbone and head, magnitudes clipped as Vocos clips them).

The inverse STFT stays in torch (``torch.istft``, as Vocos' head runs it), so the vocos
package is not imported at run time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from typing import Optional

import numpy as np
import torch
from torch import nn

from ..assets.cache import checkpoint_sha256
from ..config import DECODER_WEIGHTS, VOCOS_WEIGHTS, vocos_config
from ..generation.ort_backend import import_onnxruntime
from ..generation.ort_convert import converted_entry, default_cache_dir

logger = logging.getLogger("chattts")

DECODER_GRAPH, VOCOS_GRAPH = "decoder.onnx", "vocos.onnx"


class _Spectrum(nn.Module):
    """Vocos without its inverse STFT: log-mel (B, n_mels, F) -> (real, imag) (B, bins, F)."""

    def __init__(self, vocos: nn.Module) -> None:
        super().__init__()
        self.backbone, self.out = vocos.backbone, vocos.head.out

    def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.out(self.backbone(mel)).transpose(1, 2)
        log_mag, phase = x.chunk(2, dim=1)
        mag = torch.exp(log_mag).clip(max=1e2)
        return mag * torch.cos(phase), mag * torch.sin(phase)


class _DecoderGraph(nn.Module):
    """The Decoder's ``decode`` as a module: hidden states (B, H, T) -> log-mel."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, hiddens: torch.Tensor) -> torch.Tensor:
        return self.decoder.decode(hiddens)


def _export(module: nn.Module, example: torch.Tensor, path: str, outputs: list[str]) -> None:
    dynamic = {"input": {0: "batch", 2: "time"}, **{o: {0: "batch", 2: "time"} for o in outputs}}
    # the TorchScript exporter (torch's maintained path for fixed graphs with dynamic axes)
    # warns that torch.export is the future default; the warning is for torch's users
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module,
            (example,),
            path,
            input_names=["input"],
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )


def converted_decoders(asset_dir: str, cache_dir: Optional[str] = None) -> str:
    """The cache folder holding ``decoder.onnx`` and ``vocos.onnx`` of ``asset_dir``'s
    ``Decoder.safetensors`` and ``Vocos.safetensors`` (exported first when needed)."""
    cache_dir = cache_dir or default_cache_dir()
    decoder_file = os.path.join(asset_dir, os.path.basename(DECODER_WEIGHTS))
    vocos_file = os.path.join(asset_dir, os.path.basename(VOCOS_WEIGHTS))
    shas = [checkpoint_sha256(p, cache_dir) for p in (decoder_file, vocos_file)]
    sha = hashlib.sha256("".join(shas).encode()).hexdigest()

    def build(out: str) -> dict:
        from ..model.dvae import Decoder
        from ..model.vocos import load_vocos

        logger.info("exporting the Decoder and Vocos to ONNX Runtime")
        decoder = Decoder.from_file(decoder_file)
        vocos = load_vocos(vocos_file)
        hidden = 2 * decoder.cfg.decoder.idim  # two frames per code step
        example = torch.randn(1, hidden, 8)
        _export(_DecoderGraph(decoder), example, os.path.join(out, DECODER_GRAPH), ["mel"])
        example = torch.randn(1, vocos.backbone.embed.in_channels, 16)
        _export(_Spectrum(vocos), example, os.path.join(out, VOCOS_GRAPH), ["re", "im"])
        return {"sources": [decoder_file, vocos_file], "source_sha256s": shas}

    return converted_entry("decoders", sha, "fp32", cache_dir, build)


class OrtDecoders:
    """The exported Decoder and Vocos in two ONNX Runtime sessions, and Vocos' inverse STFT.

    Args:
        entry: a folder from :func:`converted_decoders`.
        vocos_file: ``Vocos.safetensors`` (its STFT sizes).
        threads: intra-op threads (default: torch's thread count).
    """

    def __init__(self, entry: str, vocos_file: str, threads: Optional[int] = None) -> None:
        ort = import_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        providers = ["CPUExecutionProvider"]
        self.entry = entry
        self.decoder = ort.InferenceSession(
            os.path.join(entry, DECODER_GRAPH), options, providers=providers
        )
        self.vocos = ort.InferenceSession(
            os.path.join(entry, VOCOS_GRAPH), options, providers=providers
        )
        cfg = vocos_config(vocos_file)
        self.n_fft, self.hop_length = cfg.n_fft, cfg.hop_length
        self.window = torch.hann_window(cfg.n_fft)

    def mel(self, hiddens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, H, T) -> log-mel (B, n_mels, 2T) float32."""
        x = np.ascontiguousarray(hiddens.detach().float().cpu().numpy())
        return torch.from_numpy(self.decoder.run(None, {"input": x})[0])

    @torch.inference_mode()
    def waveform(self, mel: torch.Tensor) -> torch.Tensor:
        """Log-mel (B, n_mels, F) -> (B, (F − 1) · hop) float32 waveform."""
        x = np.ascontiguousarray(mel.detach().float().cpu().numpy())
        re, im = self.vocos.run(None, {"input": x})
        spectrum = torch.complex(torch.from_numpy(re), torch.from_numpy(im))
        # Vocos' "center" inverse STFT (its ISTFT module is torch.istft with these arguments)
        return torch.istft(
            spectrum, self.n_fft, self.hop_length, self.n_fft, self.window, center=True
        ).float()
