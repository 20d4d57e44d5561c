"""chattts.audio: files in every format, in memory, streamed, resampled, and bad input."""

from __future__ import annotations

import io
import wave

import av
import numpy as np
import pytest
import torch

from chattts.audio import (
    FORMATS,
    AudioError,
    AudioFileNotFoundError,
    StreamEncoder,
    encode_audio,
    fix_wav_header,
    load_audio,
    resample,
    save_audio,
)
from chattts.errors import ChatTTSError

SR = 24000
LOSSLESS = ("wav", "flac", "pcm")
LOSSY = ("mp3", "opus", "aac", "m4a")
STREAMABLE = ("wav", "mp3", "opus", "flac", "aac", "pcm")
SUFFIX = {
    "wav": ".wav",
    "mp3": ".mp3",
    "opus": ".opus",
    "flac": ".flac",
    "aac": ".aac",
    "m4a": ".m4a",
    "pcm": ".pcm",
}
MAGIC = {"wav": b"RIFF", "flac": b"fLaC", "opus": b"OggS"}


def voiceish(seconds: float = 1.5, rate: int = SR) -> np.ndarray:
    """A deterministic speech-like test signal: harmonics of a gliding pitch, with an envelope."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = 140 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    sig = sum(np.sin(k * phase) / k for k in range(1, 8))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 2.3 * t) ** 2
    return (0.25 * sig * env).astype(np.float32)


def best_lag_corr(ref: np.ndarray, out: np.ndarray, max_lag: int = 1200) -> tuple[float, int]:
    """Highest correlation of ``ref`` with ``out`` delayed by 0..max_lag samples (codec delay)."""
    n = ref.size + out.size
    xc = np.fft.irfft(np.fft.rfft(out, n) * np.conj(np.fft.rfft(ref, n)), n)[: max_lag + 1]
    lag = int(np.argmax(xc))
    m = min(ref.size, out.size - lag)
    return float(np.corrcoef(ref[:m], out[lag : lag + m])[0, 1]), lag


def assert_same_audio(fmt: str, ref: np.ndarray, out: np.ndarray) -> None:
    assert out.dtype == np.float32 and out.ndim == 1
    if fmt in LOSSLESS:
        assert out.size == ref.size
        np.testing.assert_allclose(out, ref, atol=1e-4)
        return
    # lossy: codec priming and padding, at most a frame or two, no more
    assert ref.size <= out.size <= ref.size + 2048, (out.size, ref.size)
    corr, lag = best_lag_corr(ref, out)
    assert corr > 0.99, (fmt, corr, lag)
    assert lag <= 1105


def decode(fmt: str, data: bytes) -> np.ndarray:
    return load_audio(data, SR, format="pcm" if fmt == "pcm" else None)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_through_files(tmp_path, fmt):
    x = voiceish()
    path = tmp_path / f"out{SUFFIX[fmt]}"
    save_audio(path, x, SR)
    head = path.read_bytes()[:4]
    if fmt in MAGIC:
        assert head == MAGIC[fmt]
    assert_same_audio(fmt, x, load_audio(str(path), SR))


def test_ogg_suffix_is_opus_in_ogg(tmp_path):
    x = voiceish(0.5)
    save_audio(tmp_path / "a.ogg", x)
    with av.open(str(tmp_path / "a.ogg")) as c:
        assert c.format.name == "ogg" and c.streams.audio[0].codec_context.name == "opus"
    assert_same_audio("opus", x, load_audio(tmp_path / "a.ogg"))


def test_container_and_codec_of_each_format():
    expect = {
        "mp3": ("mp3", "mp3"),
        "aac": ("aac", "aac"),
        "m4a": ("mov,mp4,m4a", "aac"),
        "flac": ("flac", "flac"),
        "opus": ("ogg", "opus"),
        "wav": ("wav", "pcm_s16le"),
    }
    for fmt, (container, codec) in expect.items():
        with av.open(io.BytesIO(encode_audio(voiceish(0.3), fmt, SR))) as c:
            assert c.format.name.startswith(container), (fmt, c.format.name)
            assert c.streams.audio[0].codec_context.name.startswith(codec)  # mp3: mp3float


@pytest.mark.parametrize(
    "wav",
    [
        voiceish(0.5)[None],  # (1, n) numpy
        torch.from_numpy(voiceish(0.5)),  # 1-D tensor
        torch.from_numpy(voiceish(0.5))[None].to(torch.bfloat16).float(),  # (1, n) tensor
        voiceish(0.5).astype(np.float64),
    ],
)
def test_accepts_arrays_and_tensors(wav):
    out = load_audio(encode_audio(wav, "wav", SR))
    np.testing.assert_allclose(out, np.asarray(wav, dtype=np.float32).reshape(-1), atol=1e-4)


def test_int16_input_and_clipping():
    pcm = (voiceish(0.2) * 32767).astype(np.int16)
    out = load_audio(encode_audio(pcm, "pcm", SR), format="pcm")
    np.testing.assert_array_equal((out * 32768).astype(np.int16), pcm)
    loud = np.array([2.0, -2.0, 0.5], dtype=np.float32)
    np.testing.assert_allclose(
        load_audio(encode_audio(loud, "wav")), [32767 / 32768, -1, 0.5], atol=1e-4
    )


def test_load_from_bytes_file_object_and_resampled():
    x = voiceish(1.0, rate=16000)
    data = encode_audio(x, "flac", 16000)
    from_bytes = load_audio(data, 16000)
    from_file = load_audio(io.BytesIO(data), 16000)
    np.testing.assert_array_equal(from_bytes, from_file)
    up = load_audio(data, 24000)
    assert up.size == 24000 and up.dtype == np.float32
    # the same signal made at 24 kHz directly: the resampled audio matches it
    corr, lag = best_lag_corr(voiceish(1.0, rate=24000)[100:-100], up[100:-100], max_lag=40)
    assert corr > 0.999 and lag <= 30


def test_resample_keeps_pitch_and_length():
    t = np.arange(24000) / 24000
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    for rate in (16000, 22050, 44100, 48000):
        y = resample(x, 24000, rate)
        assert y.size == round(24000 * rate / 24000) and y.dtype == np.float32
        peak = np.argmax(np.abs(np.fft.rfft(y))) * rate / y.size
        assert abs(peak - 440) < 2
    np.testing.assert_array_equal(resample(x, 24000, 24000), x)


def test_stereo_files_are_averaged():
    x = voiceish(0.5, rate=16000)
    buf = io.BytesIO()
    with av.open(buf, "w", format="wav") as c:
        s = c.add_stream("pcm_s16le", rate=16000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.stack([x, 0.5 * x]), format="fltp", layout="stereo")
        frame.sample_rate = 16000
        for p in list(s.encode(frame)) + list(s.encode(None)):
            c.mux(p)
    np.testing.assert_allclose(load_audio(buf.getvalue(), 16000), 0.75 * x, atol=1e-4)


@pytest.mark.parametrize("fmt", ["opus", "mp3", "aac"])
def test_lossy_codecs_at_rates_they_do_not_support_directly(fmt):
    x = voiceish(0.8, rate=44100)
    out = load_audio(encode_audio(x, fmt, 44100), 44100)
    assert x.size <= out.size <= x.size + 4096
    assert best_lag_corr(x[:20000], out, max_lag=2200)[0] > 0.99


@pytest.mark.parametrize("fmt", STREAMABLE)
def test_stream_encoder_output_decodes_to_the_audio(fmt):
    x = voiceish(2.0)
    enc = StreamEncoder(fmt, SR)
    parts, pos = [], 0
    for size in [100, 4000, 1, 9000, 2400, 7000] * 10:
        if pos >= x.size:
            break
        parts.append(enc.write(x[pos : pos + size]))
        pos += size
    parts.append(enc.write(x[pos:][None]))
    streamed_before_close = sum(len(p) for p in parts)
    parts.append(enc.close())
    assert enc.close() == b""
    data = b"".join(parts)
    # bytes came out while audio went in, not only at the end
    assert streamed_before_close > len(data) // 2
    if fmt == "mp3":  # a stream has no LAME header recording the encoder delay
        out = decode(fmt, data)
        assert x.size <= out.size <= x.size + 2304
        assert best_lag_corr(x, out)[0] > 0.99
    else:
        assert_same_audio(fmt, x, decode(fmt, data))


def test_streamed_wav_header_and_fixing_it(tmp_path):
    x = voiceish(0.5)
    enc = StreamEncoder("wav", SR)
    data = enc.write(x[:5000]) + enc.write(x[5000:]) + enc.close()
    assert data[4:8] == b"\xff\xff\xff\xff" and data[40:44] == b"\xff\xff\xff\xff"
    path = tmp_path / "s.wav"
    path.write_bytes(data)
    with open(path, "r+b") as f:
        fix_wav_header(f)
    with wave.open(str(path)) as w:
        assert (w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()) == (
            x.size,
            SR,
            1,
            2,
        )
    np.testing.assert_allclose(load_audio(path), x, atol=1e-4)


def test_stream_encoder_refuses_misuse():
    with pytest.raises(AudioError, match="cannot be streamed"):
        StreamEncoder("m4a", SR)
    enc = StreamEncoder("mp3", SR)
    enc.close()
    with pytest.raises(AudioError, match="closed"):
        enc.write(voiceish(0.1))
    with pytest.raises(AudioError, match="mono"):
        StreamEncoder("wav").write(np.zeros((2, 100), np.float32))


def test_save_to_file_objects(tmp_path):
    x = voiceish(0.3)
    buf = io.BytesIO()
    save_audio(buf, x, SR, format="flac")
    np.testing.assert_allclose(load_audio(buf.getvalue()), x, atol=1e-4)
    with open(tmp_path / "named.wav", "wb") as f:
        save_audio(f, x, SR)  # the format from the file's name
    assert (tmp_path / "named.wav").read_bytes()[:4] == b"RIFF"
    with pytest.raises(AudioError, match="format"):
        save_audio(io.BytesIO(), x, SR)


@pytest.mark.parametrize(
    "bad, match",
    [
        (b"", "empty"),
        (b"this is not audio at all " * 40, "cannot read audio"),
        (42, "path, bytes or a binary file"),
        (np.zeros(100, np.float32), "path, bytes or a binary file"),
    ],
)
def test_load_rejects_what_is_not_audio(bad, match):
    with pytest.raises(AudioError, match=match) as info:
        load_audio(bad)
    assert isinstance(info.value, ChatTTSError) and isinstance(info.value, ValueError)


def test_load_missing_and_non_audio_files(tmp_path):
    with pytest.raises(AudioFileNotFoundError) as info:
        load_audio(tmp_path / "nope.wav")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ChatTTSError)
    text = tmp_path / "notes.mp3"
    text.write_text("hello, not an mp3\n" * 50)
    with pytest.raises(AudioError, match="notes.mp3"):
        load_audio(text)
    odd = tmp_path / "odd.pcm"
    odd.write_bytes(b"\x00\x01\x02")
    with pytest.raises(AudioError, match="even number"):
        load_audio(odd)


@pytest.mark.parametrize(
    "wav, fmt, rate, match",
    [
        (np.zeros((2, 100), np.float32), "wav", SR, "mono"),
        (np.array([0.0, np.nan], np.float32), "wav", SR, "non-finite"),
        (np.zeros(10, np.int32), "wav", SR, "floats"),
        ("hello", "wav", SR, "floats"),
        (np.zeros(10, np.float32), "vorbis", SR, "unknown audio format"),
        (np.zeros(10, np.float32), "wav", 0, "sample_rate"),
        (np.zeros(10, np.float32), "wav", 24000.5, "sample_rate"),
    ],
)
def test_encode_rejects_bad_input(wav, fmt, rate, match):
    with pytest.raises(AudioError, match=match):
        encode_audio(wav, fmt, rate)


def test_unknown_suffix(tmp_path):
    with pytest.raises(AudioError, match="suffix"):
        save_audio(tmp_path / "out.xyz", voiceish(0.1))
    assert not (tmp_path / "out.xyz").exists()


def test_empty_waveforms_still_make_files():
    empty = np.zeros(0, np.float32)
    for fmt in ("wav", "flac", "pcm"):
        assert decode(fmt, encode_audio(empty, fmt, SR)).size == 0
    assert encode_audio(empty, "mp3", SR)[:3] == b"ID3"
    assert encode_audio(empty, "opus", SR)[:4] == b"OggS"
    for fmt in ("wav", "flac", "opus", "mp3"):  # a stream with no audio still has its header
        assert len(StreamEncoder(fmt, SR).close()) > 0
