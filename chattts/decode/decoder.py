"""Every step from the GPT's outputs to 24 kHz audio, and the DVAE that makes speaker samples.

The Decoder turns hidden states (B, T, H) into log-mels (B, n_mels, 2T); the DVAE does the same
for codes (B, T, num_vq) (``use_decoder=False``) and encodes recordings into codes; Vocos turns
F mel frames into (F − 1)·hop samples: 2·hop samples per code step. :func:`load_decoders`
picks whichever runs them faster (docs/engine.md, "Decoding"): torch with int8 pointwise layers
for ``quantize="int8"``, the exported ONNX Runtime graphs (:mod:`.ort`) for the float32 ONNX
Runtime backend, torch float32 otherwise.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch

from ..config import DECODER_WEIGHTS, VOCOS_WEIGHTS, dvae_config
from ..model import quant
from ..model.dvae import DVAE, Decoder
from ..model.loading import check_file_layout
from ..model.vocos import load_vocos, vocos_decode
from .ort import OrtDecoders, converted_decoders

if TYPE_CHECKING:
    from ..generation.engine import GenerationState


class LazyDVAE:
    """The DVAE, loaded strictly on first use.

    Speech through the Decoder never touches the DVAE (60 MB in float32): only speaker
    samples (``sample_audio_speaker``) and ``use_decoder=False`` do. Its file's tensor names
    and shapes are checked here, from the header, with the errors of a strict load (and with
    ``verify`` the file's SHA256 was checked before); the weights are read on first use.

    Args:
        path: ``DVAE.safetensors``.
        device: where the module goes.
        coef: (1, n_mels, 1) replacement of the checkpoint's ``coef``, or None.
    """

    def __init__(self, path: str, device: torch.device, coef: Optional[torch.Tensor]) -> None:
        self.path = path
        self.device = device
        self.coef = coef
        self._module: Optional[DVAE] = None
        self._lock = threading.Lock()
        with torch.device("meta"):  # names and shapes now, weights on first use
            layout = DVAE(dvae_config(path))
        check_file_layout(layout, path)

    @property
    def loaded(self) -> bool:
        return self._module is not None

    def get(self) -> DVAE:
        """The loaded DVAE (loads it the first time)."""
        if self._module is None:
            with self._lock:
                if self._module is None:
                    dvae = DVAE.from_file(self.path)
                    if self.coef is not None:
                        dvae.coef.data = self.coef.clone()
                    self._module = dvae.to(self.device).eval().requires_grad_(False)
        return self._module


class AudioDecoder:
    """GPT outputs -> waveforms, over the loaded Decoder, DVAE and Vocos (or their graphs).

    Args:
        dvae: the DVAE's loader (codes -> mels, and speaker samples).
        decoder: the Decoder (hidden states -> mels); None when not loaded or on ``ort``.
        vocos: the vocoder; None on ``ort``.
        ort: the Decoder and Vocos as ONNX Runtime graphs (the float32 ONNX Runtime backend).
        hop_length: Vocos' hop (samples per mel frame; a code step is two frames).
    """

    def __init__(
        self,
        dvae: LazyDVAE,
        decoder: Optional[Decoder],
        vocos: Optional[torch.nn.Module],
        ort: Optional[OrtDecoders],
        hop_length: int,
    ) -> None:
        self.dvae_loader = dvae
        self.decoder = decoder
        self.vocos = vocos
        self.ort = ort
        self.hop_length = hop_length

    @property
    def has_decoder(self) -> bool:
        """Hidden states can be decoded (``use_decoder=True``)."""
        return self.decoder is not None or self.ort is not None

    @property
    def dvae(self) -> DVAE:
        """The DVAE (loaded on first use)."""
        return self.dvae_loader.get()

    @property
    def samples_per_step(self) -> int:
        return 2 * self.hop_length

    @torch.inference_mode()
    def mel(self, features: torch.Tensor, use_decoder: bool) -> torch.Tensor:
        """Hidden states (B, T, H) with the Decoder, or codes (B, T, num_vq) with the DVAE,
        -> log-mel (B, n_mels, 2T)."""
        if use_decoder:
            if self.ort is not None:
                return self.ort.mel(features.transpose(1, 2))
            if self.decoder is None:
                raise RuntimeError("the Decoder is not loaded")
            return self.decoder.decode(features.transpose(1, 2))
        return self.dvae.decode(features.transpose(1, 2))

    @torch.inference_mode()
    def waveform(self, features: torch.Tensor, use_decoder: bool) -> torch.Tensor:
        """Features (B, T, ·) -> (B, (2T − 1) · hop) float32 waveforms."""
        mel = self.mel(features, use_decoder)
        if self.ort is not None:
            return self.ort.waveform(mel)
        return vocos_decode(self.vocos, mel)

    def decode_items(
        self,
        state: GenerationState,
        use_decoder: bool,
        items: Optional[list[int]] = None,
        padded: bool = True,
    ) -> list[np.ndarray]:
        """Decode items of a finished generation, each cut to its own length.

        ``padded`` (the reference's way): items are right-padded with zeros to the longest and
        decoded in one call, so near its end a shorter item hears the padding. Otherwise items
        of equal length are decoded together and each item's audio is what it would be alone.
        Item i keeps its first (2·T_i − 1)·hop samples (none for T_i = 0).
        """
        items = list(range(state.lengths.shape[0])) if items is None else items
        lengths = {i: int(state.lengths[i]) for i in items}
        groups = (
            [items]
            if padded
            else [[i for i in items if lengths[i] == n] for n in sorted(set(lengths.values()))]
        )
        out: dict[int, np.ndarray] = {}
        source = state.hiddens if use_decoder else state.tokens
        for group in groups:
            longest = max(lengths[i] for i in group)
            if longest == 0:
                out.update({i: np.zeros(0, dtype=np.float32) for i in group})
                continue
            feats = torch.zeros(
                len(group), longest, source.shape[-1], dtype=source.dtype, device=source.device
            )
            for j, i in enumerate(group):
                feats[j, : lengths[i]] = source[i, : lengths[i]]
            wav = self.waveform(feats, use_decoder).cpu().numpy()
            for j, i in enumerate(group):
                out[i] = wav[j, : max(0, (2 * lengths[i] - 1) * self.hop_length)].copy()
        return [out[i] for i in items]


def load_decoders(
    root: str,
    dvae: LazyDVAE,
    device: torch.device,
    *,
    hop_length: int,
    int8: bool,
    on_ort: bool,
    load_decoder: bool = True,
) -> AudioDecoder:
    """The Decoder and Vocos of a model root, whichever runs them faster: for float32 with
    the ONNX Runtime backend their exported graphs (the torch modules are then not kept), torch
    with int8 pointwise layers for ``int8``, else torch float32."""
    vocos_file = os.path.join(root, VOCOS_WEIGHTS)
    if on_ort and not int8:  # float32: ONNX Runtime is the faster (int8: torch is)
        entry = converted_decoders(os.path.dirname(vocos_file))
        ort = OrtDecoders(entry, vocos_file)
        return AudioDecoder(dvae, None, None, ort, hop_length)
    decoder = Decoder.from_file(os.path.join(root, DECODER_WEIGHTS)) if load_decoder else None
    if int8 and decoder is not None:
        quant.int8_decoder(decoder)
    vocos = load_vocos(vocos_file)
    if int8:
        quant.int8_vocos(vocos)
    for module in (decoder, vocos):
        if module is not None:
            module.to(device).eval().requires_grad_(False)
    return AudioDecoder(dvae, decoder, vocos, None, hop_length)


__all__ = ["AudioDecoder", "LazyDVAE", "load_decoders"]
