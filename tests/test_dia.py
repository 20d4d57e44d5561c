"""The Dia-style API (chattts.dia) and dialogue scripts (chattts.dia.script) on the tiny model.

The tiny model never draws EOS in short runs, so every item runs to ``max_new_tokens`` (16 code
steps here: (2·16 − 1)·256 = 7936 samples before trimming).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from conftest import assert_close

from chattts import Chat, InferCodeParams
from chattts.audio import AudioError, load_audio, resample
from chattts.dia import UnsupportedOptionError, Voice, as_voice
from chattts.dia.script import ScriptError, ScriptWarning, Turn, parse_script
from chattts.errors import AssetNotFoundError, DownloadError, SpeakerError

STEPS = 16
RATE = 24000
SAMPLING = {"top_p": 0.8, "temperature": 0.5, "top_k": 12}


def gen(chat: Chat, text, **kw) -> np.ndarray:
    return chat.generate(text, max_new_tokens=STEPS, **kw)


def spy_synthesize(chat: Chat, monkeypatch) -> list[int]:
    """Record the batch size of every ``chat.pipeline.synthesize`` call."""
    calls: list[int] = []
    real = chat.pipeline.synthesize

    def synthesize(utterances, **kw):
        calls.append(len(utterances))
        return real(utterances, **kw)

    monkeypatch.setattr(chat.pipeline, "synthesize", synthesize)
    return calls


def zero_runs_split(wav: np.ndarray, min_len: int) -> list[np.ndarray]:
    """Cut a waveform at runs of exact zeros at least ``min_len`` long (the pauses)."""
    parts, start, k = [], 0, 0
    zero = wav == 0
    while k < wav.size:
        if zero[k]:
            end = k
            while end < wav.size and zero[end]:
                end += 1
            if end - k >= min_len:
                parts.append(wav[start:k])
                start = end
            k = end
        else:
            k += 1
    parts.append(wav[start:])
    return parts


# ---- loading -----------------------------------------------------------------------------------


def test_from_pretrained_local_root(tiny_root) -> None:
    chat = Chat.from_pretrained(tiny_root, verify=False, device="cpu")
    assert isinstance(chat, Chat) and chat.has_loaded(use_decoder=True)
    assert chat.models.device.type == "cpu"


def test_from_pretrained_errors(tmp_path) -> None:
    with pytest.raises(AssetNotFoundError, match="neither a model folder nor a Hub repo id"):
        Chat.from_pretrained(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(AssetNotFoundError, match="not found"):
        Chat.from_pretrained(str(tmp_path), verify=False)  # a folder without the model files
    with pytest.raises(TypeError, match="source"):
        Chat.from_pretrained(str(tmp_path), source="local")


def test_from_pretrained_hub_repo_id(tmp_path, monkeypatch, tiny_root) -> None:
    """Another repo than the official one: snapshot_download of the same files, then loaded."""
    from hub_stub import HubStub, use_hub

    stub = HubStub.from_folder(tiny_root, repo_id="someone/tiny-chattts")
    with stub:
        use_hub(monkeypatch, stub.url, tmp_path / "hf_home")
        chat = Chat.from_pretrained(
            "someone/tiny-chattts", verify=False, device="cpu", cache_dir=str(tmp_path / "c")
        )
        assert chat.has_loaded(use_decoder=True)
        assert (tmp_path / "c" / "models--someone--tiny-chattts").is_dir()
        with pytest.raises(DownloadError, match="someone/missing"):
            Chat.from_pretrained("someone/missing", verify=False, cache_dir=str(tmp_path / "c"))


# ---- generate ----------------------------------------------------------------------------------


def test_generate_is_float32_mono_at_the_requested_rate(chat) -> None:
    wav = gen(chat, "hello world", seed=3)
    assert wav.dtype == np.float32 and wav.ndim == 1 and 0 < wav.size <= (2 * STEPS - 1) * 256
    assert np.isfinite(wav).all()
    low = gen(chat, "hello world", seed=3, sample_rate=16000)
    assert low.dtype == np.float32 and low.ndim == 1
    assert low.size == round(wav.size * 16000 / RATE)
    assert_close(low, resample(wav, RATE, 16000), "16 kHz")


def test_same_seed_same_audio_equal_to_infer(chat) -> None:
    text = "the same seed gives the same voice"
    first = gen(chat, text, seed=5, **SAMPLING)
    again = gen(chat, text, seed=5, **SAMPLING)
    np.testing.assert_array_equal(first, again)
    params = InferCodeParams(
        spk_emb=chat.sample_random_speaker(5),
        manual_seed=5,
        top_P=SAMPLING["top_p"],
        temperature=SAMPLING["temperature"],
        top_K=SAMPLING["top_k"],
        max_new_token=STEPS,
        show_tqdm=False,
    )
    (ref,) = chat.infer(text, skip_refine_text=True, split_text=False, params_infer_code=params)
    assert_close(first, ref, "generate vs infer")
    other = gen(chat, text, seed=6, **SAMPLING)
    assert other.shape != first.shape or not np.allclose(other, first)


def test_without_seed_each_call_has_its_own_voice(chat) -> None:
    a, b = gen(chat, "who is speaking"), gen(chat, "who is speaking")
    assert a.shape != b.shape or not np.allclose(a, b)


def test_generate_batch_equals_generate_calls(chat, monkeypatch) -> None:
    texts = ["first text", "a second, longer text", "[S1] a script [S2] with two turns"]
    seeds = [11, 12, 13]
    steps: list[tuple[int, int]] = []
    calls = spy_synthesize(chat, monkeypatch)
    batch = chat.generate_batch(
        texts, seeds=seeds, max_new_tokens=STEPS, callback=lambda s, m: steps.append((s, m))
    )
    assert calls == [4]  # two texts and two turns: one batch
    assert len(batch) == 3 and all(w.dtype == np.float32 and w.ndim == 1 for w in batch)
    assert batch[2].size > batch[0].size  # each waveform has its own length
    for text, seed, wav in zip(texts, seeds, batch, strict=True):
        assert_close(wav, gen(chat, text, seed=seed), text)
    assert [s for s, _ in steps] == list(range(1, STEPS + 1))
    # generate() with a list is generate_batch
    listed = chat.generate(texts[:2], seed=seeds[:2], max_new_tokens=STEPS)
    assert isinstance(listed, list) and len(listed) == 2
    assert_close(listed[1], batch[1], "generate(list)")


def test_batch_size_splits_batches_without_changing_audio(chat, monkeypatch) -> None:
    texts = ["one", "two", "three"]
    whole = chat.generate_batch(texts, seeds=7, max_new_tokens=STEPS)
    calls = spy_synthesize(chat, monkeypatch)
    steps: list[int] = []
    split = chat.generate_batch(
        texts, seeds=7, max_new_tokens=STEPS, batch_size=2, callback=lambda s, m: steps.append(s)
    )
    assert calls == [2, 1]
    for a, b in zip(whole, split, strict=True):
        assert_close(b, a)
    assert steps == sorted(set(steps)) and steps[-1] == 2 * STEPS  # increasing across batches


def test_callback_and_verbose(chat, caplog) -> None:
    seen: list[tuple[int, int]] = []
    with caplog.at_level(logging.INFO, logger="chattts"):
        gen(chat, "progress", seed=1, verbose=True, callback=lambda s, m: seen.append((s, m)))
    assert [s for s, _ in seen] == list(range(1, STEPS + 1))
    assert {m for _, m in seen} == {STEPS}
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"step {STEPS}/{STEPS}" in m for m in messages)
    assert any("real-time factor" in m for m in messages)


def test_audio_prompt_clones_through_spk_smp(chat, tmp_path, monkeypatch) -> None:
    ref = gen(chat, "reference speech for cloning", seed=21)
    text, transcript = "cloned voice", "[S1] reference speech for cloning"
    wav = gen(chat, text, audio_prompt=ref, audio_prompt_text=transcript, seed=4)
    params = InferCodeParams(
        spk_smp=chat.sample_audio_speaker(ref),
        txt_smp="reference speech for cloning",  # speaker tags are removed from transcripts
        manual_seed=4,
        max_new_token=STEPS,
        show_tqdm=False,
    )
    (expected,) = chat.infer(
        text, skip_refine_text=True, split_text=False, params_infer_code=params
    )
    assert_close(wav, expected, "cloned")
    # a file, and a (waveform, rate) tuple, are read and resampled to 24 kHz
    path = tmp_path / "ref.wav"
    chat.save_audio(path, ref)
    from_file = gen(chat, text, audio_prompt=str(path), seed=4)
    assert_close(from_file, gen(chat, text, audio_prompt=load_audio(path), seed=4))
    low = resample(ref, RATE, 16000)
    back = resample(low, 16000, RATE)
    from_tuple = gen(chat, text, audio_prompt=(low, 16000), seed=4)
    assert_close(from_tuple, gen(chat, text, audio_prompt=back, seed=4))
    # rows with different reference audio share one batch, and each equals its solo run
    calls = spy_synthesize(chat, monkeypatch)
    out = chat.generate_batch(
        [text, text, "plain", "plain too"],
        audio_prompts=[ref, (low, 16000), None, None],
        audio_prompt_texts=[transcript, None, None, None],
        seeds=4,
        max_new_tokens=STEPS,
    )
    assert calls == [4]
    assert_close(out[0], wav)
    assert_close(out[1], from_tuple)
    assert_close(out[3], gen(chat, "plain too", seed=4))


# ---- dialogue ----------------------------------------------------------------------------------


def test_dialogue_turns_equal_turns_alone(chat, monkeypatch) -> None:
    s2 = chat.sample_random_speaker(77)
    script = "[S1] Hello there. [S2] Hi! (laughs) [S1] How are you? [S2] Fine, thanks."
    said = ["Hello there.", "Hi! [laugh]", "How are you?", "Fine, thanks."]
    voices = [chat.sample_random_speaker(100), s2, chat.sample_random_speaker(100), s2]
    pause = 0.25
    calls = spy_synthesize(chat, monkeypatch)
    wav = gen(chat, script, seed=100, speakers={"S2": s2}, pause=pause)
    assert calls == [4]  # the four turns in one batch
    assert wav.dtype == np.float32 and wav.ndim == 1
    turns = zero_runs_split(wav, round(pause * RATE))
    assert len(turns) == 4
    alone = [
        gen(chat, t, speaker=v, seed=100 + i)
        for i, (t, v) in enumerate(zip(said, voices, strict=True))
    ]
    for i, (got, want) in enumerate(zip(turns, alone, strict=True)):
        assert_close(got, want, f"turn {i}")
    assert wav.size == sum(a.size for a in alone) + 3 * round(pause * RATE)
    assert not np.allclose(alone[0][:1000], alone[1][:1000])  # distinct voices


def test_dialogue_default_voices_and_prompt_as_s1(chat) -> None:
    script = "[S1] one [S2] two"
    # unmapped speakers: S1 -> seed, S2 -> seed + 1; turn i sampled with seed + i
    wav = gen(chat, script, seed=40, pause=0.1)
    first, second = zero_runs_split(wav, round(0.1 * RATE))
    assert_close(first, gen(chat, "one", seed=40))
    assert_close(second, gen(chat, "two", speaker=chat.sample_random_speaker(41), seed=41))
    # speaker= gives S1's voice
    spk = chat.sample_random_speaker(3)
    wav = gen(chat, script, seed=40, pause=0.1, speaker=spk)
    first, _ = zero_runs_split(wav, round(0.1 * RATE))
    assert_close(first, gen(chat, "one", speaker=spk, seed=40))


def test_parse_script_cues_and_tags() -> None:
    assert parse_script("[S1] Hi (Laughs) there [s2]  Well [uv_break] ok (long  pause)") == [
        Turn("S1", "Hi [laugh] there"),
        Turn("S2", "Well [uv_break] ok [lbreak]"),
    ]
    with pytest.warns(ScriptWarning, match=r"unknown cue '\(whistles\)'"):
        turns = parse_script("[S1] la (whistles) la [S3] yes")
    assert turns == [Turn("S1", "la la"), Turn("S3", "yes")]
    with pytest.warns(ScriptWarning, match=r"unknown tag '\[music\]'"):
        assert parse_script("[S1] [music] hello") == [Turn("S1", "hello")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_script("[S1] plain [laugh] text [break_3]")


def test_generate_warns_on_unknown_cues(chat) -> None:
    with pytest.warns(ScriptWarning, match="sneezes"):
        wav = gen(chat, "[S1] bless (sneezes) you", seed=2)
    assert_close(wav, gen(chat, "bless you", seed=2))


# ---- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty"),
        ("   \n", "empty"),
        ("[S1]", "turn 1 .* has no text"),
        ("[S1] hi [S2]  ", r"turn 2 \(\[S2\]\) has no text"),
        ("hi [S1] there", "before the first speaker tag"),
        ("[S0] hi", "start at 1"),
    ],
)
def test_bad_scripts(chat, text, match) -> None:
    with pytest.raises(ScriptError, match=match):
        gen(chat, text)


def test_bad_audio_prompts(chat, tmp_path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio")
    with pytest.raises(AudioError, match="audio prompt: cannot read audio"):
        gen(chat, "hi", audio_prompt=str(junk))
    with pytest.raises(FileNotFoundError, match="not found"):
        gen(chat, "hi", audio_prompt=str(tmp_path / "missing.wav"))
    for shape in [(2, 4800), (4800, 2), (1, 2, 4800)]:
        with pytest.raises(AudioError, match="mono"):
            gen(chat, "hi", audio_prompt=np.zeros(shape, dtype=np.float32))
    with pytest.raises(AudioError, match="too short"):
        gen(chat, "hi", audio_prompt=np.zeros(100, dtype=np.float32))
    with pytest.raises(AudioError, match="floats"):
        gen(chat, "hi", audio_prompt=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="needs its audio prompt"):
        gen(chat, "hi", audio_prompt_text="a transcript without audio")


def test_bad_options(chat) -> None:
    with pytest.raises(UnsupportedOptionError, match="cfg_scale"):
        gen(chat, "hi", cfg_scale=3.0)
    with pytest.raises(SpeakerError):
        gen(chat, "hi", speaker="不是说话人")
    with pytest.raises(ValueError, match="sample_rate"):
        gen(chat, "hi", sample_rate=0)
    with pytest.raises(ValueError, match="pause"):
        gen(chat, "[S1] a [S2] b", pause=-1)
    with pytest.raises(ValueError, match="seeds has 1 entries for 2 texts"):
        chat.generate_batch(["a", "b"], seeds=[1])
    with pytest.raises(TypeError, match="list of texts"):
        chat.generate_batch("a single text")
    with pytest.raises(ScriptError, match="S1, S2"):
        gen(chat, "[S1] a", speakers={"Alice": 3})
    assert chat.generate_batch([]) == []


def test_as_voice() -> None:
    assert as_voice(5) == Voice(seed=5)
    assert as_voice("voice.wav") == Voice(audio="voice.wav")
    assert as_voice("蘁淰") == Voice(speaker="蘁淰")
    assert as_voice({"audio": "a.wav", "text": "hi"}) == Voice(audio="a.wav", text="hi")
    arr = np.zeros(10)
    assert as_voice(arr).audio is arr
    with pytest.raises(TypeError):
        as_voice({"voice": 1})


# ---- save_audio --------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".mp3", ".flac", ".ogg", ".opus"])
def test_save_audio_round_trips(chat, tmp_path, suffix) -> None:
    t = np.arange(RATE // 2) / RATE
    wav = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = tmp_path / f"out{suffix}"
    chat.save_audio(path, wav)
    back = load_audio(path, RATE)
    assert abs(back.size - wav.size) <= 1152  # at most one codec frame of padding
    n = min(back.size, wav.size)
    err = np.sqrt(np.mean((back[:n] - wav[:n]) ** 2)) / np.sqrt(np.mean(wav**2))
    assert err < (1e-3 if suffix in (".wav", ".flac") else 0.3), err
    # at another rate, through the class (a static method)
    Chat.save_audio(tmp_path / f"low{suffix}", resample(wav, RATE, 16000), sample_rate=16000)
    assert abs(load_audio(tmp_path / f"low{suffix}", 16000).size - 8000) <= 1152


def test_generate_can_return_a_speech_with_each_turns_time(chat) -> None:
    """The Dia-style calls' typed result: each turn's measured start and end, spoken words
    and speaker, the pauses between them; the audio is generate()'s own."""
    script = "[S1] Hello there. [S2] Hi! (laughs) [S1] Bye now."
    wav = gen(chat, script, seed=5, pause=0.2)
    speech = gen(chat, script, seed=5, pause=0.2, return_speech=True)
    assert np.array_equal(speech.audio, wav)
    assert [s.voice for s in speech.segments] == ["S1", "S2", "S1"]
    # the spoken words: normalised ("!" is read as "."), the cue's tag dropped
    assert [s.text for s in speech.segments] == ["Hello there.", "Hi.", "Bye now."]
    for a, b in zip(speech.segments[:-1], speech.segments[1:], strict=True):
        assert b.start - a.end == pytest.approx(0.2, abs=1 / RATE)
    assert speech.segments[-1].end == pytest.approx(speech.duration)
    low = gen(chat, "Plain text here.", seed=5, sample_rate=16000, return_speech=True)
    assert low.sample_rate == 16000 and low.segments[0].end <= low.duration
