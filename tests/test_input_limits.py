"""Bounded audio input (load_audio, speaker samples, the web UI's upload, voice add --audio)
and weights that are refused at load when they cannot be right (int8, NaN, infinity)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import chattts
from chattts import cli
from chattts.audio import encode_audio, load_audio, wav_header
from chattts.dia import load_prompt
from chattts.errors import AudioError, ParameterError, WeightsError
from chattts.validation import MAX_SAMPLE_SECONDS
from chattts.voices.speaker import decode_sample

RATE = 24000


def wav(samples: np.ndarray, rate: int, declared_bytes: int | None = None) -> bytes:
    """A 16-bit mono WAV of ``samples`` whose header says ``rate`` Hz and ``declared_bytes``
    of data (default: the true size)."""
    data = np.asarray(samples, dtype="<i2").tobytes()
    size = len(data) if declared_bytes is None else declared_bytes
    fmt = struct.pack("<HHIIHH", 1, 1, rate, 2 * rate, 2, 16)
    head = b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16)
    return head + fmt + b"data" + struct.pack("<I", size) + data


def noise(seconds: float, rate: int) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(int(seconds * rate)) * 3000).astype("<i2")


# ---- 2: audio is bounded before it is decoded ----------------------------------------------


def test_a_header_that_declares_1_hz_is_refused(chat) -> None:
    tiny = wav(noise(1000, 1), 1)  # the probe's 2 KB file: 3.2 GB in the web UI before
    assert len(tiny) < 2100
    with pytest.raises(AudioError, match="1 Hz"):
        load_audio(tiny)
    with pytest.raises(AudioError, match="1 Hz"):
        chat.sample_audio_speaker(tiny)


def test_a_long_file_is_refused_from_its_header_before_decoding(tmp_path, monkeypatch) -> None:
    from chattts.audio import decode

    path = tmp_path / "long.opus"
    path.write_bytes(encode_audio(np.zeros(40 * RATE, np.float32), "opus", RATE))
    assert load_audio(str(path), max_seconds=60).size == 40 * RATE
    monkeypatch.setattr(decode, "_decode", lambda *a: pytest.fail("decoded"))
    with pytest.raises(AudioError, match="40.0 s long or more: at most 30 s"):
        load_audio(str(path), max_seconds=30)


def test_decoding_stops_at_the_bound_when_no_header_says_the_length() -> None:
    streamed = wav_header(8000) + noise(12, 8000).tobytes()  # the unknown-size header
    assert load_audio(streamed, 8000).size == 12 * 8000
    with pytest.raises(AudioError, match="at most 5 s"):
        load_audio(streamed, 8000, max_seconds=5)
    with pytest.raises(AudioError, match="longer than"):
        load_audio(noise(12, 8000).tobytes(), 8000, format="pcm", max_seconds=5)


@pytest.fixture(scope="module")
def too_long(tmp_path_factory) -> Path:
    """Five minutes and one second of 8 kHz speech-like noise (4.8 MB)."""
    path = tmp_path_factory.mktemp("audio") / "long.wav"
    path.write_bytes(wav(noise(MAX_SAMPLE_SECONDS + 1, 8000), 8000))
    return path


def test_speaker_samples_take_at_most_five_minutes(chat, too_long: Path) -> None:
    with pytest.raises(AudioError, match=f"at most {MAX_SAMPLE_SECONDS:g} s"):
        chat.sample_audio_speaker(str(too_long))
    with pytest.raises(ParameterError, match="shorter recording"):
        chat.sample_audio_speaker(np.zeros(int((MAX_SAMPLE_SECONDS + 1) * RATE), np.float32))
    with pytest.raises(AudioError, match=f"at most {MAX_SAMPLE_SECONDS:g} s"):
        load_prompt(str(too_long))  # the Dia-style audio prompts


def test_voice_add_refuses_a_long_recording_in_one_line(too_long: Path, tmp_path, capsys) -> None:
    model = ["--model-dir", str(Path(__file__).parent / "fixtures" / "tiny"), "--no-verify"]
    lib = ["--voices", str(tmp_path / "voices")]
    args = ["voice", "add", "dan", "--audio", str(too_long), "--text", "hi", *lib, *model]
    assert cli.main(args) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at most 300 s" in err[0]
    assert not (tmp_path / "voices" / "dan.json").exists()


# ---- 3: the sample header holds the longest allowed sample --------------------------------------


def test_the_longest_allowed_sample_fits_the_reference_header(chat) -> None:
    smp = chat.sample_audio_speaker(np.zeros(int(MAX_SAMPLE_SECONDS * RATE), np.float32))
    codes = decode_sample(smp, int(chat.config.gpt.num_vq))
    assert 0xFFFF > codes.shape[1] >= MAX_SAMPLE_SECONDS * RATE / 1024 - 2


# ---- the web UI's upload ------------------------------------------------------------------------


def test_the_web_ui_bounds_uploads(chat, tmp_path, too_long: Path) -> None:
    gr = pytest.importorskip("gradio")
    from chattts import webui
    from chattts.webui.callbacks import WebUI

    ui = WebUI(chat)
    one_hz = tmp_path / "one_hz.wav"
    one_hz.write_bytes(wav(noise(1000, 1), 1))
    for path, needle in [(one_hz, "1 Hz"), (too_long, "at most 300 s")]:
        with pytest.raises(gr.Error, match=needle):
            ui.sample_code(str(path))

    seen = {}

    class Demo:
        def queue(self, **kw):
            pass

        def launch(self, **kw):
            seen.update(kw)

    webui.launch(Demo(), block=False)
    assert seen["max_file_size"] == webui.MAX_UPLOAD_BYTES


# ---- 10: weights that cannot be right -----------------------------------------------------------


def _rewrite(path: Path, change) -> str:
    state = load_file(str(path))
    name = change(state)
    save_file(state, str(path))
    return name


def _first_float(state: dict) -> str:
    """The first matrix the model uses (the GPT file's embed_tokens is not used)."""
    return next(k for k, v in sorted(state.items()) if v.ndim == 2 and "embed_tokens" not in k)


@pytest.mark.parametrize(
    "file, make, needle",
    [
        ("gpt/model.safetensors", lambda t: t.to(torch.int8), "unsupported dtype torch.int8"),
        (
            "gpt/model.safetensors",
            lambda t: t.index_fill(0, torch.tensor([0]), float("nan")),
            "NaN",
        ),
        (
            "Vocos.safetensors",
            lambda t: t.index_fill(0, torch.tensor([0]), float("inf")),
            "infinite",
        ),
        ("Embed.safetensors", lambda t: t.double(), "unsupported dtype torch.float64"),
    ],
)
def test_bad_weights_are_a_weights_error_naming_file_and_tensor(tiny_copy, file, make, needle):
    path = Path(tiny_copy) / "asset" / file

    def change(state: dict) -> str:
        name = _first_float(state)
        state[name] = make(state[name])
        return name

    name = _rewrite(path, change)
    chat = chattts.Chat()
    with pytest.raises(WeightsError, match=needle) as info:
        chat.load(source="custom", custom_path=tiny_copy, verify=False, raise_on_error=True)
    assert str(path) in str(info.value) and repr(name) in str(info.value)
