"""Speakers: statistics, random voices, and the reference's speaker strings.

See docs/architecture.md, "Speakers".

A speaker string (``spk_emb``) is base16384 of the raw-LZMA2 of H float16 values; a speaker
sample (``spk_smp``) is base16384 of a 4-byte shape header and the raw-LZMA2 of uint16 codes.
"""

from __future__ import annotations

import lzma
import os
from typing import Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import AssetNotFoundError, SpeakerError, WeightsError

_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _compress(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


#: Most bytes a speaker string may decompress to when the hidden size is not known (the
#: official speaker is 768 float16 values, 1,536 bytes).
MAX_SPEAKER_BYTES = 1 << 16
#: The official model's audio vocabulary: speaker-sample codes must be below it.
NUM_AUDIO_TOKENS = 626


def _decompress(data: bytes, limit: int) -> bytes:
    """Raw-LZMA2 ``data`` decompressed, at most ``limit`` bytes of output.

    The output is bounded so that a small compressed string cannot expand to gigabytes:
    more than ``limit`` bytes is a :class:`SpeakerError`, found after ``limit + 1`` bytes.
    """
    dec = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    out = dec.decompress(data, max_length=limit + 1)
    if len(out) > limit:
        raise SpeakerError(f"it decompresses to more than {limit} bytes")
    if not dec.eof:
        raise SpeakerError("the compressed data is truncated")
    return out


def _b14_encode(data: bytes) -> str:
    import pybase16384 as b14

    return b14.encode_to_string(data)


def _b14_decode(text: str) -> bytes:
    import pybase16384 as b14

    return b14.decode_from_string(text)


def encode_speaker(emb: torch.Tensor) -> str:
    """(H,) speaker vector -> speaker string (float16, little-endian)."""
    arr = emb.detach().to("cpu", torch.float16).numpy().astype("<f2")
    return _b14_encode(_compress(arr.tobytes()))


def decode_speaker(
    spk: Union[str, torch.Tensor], hidden_size: Optional[int] = None
) -> torch.Tensor:
    """Speaker string (or tensor) -> (H,) float16 tensor on the CPU.

    Raises:
        SpeakerError: the string is not a speaker string, or not of ``hidden_size`` values.
    """
    if isinstance(spk, torch.Tensor):
        emb = spk.detach().to("cpu", torch.float16).reshape(-1)
    elif isinstance(spk, str):
        limit = 2 * hidden_size if hidden_size is not None else MAX_SPEAKER_BYTES
        try:
            raw = _decompress(_b14_decode(spk), limit)
        except Exception as e:  # pybase16384 and lzma raise various errors on garbage
            raise SpeakerError(f"invalid speaker string ({type(e).__name__}: {e})") from e
        if len(raw) % 2:
            raise SpeakerError("invalid speaker string: odd number of bytes")
        emb = torch.from_numpy(np.frombuffer(raw, dtype="<f2").copy())
    else:
        raise SpeakerError(
            f"a speaker must be a speaker string or a tensor, not {type(spk).__name__}"
        )
    if hidden_size is not None and emb.numel() != hidden_size:
        raise SpeakerError(
            f"the speaker has {emb.numel()} values but the model's hidden size is {hidden_size}"
        )
    if not torch.isfinite(emb).all():
        raise SpeakerError("invalid speaker: it holds non-finite values")
    return emb


#: Largest dimension the reference's uint16 shape header of a speaker sample holds: T codes
#: at about 47 codes per second is 23 minutes, well over the 5 minutes of audio accepted
#: for a sample (``validation.MAX_SAMPLE_SECONDS``).
MAX_SAMPLE_DIM = 0xFFFF


def encode_sample(codes: torch.Tensor) -> str:
    """Codes (num_vq, T) -> speaker sample string (``spk_smp``), in the reference's format.

    Raises:
        SpeakerError: not a 2-D tensor, a dimension over :data:`MAX_SAMPLE_DIM` (the uint16
            header cannot hold it), or a code outside [0, 65535].
    """
    if codes.dim() != 2 or max(codes.shape) > MAX_SAMPLE_DIM:
        raise SpeakerError(
            f"a speaker sample holds (num_vq, T) codes with both at most {MAX_SAMPLE_DIM}, "
            f"not {tuple(codes.shape)}: use a shorter recording"
        )
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > MAX_SAMPLE_DIM):
        raise SpeakerError("a speaker sample's codes must lie in [0, 65535]")
    arr = codes.detach().to("cpu").numpy().astype("<u2")
    header = np.array(arr.shape, dtype="<u2").tobytes()
    return _b14_encode(header + _compress(arr.tobytes()))


def decode_sample(
    smp: str, num_vq: Optional[int] = None, num_codes: int = NUM_AUDIO_TOKENS
) -> torch.Tensor:
    """Speaker sample string -> codes (num_vq, T) int64, every code in [0, ``num_codes``).

    The shape header bounds the decompression (at most num_vq · T uint16 values are read).

    Raises:
        SpeakerError: the string is not a speaker sample, has another number of codebooks
            than ``num_vq``, or holds a code outside [0, ``num_codes``).
    """
    if not isinstance(smp, str):
        raise SpeakerError(f"a speaker sample must be a string, not {type(smp).__name__}")
    try:
        raw = _b14_decode(smp)
        if len(raw) < 4:
            raise SpeakerError("no shape header")
        shape = tuple(int(x) for x in np.frombuffer(raw[:4], dtype="<u2"))
        if num_vq is not None and shape[0] != num_vq:
            raise SpeakerError(f"the speaker sample has {shape[0]} codebooks, the model {num_vq}")
        size = 2 * shape[0] * shape[1]
        data = _decompress(raw[4:], size)
        if len(data) != size:
            raise SpeakerError(f"{len(data)} bytes of codes, the header says {size}")
        codes = np.frombuffer(data, dtype="<u2").reshape(shape)
    except Exception as e:
        raise SpeakerError(f"invalid speaker sample string ({type(e).__name__}: {e})") from e
    if codes.size and int(codes.max()) >= num_codes:
        raise SpeakerError(
            f"invalid speaker sample: code {int(codes.max())} is out of range "
            f"(codes are 0 to {num_codes - 1})"
        )
    return torch.from_numpy(codes.astype(np.int64))


class SpeakerStats:
    """Speaker statistics of ``spk_stat.pt``: std then mean, held as float16.

    Args:
        stat: (2·H,) values.
    """

    def __init__(self, stat: torch.Tensor) -> None:
        stat = stat.detach().to("cpu", torch.float16).reshape(-1)
        self.hidden_size = stat.numel() // 2
        self.std, self.mean = stat[: self.hidden_size], stat[self.hidden_size :]

    @classmethod
    def from_file(cls, path: str, hidden_size: Optional[int] = None) -> SpeakerStats:
        if not os.path.isfile(path):
            raise AssetNotFoundError(f"model file not found: {path}")
        try:
            stat = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise WeightsError(f"{path}: cannot read the speaker statistics ({e})") from e
        if not isinstance(stat, torch.Tensor):
            raise WeightsError(f"{path}: expected a tensor, found {type(stat).__name__}")
        if hidden_size is not None and stat.numel() != 2 * hidden_size:
            raise WeightsError(
                f"{path}: tensor 'spk_stat' has {stat.numel()} values, expected {2 * hidden_size}"
            )
        return cls(stat)

    def sample(self, seed: Optional[int] = None) -> torch.Tensor:
        """A random (H,) float16 speaker, drawn on the CPU (seeded generator when ``seed``)."""
        gen = None
        if seed is not None:
            gen = torch.Generator(device="cpu")
            gen.manual_seed(int(seed))
        noise = torch.randn(self.hidden_size, dtype=torch.float16, generator=gen)
        return noise * self.std + self.mean


def speaker_embedding(emb: torch.Tensor) -> torch.Tensor:
    """The vector written at ``[spk_emb]`` positions: L2-normalised in float16, then float32."""
    return F.normalize(emb.to(torch.float16), p=2.0, dim=0, eps=1e-12).float()
