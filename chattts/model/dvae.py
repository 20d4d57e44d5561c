"""DVAE and Decoder: ConvNeXt stacks between codes / hidden states and log-mels.

See docs/architecture.md, "DVAE and Decoder".
"""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F
from torch import nn

from ..config import (
    ConvStackConfig,
    DecoderConfig,
    DVAEConfig,
    GFSQConfig,
    decoder_config,
    dvae_config,
)
from ..errors import WeightsError
from .loading import load_module


class ConvNeXtBlock(nn.Module):
    """Depthwise conv -> LayerNorm -> Linear(d, 4d) -> GELU -> Linear(4d, d) -> scale -> + x.

    Input and output: (B, d, T).
    """

    def __init__(self, dim: int, inner: int, kernel_size: int = 7, dilation: int = 2) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(
            dim,
            dim,
            kernel_size,
            padding=dilation * (kernel_size // 2),
            dilation=dilation,
            groups=dim,
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, inner)
        self.pwconv2 = nn.Linear(inner, dim)
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).transpose(1, 2)
        y = self.pwconv2(F.gelu(self.pwconv1(self.norm(y))))
        return x + (y * self.weight).transpose(1, 2)


class ConvStack(nn.Module):
    """``conv_in`` (idim -> bn_dim -> hidden), ConvNeXt blocks, ``conv_out`` (hidden -> odim).

    Input (B, idim, T) -> output (B, odim, T).
    """

    def __init__(self, cfg: ConvStackConfig) -> None:
        super().__init__()
        self.conv_in = nn.Sequential(
            nn.Conv1d(cfg.idim, cfg.bn_dim, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(cfg.bn_dim, cfg.hidden, 3, padding=1),
        )
        self.decoder_block = nn.ModuleList(
            ConvNeXtBlock(cfg.hidden, 4 * cfg.hidden, cfg.kernel_size, cfg.dilation)
            for _ in range(cfg.n_layer)
        )
        self.conv_out = nn.Conv1d(cfg.hidden, cfg.odim, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.decoder_block:
            x = block(x)
        return self.conv_out(x)


def interleave_steps(x: torch.Tensor) -> torch.Tensor:
    """(B, 2·d, T) -> (B, d, 2T): frame 2t is channels [0, d) of step t, 2t+1 is [d, 2d)."""
    b, c, t = x.shape
    return x.view(b, 2, c // 2, t).permute(0, 2, 3, 1).reshape(b, c // 2, 2 * t)


class _Projections(nn.Module):
    """The learned part of one residual FSQ: project_in (d -> levels) and project_out."""

    def __init__(self, dim: int, codebook_dim: int) -> None:
        super().__init__()
        self.project_in = nn.Linear(dim, codebook_dim)
        self.project_out = nn.Linear(codebook_dim, dim)


class _GroupedProjections(nn.Module):
    """Stand-in with the parameter names of ``GroupedResidualFSQ`` (``rvqs.{g}.project_*``)."""

    def __init__(self, cfg: GFSQConfig) -> None:
        super().__init__()
        dim = cfg.dim // cfg.groups
        self.rvqs = nn.ModuleList(_Projections(dim, len(cfg.levels)) for _ in range(cfg.groups))


class GFSQ(nn.Module):
    """Grouped residual FSQ (vector-quantize-pytorch) with codes laid out (B, G·R, T).

    Its only weights are the projections, loaded strictly with the DVAE. The package's
    quantiser (whose numerics define the codes) is built from them on first use: importing
    vector-quantize-pytorch pulls in einx and torch._dynamo (about a second and 115 MB), which
    generating speech with the Decoder never needs.
    """

    def __init__(self, cfg: GFSQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.groups = cfg.groups
        self.num_quantizers = cfg.num_quantizers
        self.quantizer: nn.Module = _GroupedProjections(cfg)
        self._lock = threading.Lock()

    def _quantizer(self) -> nn.Module:
        """The ``GroupedResidualFSQ`` holding this module's projections (built once)."""
        if isinstance(self.quantizer, _GroupedProjections):
            with self._lock:
                if isinstance(self.quantizer, _GroupedProjections):
                    self.quantizer = self._materialise(self.quantizer)
        return self.quantizer

    def _materialise(self, stand_in: nn.Module) -> nn.Module:
        from vector_quantize_pytorch import GroupedResidualFSQ

        weight = stand_in.rvqs[0].project_in.weight
        real = GroupedResidualFSQ(
            dim=self.cfg.dim,
            levels=list(self.cfg.levels),
            num_quantizers=self.cfg.num_quantizers,
            groups=self.cfg.groups,
        )
        try:
            real.load_state_dict(stand_in.state_dict(), strict=True)
        except RuntimeError as e:
            raise WeightsError(f"DVAE vq_layer: the GFSQ weights do not fit ({e})") from e
        return real.to(weight.device).eval().requires_grad_(False)

    def embed(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, G·R, T) -> features (B, dim, T)."""
        b, _, t = codes.shape
        idx = codes.view(b, self.groups, self.num_quantizers, t).permute(1, 0, 3, 2)
        return self._quantizer().get_output_from_indices(idx.long()).transpose(1, 2)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Features (B, dim, T) -> codes (B, G·R, T) in (g, r) order."""
        _, idx = self._quantizer()(x.transpose(1, 2))  # (G, B, T, R)
        g, b, t, r = idx.shape
        return idx.permute(1, 0, 3, 2).reshape(b, g * r, t)


class _MelFrontEnd(nn.Module):
    """Waveform (B, N) -> magnitude mel spectrogram (B, n_mels, N // 256 + 1), in float64.

    The log of near-silent bins magnifies rounding: in float32 the FFT kernels of different
    CPUs (AVX2, AVX-512) differ enough there to flip a code of the quantiser, so a speaker
    sample would depend on the machine. In float64 the codes are the same everywhere.
    """

    def __init__(self, n_mels: int) -> None:
        super().__init__()
        import torchaudio

        # built on the CPU even inside a meta-device context (torchaudio computes the mel
        # filter bank eagerly); the buffers are small and follow the module's later .to()
        with torch.device("cpu"):
            self.mel_spec = torchaudio.transforms.MelSpectrogram(
                sample_rate=24000, n_fft=1024, hop_length=256, n_mels=n_mels, center=True, power=1
            ).double()

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        return self.mel_spec.to(torch.float64)(wav.double())


class DVAE(nn.Module):
    """The DVAE: waveform -> codes (encode) and codes -> log-mel (decode)."""

    def __init__(self, cfg: DVAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.coef = nn.Parameter(torch.ones(1, cfg.n_mels, 1))
        enc_in = cfg.encoder.idim
        self.downsample_conv = nn.Sequential(
            nn.Conv1d(cfg.n_mels, enc_in, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(enc_in, enc_in, 4, stride=2, padding=1),
            nn.GELU(),
        )
        self.encoder = ConvStack(cfg.encoder)
        self.decoder = ConvStack(cfg.decoder)
        self.out_conv = nn.Conv1d(cfg.decoder.odim, cfg.n_mels, 3, padding=1, bias=False)
        self.vq_layer = GFSQ(cfg.vq)
        self.preprocessor_mel = _MelFrontEnd(cfg.n_mels)

    @classmethod
    def from_file(cls, path: str) -> DVAE:
        """Build with the dimensions of ``DVAE.safetensors`` and load it strictly."""
        return load_module(cls(dvae_config(path)), path).eval().requires_grad_(False)

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, num_vq, T) -> log-mel (B, n_mels, 2T)."""
        feats = self.vq_layer.embed(codes).to(self.coef.dtype)
        return self.out_conv(self.decoder(interleave_steps(feats))) * self.coef

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Waveform (B, N) at 24 kHz -> codes (B, num_vq, T), T = (N // 256 + 1) // 2."""
        mel = torch.log(torch.clamp(self.preprocessor_mel(wav), min=1e-5))
        mel = mel.to(self.coef.dtype) / self.coef
        feats = self.encoder(self.downsample_conv(mel))
        return self.vq_layer.quantize(feats.float())


class Decoder(nn.Module):
    """The Decoder: GPT hidden states (B, H, T) -> log-mel (B, n_mels, 2T), H = 2·dim."""

    def __init__(self, cfg: DecoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.coef = nn.Parameter(torch.ones(1, cfg.n_mels, 1))
        self.decoder = ConvStack(cfg.decoder)
        self.out_conv = nn.Conv1d(cfg.decoder.odim, cfg.n_mels, 3, padding=1, bias=False)

    @classmethod
    def from_file(cls, path: str) -> Decoder:
        """Build with the dimensions of ``Decoder.safetensors`` and load it strictly."""
        return load_module(cls(decoder_config(path)), path).eval().requires_grad_(False)

    @torch.inference_mode()
    def decode(self, hiddens: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, H, T) -> log-mel (B, n_mels, 2T)."""
        x = interleave_steps(hiddens.to(self.coef.dtype))
        return self.out_conv(self.decoder(x)) * self.coef
