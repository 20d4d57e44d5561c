"""Continuous batching of speech requests (chattts.pipeline.scheduler) on the tiny model, both
backends: requests join a running generation at step boundaries and leave as they end, and each
one's audio equals what it gives alone (render_speech), whenever it joined."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chattts.errors import JobFailed
from chattts.pipeline.assembler import collect
from chattts.pipeline.scheduler import BACKGROUND, DONE, SpeechScheduler, Ticket
from chattts.pipeline.speech import SpeechRequest, plan_speech, render_speech

RATE = 24000


@pytest.fixture(scope="module", params=["torch", "onnxruntime-int8"])
def engine_chat(request):
    return request.getfixturevalue("chat" if request.param == "torch" else "ort_int8_chat")


class Sink:
    """Collects a ticket's outputs; ``done`` is set by DONE or a failure."""

    def __init__(self) -> None:
        self.items: list = []
        self.done = threading.Event()

    def __call__(self, item) -> None:
        self.items.append(item)
        if item is DONE or isinstance(item, JobFailed):
            self.done.set()

    def speech(self):
        assert self.items and self.items[-1] is DONE, self.items[-1:]
        return collect(iter(self.items[:-1]), RATE)


def ticket(chat, text: str, seed: int, priority: int = 0, **opts):
    req = SpeechRequest.of(text, seed=seed, max_new_token=opts.pop("steps", 20), **opts)
    items = plan_speech(chat.pipeline, req, lambda spec: chat.speech.voice_fields(spec, seed))
    sink = Sink()
    return Ticket(items, req, sink, priority), sink


def alone(chat, t: Ticket):
    return render_speech(chat.pipeline, t.items, t.request)


def assert_same(a, b, what: str) -> None:
    assert a.audio.size == b.audio.size, what
    assert [(s.start, s.end, s.text) for s in a.segments] == [
        (s.start, s.end, s.text) for s in b.segments
    ], what
    peak = float(np.abs(b.audio).max()) if b.audio.size else 0.0
    assert float(np.abs(a.audio - b.audio).max()) <= 1e-3 * peak + 1e-6, what


def run_steps(sched: SpeechScheduler, n: int) -> None:
    """Drive the scheduler by hand (no thread): n rounds of admission and one step."""
    for _ in range(n):
        sched.tick()


def test_requests_joining_at_different_steps_equal_their_solo_audio(engine_chat):
    sched = SpeechScheduler(engine_chat.pipeline, 4, 64, autostart=False)
    first, s1 = ticket(engine_chat, "Hello there. How are you today?", 1)
    sched.submit(first)
    run_steps(sched, 5)  # the first request runs five steps alone
    late, s2 = ticket(engine_chat, "A late request joins now.", 2)
    sched.submit(late)
    run_steps(sched, 3)
    later, s3 = ticket(engine_chat, "And one more.", 3, steps=12)
    sched.submit(later)
    while sched.running or sched.queued:
        run_steps(sched, 1)
    for t, sink, what in ((first, s1, "first"), (late, s2, "late"), (later, s3, "later")):
        assert_same(sink.speech(), alone(engine_chat, t), what)
    assert sched.stats.largest_batch >= 3 and sched.stats.completed == 3


def test_a_cancelled_request_frees_its_slot_and_leaves_the_others_untouched(engine_chat):
    sched = SpeechScheduler(engine_chat.pipeline, 2, 64, autostart=False)
    keep, s1 = ticket(engine_chat, "This one goes to the end.", 4, steps=40)
    gone, s2 = ticket(engine_chat, "This one is cancelled.", 5, steps=40)
    waiting, s3 = ticket(engine_chat, "This one waits for a slot.", 6, steps=16)
    for t in (keep, gone, waiting):
        sched.submit(t)
    run_steps(sched, 4)
    assert sched.running == 2 and sched.queued == 1
    gone.cancel.set()
    run_steps(sched, 2)
    assert s2.done.is_set() and s2.items[-1] is DONE
    assert sched.running == 2 and sched.queued == 0  # the waiting one took the freed slot
    while sched.running or sched.queued:
        run_steps(sched, 1)
    assert_same(s1.speech(), alone(engine_chat, keep), "kept")
    assert_same(s3.speech(), alone(engine_chat, waiting), "waited")
    assert sched.stats.cancelled == 1


def test_refine_requests_are_batched_too(chat):
    sched = SpeechScheduler(chat.pipeline, 4, 64, autostart=False)
    tickets = [ticket(chat, t, 10 + i, refine=True) for i, t in enumerate(["one two", "three"])]
    for t, _ in tickets:
        sched.submit(t)
    run_steps(sched, 1)
    assert sched._refine is not None and len(sched._refine.active) == 2  # refined together
    while sched.running or sched.queued:
        run_steps(sched, 1)
    for t, sink in tickets:
        assert_same(sink.speech(), alone(chat, t), "refined")


def test_a_live_request_takes_a_background_rows_slot(chat):
    sched = SpeechScheduler(chat.pipeline, 1, 64, autostart=False)
    job, s1 = ticket(chat, "Background narration here.", 7, priority=BACKGROUND, steps=30)
    sched.submit(job)
    run_steps(sched, 3)
    live, s2 = ticket(chat, "Live request.", 8)
    sched.submit(live)
    run_steps(sched, 1)
    assert sched.stats.preempted == 1
    while sched.running or sched.queued:
        run_steps(sched, 1)
    assert s2.items.index(DONE) >= 0 and s1.items[-1] is DONE
    assert_same(s2.speech(), alone(chat, live), "live")
    assert_same(s1.speech(), alone(chat, job), "preempted background row, drawn again")


def test_the_worker_thread_serves_concurrent_requests_and_static_batching(chat):
    for continuous in (True, False):
        sched = SpeechScheduler(chat.pipeline, max_batch=3, continuous=continuous)
        pairs = [ticket(chat, f"Request number {w}.", 20 + i) for i, w in enumerate("abcd")]
        for t, _ in pairs:
            sched.submit(t)
        try:
            for t, sink in pairs:
                assert sink.done.wait(120)
                assert_same(sink.speech(), alone(chat, t), f"continuous={continuous}")
        finally:
            sched.stop()
        assert not sched.alive
