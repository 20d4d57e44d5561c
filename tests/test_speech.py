"""Finished speech: Chat.speak / speak_stream, segment times, captions, finishing, SSML plans.

Every time is measured: a segment's start and end are its first and past-the-last sample in
the final audio, and its audio is what that segment gives when synthesised alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from chattts.captions import MAX_CHARS, MAX_LINES, parse_captions
from chattts.errors import EmptyInputError, ParameterError, SsmlError
from chattts.pipeline import Utterance, trim_silence
from chattts.pipeline.assembler import collect
from chattts.pipeline.speech import SpeechRequest, sentences

RATE = 24000
STEPS = 16
TEXT = "Hello there. How are you today, my friend? Fine, thanks."


def speak(chat, text=TEXT, **kw):
    kw.setdefault("seed", 3)
    kw.setdefault("max_new_token", STEPS)
    return chat.speak(text, **kw)


def alone(chat, text: str, seed: int, spk: str) -> np.ndarray:
    """One segment synthesised on its own (the pipeline's independent-utterance call)."""
    params = SpeechRequest.of(text, seed=seed, max_new_token=STEPS).sampling.code_params(
        seed, spk_emb=spk
    )
    (wav,) = next(chat.pipeline.synthesize([Utterance(text, params)], normalize=False))
    return trim_silence(wav)


def test_segments_are_the_sentences_with_their_measured_times(chat):
    speech = speak(chat)
    assert [s.text for s in speech.segments] == [
        "Hello there.",
        "How are you today, my friend",  # the spoken words: '?' is not read by the model
        "Fine, thanks.",
    ]
    voice = chat.sample_random_speaker(3)  # no voice: the voice of the seed
    pos = 0
    for i, seg in enumerate(speech.segments):
        want = alone(chat, seg.text, 3 + i, voice)
        assert seg.start == pos / RATE and seg.end == (pos + want.size) / RATE
        got = speech.audio[pos : pos + want.size]
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max() + 1e-6
        pos += want.size
    assert pos == speech.audio.size


def test_twenty_sentences_give_twenty_cues_in_order_inside_the_audio(chat):
    text = " ".join(f"Sentence number {w} is here." for w in "abcdefghijklmnopqrst")
    speech = speak(chat, text, max_new_token=6, gap=0.05)
    cues = speech.captions()
    assert len(cues) == len(speech.segments) == 20
    last = 0.0
    for cue, seg in zip(cues, speech.segments, strict=True):
        assert last <= cue.start < cue.end <= speech.duration + 1e-9
        assert (cue.start, cue.end) == (seg.start, seg.end)
        assert len(cue.lines) <= MAX_LINES and all(len(x) <= MAX_CHARS for x in cue.lines)
        assert cue.text == seg.text  # what is spoken
        last = cue.end
    assert speech.segments[1].start - speech.segments[0].end == pytest.approx(0.05)
    srt = parse_captions(speech_text(speech, "srt"), "srt")[0]
    assert [c.text for c in srt] == [c.text for c in cues]


def speech_text(speech, fmt: str) -> str:
    import io

    buf = io.StringIO()
    speech.save_captions(buf, fmt)
    return buf.getvalue()


def test_a_sentence_too_long_for_a_cue_is_spoken_clause_by_clause(chat):
    long = (
        "When the evening came the travellers reached the river, where the boatman waited "
        "with his lantern, and they crossed in silence while the stars came out."
    )
    speech = speak(chat, long, max_new_token=8)
    assert len(speech.segments) > 1
    for cue in speech.captions():
        assert len(cue.lines) <= MAX_LINES and all(len(x) <= MAX_CHARS for x in cue.lines)
    unsplit = speak(chat, long, max_new_token=8, captions=False)
    assert len(unsplit.segments) < len(speech.segments)


def test_cue_text_is_the_normalised_spoken_text(chat):
    chat.normalizer.register("en", lambda t: t.replace("42", "forty two"))
    try:
        speech = speak(chat, "I counted 42 boats.", lang="en")
    finally:
        chat.normalizer.unregister("en")
    assert speech.segments[0].text == "I counted forty two boats."


def test_streamed_speech_equals_the_whole(chat):
    whole = speak(chat)
    chunks = list(chat.speak_stream(TEXT, seed=3, max_new_token=STEPS))
    assert len(chunks) > 1
    streamed = collect(iter(chunks), RATE)
    assert streamed.segments == whole.segments
    assert np.array_equal(streamed.audio, whole.audio)
    # each segment arrives with (or after) the last of its audio
    heard = 0
    for chunk in chunks:
        heard += chunk.audio.size
        for seg in chunk.segments:
            assert seg.end * RATE <= heard + 1e-6


def test_finished_stream_is_close_to_the_finished_whole(chat):
    opts = {"tempo": 1.5, "pitch": 2.0, "loudness": -20.0, "gap": 0.1}
    whole = speak(chat, **opts)
    streamed = collect(chat.speak_stream(TEXT, seed=3, max_new_token=STEPS, **opts), RATE)
    assert streamed.audio.size == whole.audio.size
    assert [(s.start, s.end) for s in streamed.segments] == [
        (s.start, s.end) for s in whole.segments
    ]
    plain = speak(chat)
    assert whole.duration == pytest.approx(plain.duration / 1.5 + 0.2, abs=0.01)
    # Rubber Band's phases differ between a whole file and pieces: compare levels, not samples
    rms = [
        float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) for x in (whole.audio, streamed.audio)
    ]
    assert rms[1] == pytest.approx(rms[0], rel=0.1)


def test_requests_check_their_values():
    with pytest.raises(ParameterError, match="tempo"):
        SpeechRequest.of("hi", tempo=8)
    with pytest.raises(ParameterError, match="loudness"):
        SpeechRequest.of("hi", loudness=3)
    with pytest.raises(ParameterError, match="gap"):
        SpeechRequest.of("hi", gap=-1)
    with pytest.raises(TypeError):
        SpeechRequest.of("hi", colour="blue")
    assert SpeechRequest.of("hi", seed=4, top_p=0.5).sampling.code_params(4).top_P == 0.5


@pytest.mark.parametrize("text", ["", "   ", "😀😀", "...", "<speak><break time='1s'/></speak>"])
def test_nothing_to_speak_is_an_error(chat, text):
    with pytest.raises(EmptyInputError):
        chat.speak(text, ssml=text.startswith("<speak"))


def test_sentence_ends_of_the_speech_path():
    assert sentences("One. Two! Three? Four; five.") == ["One.", "Two!", "Three?", "Four;", "five."]
    assert sentences("你好。今天好吗？好！") == ["你好。", "今天好吗？", "好！"]
    assert sentences("It costs 3.5 euros.") == ["It costs 3.5 euros."]


# ---- SSML ------------------------------------------------------------------------------------


def test_ssml_break_is_digital_silence_of_its_length(chat):
    doc = '<speak>Hello there. <break time="700ms"/> Goodbye now.</speak>'
    speech = speak(chat, doc, ssml=True)
    a, b = speech.segments
    assert b.start - a.end == pytest.approx(0.7, abs=0.01)
    gap = speech.audio[round(a.end * RATE) : round(b.start * RATE)]
    assert gap.size == round(0.7 * RATE) and not gap.any()


def test_ssml_voice_switch_equals_that_text_alone_in_that_voice(chat):
    other = chat.sample_random_speaker(99)
    doc = f'<speak>Hello there. <voice name="{other}">Second voice here.</voice></speak>'
    speech = speak(chat, doc, ssml=True)
    first, second = speech.segments
    want = alone(chat, "Second voice here.", 3 + 1, other)
    got = speech.audio[round(second.start * RATE) : round(second.end * RATE)]
    assert got.size == want.size
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max() + 1e-6
    assert second.voice == other and first.voice is None


@pytest.mark.parametrize("rate, factor", [("50%", 0.5), ("200%", 2.0)])
def test_ssml_rate_is_exact_tempo(chat, rate, factor):
    plain = speak(chat, "<speak>Steady words here.</speak>", ssml=True)
    fast = speak(
        chat, f'<speak><prosody rate="{rate}">Steady words here.</prosody></speak>', ssml=True
    )
    assert fast.duration == pytest.approx(plain.duration / factor, rel=0.03)


def test_ssml_nested_prosody_and_marks(chat):
    doc = (
        '<speak><prosody rate="150%"><prosody rate="200%" volume="+6dB">Quick words.'
        '</prosody></prosody><mark name="here"/> Then slow.</speak>'
    )
    speech = speak(chat, doc, ssml=True)
    plain = speak(chat, "<speak>Quick words.</speak>", ssml=True)
    assert speech.segments[0].end == pytest.approx(plain.duration / 3, rel=0.03)
    (mark,) = speech.marks
    assert mark.name == "here" and 0 < mark.time <= speech.duration
    assert mark.time == speech.segments[1].start


def test_ssml_tokens_and_say_as_reach_the_model_and_captions(chat):
    doc = "<speak>Wait [uv_break] now <say-as interpret-as='characters'>ABC</say-as>.</speak>"
    items = []
    speech = speak(chat, doc, ssml=True)
    items = [s.text for s in speech.segments]
    assert all("[uv_break]" not in t for t in items)  # captions hold the words only
    assert any("A B C" in t for t in items)


def test_infer_takes_ssml(chat):
    doc = '<speak>Hello there. <break time="300ms"/> Goodbye.</speak>'
    params = chat.InferCodeParams(manual_seed=3, max_new_token=STEPS, show_tqdm=False)
    (wav,) = chat.infer(doc, ssml=True, skip_refine_text=True, params_infer_code=params)
    speech = speak(chat, doc, ssml=True, voice=None)
    assert wav.size == speech.audio.size
    with pytest.raises(SsmlError):
        chat.infer("<speak><audio src='x.wav'/></speak>", ssml=True)


def test_tempo_without_pedalboard_fails_before_any_synthesis(chat, monkeypatch):
    import sys

    from chattts.errors import MissingDependencyError
    from chattts.pipeline import Pipeline

    monkeypatch.setitem(sys.modules, "pedalboard", None)  # as if not installed

    def never(*a, **k):
        raise AssertionError("synthesis ran before the missing dependency was reported")

    monkeypatch.setattr(Pipeline, "synthesize", never)
    with pytest.raises(MissingDependencyError, match=r"pip install 'chattts\[stretch\]'"):
        chat.speak("Hello there.", tempo=1.5)
    ssml = '<speak><prosody pitch="+2st">Hello there.</prosody></speak>'
    with pytest.raises(MissingDependencyError):
        chat.speak(ssml, ssml=True)


def test_a_cancel_stops_the_refine_passes_still_to_run(chat, monkeypatch):
    from chattts.generation.engine import Interrupt
    from chattts.pipeline.passes import Passes

    flag, calls = Interrupt(), []
    refine = Passes.refine

    def first_then_cancel(self, *args, **kwargs):
        calls.append(1)
        out = refine(self, *args, **kwargs)
        flag.set()  # the user stops while the first sentence is refined
        return out

    monkeypatch.setattr(Passes, "refine", first_then_cancel)
    text = " ".join(f"Sentence number {w} is here." for w in ("one", "two", "three", "four"))
    chat.speak(text, refine=True, seed=1, max_new_token=8, cancel=flag)
    assert len(calls) == 1
