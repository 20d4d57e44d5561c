"""The Vocos vocoder (log-mel -> 24 kHz waveform), built with the ``vocos`` package.

See docs/architecture.md, "Vocos".
"""

from __future__ import annotations

import torch
from torch import nn

from ..config import VocosConfig, vocos_config
from .loading import load_module


def build_vocos(cfg: VocosConfig) -> nn.Module:
    """A ``vocos.Vocos`` with the official architecture and the dimensions of ``cfg``.

    ``decode(mel)`` maps (B, n_mels, F) to (B, (F − 1) · hop_length) samples.
    """
    from vocos import Vocos
    from vocos.feature_extractors import MelSpectrogramFeatures
    from vocos.heads import ISTFTHead
    from vocos.models import VocosBackbone

    return Vocos(
        feature_extractor=MelSpectrogramFeatures(
            sample_rate=cfg.sample_rate,
            n_fft=cfg.n_fft,
            hop_length=cfg.hop_length,
            n_mels=cfg.n_mels,
            padding="center",
        ),
        backbone=VocosBackbone(
            input_channels=cfg.n_mels,
            dim=cfg.dim,
            intermediate_dim=cfg.intermediate_dim,
            num_layers=cfg.num_layers,
        ),
        head=ISTFTHead(dim=cfg.dim, n_fft=cfg.n_fft, hop_length=cfg.hop_length, padding="center"),
    )


def load_vocos(path: str) -> nn.Module:
    """Build with the dimensions of ``Vocos.safetensors`` and load it strictly."""
    return load_module(build_vocos(vocos_config(path)), path).eval().requires_grad_(False)


@torch.inference_mode()
def vocos_decode(vocos: nn.Module, mel: torch.Tensor) -> torch.Tensor:
    """(B, n_mels, F) log-mel -> (B, (F − 1) · hop) float32 waveform."""
    param = next(vocos.parameters())
    return vocos.decode(mel.to(param.dtype)).float()
