"""Audio files in and out: save, load, encode in memory, and encode incrementally for streaming.

Built on PyAV (FFmpeg): :mod:`.formats` (names, checks, the WAV header), :mod:`.encode` (files
and streams) and :mod:`.decode` (reading, resampling). Formats, by name (and the file suffixes
that select them):

=========  ==========================================  ========================  =============
name       what is written                             suffixes                  streams as
=========  ==========================================  ========================  =============
``wav``    RIFF WAVE, 16-bit PCM, mono                 ``.wav``                  unknown-size
                                                                                 header + PCM
``mp3``    MPEG audio layer III (LAME)                 ``.mp3``                  MP3 frames
``opus``   Opus in Ogg                                 ``.opus``, ``.ogg``       Ogg pages
``flac``   FLAC, 16-bit                                ``.flac``                 FLAC frames
``aac``    AAC-LC in ADTS                              ``.aac``                  ADTS frames
``m4a``    AAC-LC in MP4                               ``.m4a``, ``.mp4``        (not streamable)
``pcm``    raw 16-bit little-endian PCM, no header     ``.pcm``, ``.raw``        PCM
=========  ==========================================  ========================  =============

:func:`save_audio_chunks` writes audio that comes in chunks (a book) to a file, with chapter
marks for the formats of :data:`CHAPTER_FORMATS` (MP4, as ``.m4a`` or ``.m4b``, and MP3).

Waveforms are mono float arrays in [-1, 1]: 1-D numpy arrays, (1, n) arrays, or torch tensors of
either shape (int16 arrays are read as PCM). A codec that does not support the sample rate gets
the audio resampled to the nearest rate it supports (Opus: 8, 12, 16, 24 or 48 kHz), and every
decoder gives back what :func:`load_audio` resamples to the rate asked for.

Finishing (tempo, pitch, gain, loudness, true-peak ceiling) is :mod:`.finish` and
:mod:`.finish_stream`; the typed result with segment times, :mod:`.speech`
(docs/captions.md).

Codec delays: MP3 (whole files), Opus and M4A record their encoder delay, so decoded audio has
the original length (up to a frame of padding at the end); ADTS has no place for it, so decoded
AAC starts with the encoder's 1024 samples of priming, and a streamed MP3 (no LAME header) with
about 1100 samples of it.
"""

from __future__ import annotations

from ..errors import AudioError, AudioFileNotFoundError
from .decode import load_audio, resample
from .encode import (
    CHAPTER_FORMATS,
    ChapterMark,
    StreamEncoder,
    encode_audio,
    save_audio,
    save_audio_chunks,
)
from .finish import Finish, finish
from .finish_stream import StreamFinisher
from .formats import (
    FORMATS,
    MEDIA_TYPES,
    AudioLike,
    AudioSource,
    PathOrFile,
    Waveform,
    as_mono,
    fix_wav_header,
    format_from_path,
    normalize_format,
    to_pcm16,
    wav_header,
)
from .speech import Bookmark, Mark, Pause, Piece, Segment, Speech, assemble

__all__ = [
    "CHAPTER_FORMATS",
    "FORMATS",
    "ChapterMark",
    "Bookmark",
    "Finish",
    "Mark",
    "Pause",
    "Piece",
    "Segment",
    "Speech",
    "StreamFinisher",
    "assemble",
    "finish",
    "MEDIA_TYPES",
    "AudioError",
    "AudioFileNotFoundError",
    "AudioLike",
    "AudioSource",
    "ChapterMark",
    "PathOrFile",
    "StreamEncoder",
    "Waveform",
    "as_mono",
    "encode_audio",
    "fix_wav_header",
    "format_from_path",
    "load_audio",
    "normalize_format",
    "resample",
    "save_audio",
    "save_audio_chunks",
    "to_pcm16",
    "wav_header",
]
