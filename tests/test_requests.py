"""The request path (chattts.pipeline): per-request cancellation through every front end, the
Dia-style calls over the pipeline, and a failing batch that only fails its bad request."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

import chattts
from chattts.errors import JobFailed
from chattts.generation.engine import Interrupt
from chattts.pipeline import Pipeline, Utterance

P = chattts.InferCodeParams
R = chattts.RefineTextParams


class SetAfter(Interrupt):
    """A cancel flag that becomes set on its ``n``-th check: a cancel at a known point."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n

    def is_set(self) -> bool:
        self.left -= 1
        if self.left <= 0:
            self.set()
        return super().is_set()


def code(spk: str, seed: int, steps: int = 24) -> chattts.InferCodeParams:
    return P(spk_emb=spk, manual_seed=seed, min_new_token=steps, max_new_token=steps)


def whole(pipeline: Pipeline, items: list[Utterance]) -> list[np.ndarray]:
    return next(pipeline.synthesize(items))


def same_audio(a: np.ndarray, b: np.ndarray) -> None:
    """Equal length and samples (batched float32 differs from alone by rounding only)."""
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * float(np.abs(b).max()) + 1e-6)


def test_chat_exposes_its_pipeline(chat):
    assert isinstance(chat.pipeline, Pipeline)
    assert chat.pipeline.models is chat.models
    with pytest.raises(chattts.errors.NotLoadedError):
        chattts.Chat().pipeline  # noqa: B018 - the property raises


def test_a_cancel_during_its_refine_pass_leaves_the_other_item_whole(chat, spk):
    pipeline = chat.pipeline
    other = Utterance("chat speech model", code(spk, 5))
    alone = whole(pipeline, [other])[0]
    refine = R(manual_seed=1, min_new_token=30, max_new_token=30, show_tqdm=False)
    flag = SetAfter(5)  # set during the refine pass of this item
    left, kept = whole(pipeline, [Utterance("hello world", code(spk, 3), refine, flag), other])
    assert flag.is_set()
    assert left.size == 0, "a request cancelled while refining produces no audio"
    same_audio(kept, alone)


def test_a_cancel_during_the_code_pass_ends_only_that_item(chat, spk):
    pipeline = chat.pipeline
    long_params = code(spk, 7, steps=40)
    full = whole(pipeline, [Utterance("hello world", long_params)])[0]
    other = Utterance("chat speech model", code(spk, 5, steps=40))
    alone = whole(pipeline, [other])[0]
    flag = SetAfter(10)  # checked once per step of the code pass
    cut, kept = whole(pipeline, [Utterance("hello world", long_params, cancel=flag), other])
    assert 0 < cut.size < full.size
    same_audio(kept, alone)


def test_chat_interrupt_stops_synthesize_but_a_request_flag_does_not_touch_infer(chat, spk):
    params = code(spk, 9, steps=30)
    want = chat.infer(["hello world"], skip_refine_text=True, params_infer_code=params)[0]
    # a request's flag set in another front end's call leaves this infer whole
    foreign = Interrupt()
    foreign.set()
    items = [Utterance("chat speech", code(spk, 1), cancel=foreign)]
    assert next(chat.pipeline.synthesize(items))[0].size == 0
    again = chat.infer(["hello world"], skip_refine_text=True, params_infer_code=params)[0]
    np.testing.assert_array_equal(again, want)


def test_web_ui_interrupt_of_one_session_leaves_the_other_whole(chat, spk):
    pytest.importorskip("gradio")
    from chattts.webui.callbacks import WebUI
    from chattts.webui.generate import Settings
    from chattts.webui.voices import CUSTOM

    class Req:
        def __init__(self, key: str) -> None:
            self.session_hash = key

    ui = WebUI(chat)
    a, b = Req("a"), Req("b")
    # session b's text and settings; its audio alone first
    voice = {"voice": CUSTOM, "speaker": spk, "stream": False, "format": "wav"}
    settings = Settings(text="chat speech model", refine=False, seed=4, max_steps=200, **voice)
    alone = list(ui.generate(settings, b))[-1]["speech"].audio
    started = threading.Event()
    out: dict = {}

    def run_b() -> None:
        for update in ui.generate(settings, b):
            started.set()
            out["b"] = update

    def run_a() -> None:
        long = Settings(text="hello world", refine=True, seed=2, max_steps=2000, **voice)
        out["a"] = list(ui.generate(long, a))

    tb = threading.Thread(target=run_b)
    tb.start()
    started.wait(60)
    ta = threading.Thread(target=run_a)
    ta.start()
    for _ in range(50):  # interrupt session a again and again while b runs
        ui.interrupt(a)
        if not tb.is_alive():
            break
        tb.join(0.02)
    ta.join(120)
    tb.join(120)
    np.testing.assert_array_equal(out["b"]["speech"].audio, alone)


def _job_plan(chat, text: str, **fields):
    """A one-segment plan with these code-pass fields (a bad one gets past planning)."""
    from chattts.pipeline.speech import SegmentPlan, SpeechRequest

    request = SpeechRequest(text)
    params = P(manual_seed=4, max_new_token=12, show_tqdm=False, **fields)
    return [SegmentPlan(text, text, None, params)], request


def test_a_failing_request_fails_only_itself(chat, spk):
    """A request whose prompt cannot be built (a speaker sample that does not decode) fails
    with a JobFailed; the request next to it completes, as it would alone."""
    from chattts.server.batcher import DONE, SpeechJob, Worker

    async def run() -> tuple:
        worker = Worker(chat.pipeline, max_batch=4)
        good = SpeechJob(*_job_plan(chat, "chat speech", spk_emb=spk))
        bad = SpeechJob(*_job_plan(chat, "hello world", spk_smp="not a sample", txt_smp="hi"))
        worker.submit(good)
        worker.submit(bad)
        results = []
        for job in (good, bad):
            parts = []
            while (item := await job.get()) is not DONE:
                parts.append(item)
                if isinstance(item, JobFailed):
                    break
            results.append(parts)
        worker.stop()
        return results, worker.stats

    (good_parts, bad_parts), stats = asyncio.run(run())
    assert isinstance(bad_parts[-1], JobFailed)
    assert good_parts and not any(isinstance(p, JobFailed) for p in good_parts)
    from chattts.pipeline.assembler import collect
    from chattts.pipeline.speech import render_speech

    items, request = _job_plan(chat, "chat speech", spk_emb=spk)
    alone = render_speech(chat.pipeline, items, request).audio
    same_audio(collect(iter(good_parts), 24000).audio, alone)
    assert stats.failed == 1 and stats.completed == 1


def test_the_worker_is_alive_from_start_to_stop(chat):
    from chattts.server.batcher import Worker

    worker = Worker(chat.pipeline)
    assert not worker.alive  # no thread before the first start or submit
    worker.start()
    assert worker.alive
    worker.stop()
    assert not worker.alive
    worker.start()  # a stopped worker starts a new thread
    assert worker.alive
    worker.stop()
    assert not worker.alive


def test_generate_takes_keywords_after_the_text(chat):
    with pytest.raises(TypeError):
        chat.generate("hello world", None)  # audio_prompt is keyword-only
    assert chat.generate.__doc__ == chattts.dia.Dia.generate.__doc__


def test_web_ui_saves_the_current_voice_and_mixes_two(chat, tmp_path):
    pytest.importorskip("gradio")
    import gradio as gr

    from chattts.voices import VoiceLibrary, mix_speakers
    from chattts.webui.callbacks import WebUI
    from chattts.webui.voices import CUSTOM

    ui = WebUI(chat, library=VoiceLibrary(str(tmp_path / "voices")))
    spk = chat.sample_random_speaker(11)
    *_, note = ui.save_voice("alice", CUSTOM, spk, "", "")
    values = [v for _, v in ui.voices.choices()]
    assert "alice" in note and "alice" in values and values[-1] == CUSTOM
    assert ui.on_voice("alice")[0] == spk  # picking it gives back its speaker string
    mixed = ui.voices.resolver().voice(ui.mix("alice", "seed_2", 0.25)).speaker
    assert mixed == mix_speakers([(spk, 0.75), (chat.sample_random_speaker(2), 0.25)])
    assert ui.mix("alice", "seed_2", 0.0) == "alice"
    with pytest.raises(gr.Error):
        ui.save_voice("bob", CUSTOM, "", "", "")  # nothing to save
    with pytest.raises(gr.Error):
        ui.mix("alice", CUSTOM, 0.5)
