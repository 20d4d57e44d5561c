"""Narration jobs of the server (chattts.server.jobs), in process through Starlette's test
client with the tiny model: the lifecycle (submit, poll, result, cancel), uploads, bad inputs
naming their field, limits, the API key, expiry, and a job beside live requests."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import zipfile

import httpx
import numpy as np
import pytest
from conftest import tiny_chat
from starlette.testclient import TestClient

import chattts
from chattts.audio import load_audio
from chattts.captions import parse_captions
from chattts.narrate import render
from chattts.narrate.documents import load_document
from chattts.narrate.narration import Narration
from chattts.narrate.store import ProgressStore
from chattts.server import create_app
from chattts.server.jobs_spec import JobBody, JobSpec

STEPS = 24  # code steps per segment: short audio, fast jobs
TIMEOUT = 120  # seconds a job may take here: nothing waits longer
BOOK = """# A Small Book

## One

It was a bright cold day. The clocks struck thirteen.

Home at last.

## Two

A second chapter, short.
"""


def long_book(paragraphs: int) -> str:
    words = ["wind", "lamp", "steps", "river", "dog", "letter", "door", "clock", "rain", "road"]
    out = []
    for n in range(paragraphs):
        a, b = words[n % 10], words[(n * 7 + 3) % 10]
        out.append(f"The {a} and the {b} met on day {n + 1}. They spoke {n + 2} times.")
    return "\n\n".join(out)


@pytest.fixture(scope="module")
def server_chat() -> chattts.Chat:
    """The server's own Chat (its worker thread is its only user)."""
    return tiny_chat()


def make_client(chat, data_dir, **settings) -> TestClient:
    settings = {"max_batch": 4, "max_new_token": 2048, **settings}
    app = create_app(chat, data_dir=str(data_dir), allowed_hosts=["testserver"], **settings)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(server_chat, tmp_path_factory):
    with make_client(server_chat, tmp_path_factory.mktemp("jobs")) as c:
        yield c


def submit(client, document=BOOK, headers=None, **fields):
    body = {"input": document, "voice": "alloy", "seed": 5, "max_new_token": STEPS, **fields}
    return client.post("/v1/audio/jobs", json=body, headers=headers)


def upload(client, name: str, data: bytes, **fields):
    form = {"voice": "alloy", "seed": "5", "max_new_token": str(STEPS), **fields}
    return client.post("/v1/audio/jobs", files={"file": (name, data)}, data=form)


def wait(client, id: str, states=("succeeded", "failed", "cancelled"), headers=None) -> dict:
    deadline = time.monotonic() + TIMEOUT
    seen = []
    while True:
        job = client.get(f"/v1/audio/jobs/{id}", headers=headers).json()
        seen.append(job)
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, seen[-3:]
        time.sleep(0.05)


def renders(folder) -> list[tuple[str, int]]:
    db = os.path.join(folder, "narration.sqlite")
    if not os.path.exists(db):
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT id, run FROM renders ORDER BY n").fetchall()
    except sqlite3.OperationalError:
        return []


def test_a_job_from_submission_to_its_zip(client, server_chat, chat, tmp_path):
    r = submit(client, format="md", response_format="wav", captions="srt", speed=1.25)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["state"] == "queued" and r.headers["location"] == f"/v1/audio/jobs/{job['id']}"
    done = wait(client, job["id"])
    assert done["state"] == "succeeded", done
    p = done["progress"]
    assert p["segments_done"] == p["segments"] > 0 and p["chapters_done"] == p["chapters"] == 2
    assert done["started_at"] >= done["created_at"] and done["expires_at"] > done["finished_at"]
    r = client.get(done["result"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(r.content))
    names = ["chapter_01.wav", "chapter_01.srt", "chapter_02.wav", "chapter_02.srt"]
    assert z.namelist() == [*names, "book.m4b", "manifest.json"]
    assert [f.rsplit("/", 1)[1] for f in done["files"]] == z.namelist()
    manifest = json.loads(z.read("manifest.json"))
    assert manifest["finish"]["tempo"] == 1.25 and manifest["captions"] == "srt"
    for c in manifest["chapters"]:
        wav = load_audio(io.BytesIO(z.read(c["file"])))
        assert wav.size == c["samples"]
        cues, _ = parse_captions(z.read(c["captions"]).decode(), "srt")
        assert cues and cues[-1].end <= c["duration"] + 1e-3
    assert client.get(done["files"][1]).text == z.read("chapter_01.srt").decode()
    # the job's segments are those of the same narration made with Chat.synthesize: the
    # scheduler's background rows draw what the engine's batch draws
    folder = app_jobs(client).store.out(job["id"])
    spec = JobSpec.from_json(app_jobs(client).store.get(job["id"]).spec)
    source = os.path.join(os.path.dirname(folder), spec.document)
    doc = load_document(source, kind="md")
    settings = spec.settings(render.model_identity(chat))
    with Narration(doc, str(tmp_path), settings, spec.output(), batch=4) as n:
        n.run(chat)
    with ProgressStore(folder) as served, ProgressStore(str(tmp_path)) as alone:
        ids = {i for i, _, _ in served.renders()}
        assert ids == {i for i, _, _ in alone.renders()}
        for i in ids:
            a, b = served.audio(i), alone.audio(i)
            assert a.size == b.size
            assert float(np.abs(a - b).max()) <= 1e-3 * float(np.abs(b).max()) + 1e-4


def app_jobs(client):
    return client.app.state.jobs


def test_an_uploaded_one_chapter_document_answers_its_audio(client):
    r = upload(client, "note.txt", b"Hello there. This is one chapter.", response_format="wav")
    assert r.status_code == 202, r.text
    done = wait(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    manifest = client.get(done["files"][-1]).json()
    r = client.get(done["result"])
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert load_audio(io.BytesIO(r.content)).size == manifest["samples"]
    caps = client.get(done["files"][1]).json()["captions"]  # json captions by default
    assert [c["text"] for c in caps] == ["Hello there.", "This is one chapter."]


def test_an_uploaded_epub(client, tmp_path):
    from test_narrate_documents import make_epub

    make_epub(tmp_path / "book.epub")
    r = upload(client, "book.epub", (tmp_path / "book.epub").read_bytes(), book="none")
    assert r.status_code == 202, r.text
    done = wait(client, r.json()["id"])
    assert done["state"] == "succeeded", done
    z = zipfile.ZipFile(io.BytesIO(client.get(done["result"]).content))
    manifest = json.loads(z.read("manifest.json"))
    assert [c["title"] for c in manifest["chapters"]] == ["Chapter 1", "Chapter 2", "Chapter 3"]
    assert manifest["book"] is None and "book.m4b" not in z.namelist()


def test_bad_inputs_are_400_naming_the_field(client):
    cases = [
        (submit(client, "  \n "), "input", "empty_input"),
        (submit(client, "<p> </p><script>x</script>", format="html"), "input", "empty_input"),
        (submit(client, "* * *"), "input", "empty_input"),
        (submit(client, "hi", format="epub"), "format", "invalid_value"),
        (submit(client, "hi", voice="nobody"), "voice", "voice_not_found"),
        (submit(client, "hi", max_new_token=10**6), "max_new_token", "invalid_value"),
        (submit(client, "hi", speed=9), "speed", "invalid_value"),
        (submit(client, "hi", colour="red"), "colour", "unknown_parameter"),
        (upload(client, "empty.txt", b""), "file", "empty_input"),
        (upload(client, "latin1.txt", "Caf\xe9".encode("latin-1")), "file", "invalid_document"),
        (upload(client, "book.epub", b"not a zip"), "file", "invalid_document"),
        (upload(client, "book.docx", b"PK\x03\x04"), "file", "invalid_document"),
        (upload(client, "a.txt", b"hi", input="hi"), "input", "invalid_value"),
        (upload(client, "a.txt", b"hi", top_k="many"), "top_k", "invalid_value"),
    ]
    for r, param, code in cases:
        assert r.status_code == 400, (param, r.text)
        err = r.json()["error"]
        assert (err["param"], err["code"]) == (param, code), err
    latin = cases[9][0].json()["error"]["message"]
    assert latin.startswith("'file': not UTF-8 text (byte 0xe9 at byte offset 3)"), latin
    assert "not a zip file" in cases[10][0].json()["error"]["message"]
    r = client.post("/v1/audio/jobs", content=b"hi", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    r = client.post("/v1/audio/jobs", data={"voice": "alloy"}, files={"other": ("a.txt", b"x")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    assert submit(client, "hi", model="whisper").status_code == 404
    for path in ("/v1/audio/jobs/" + "0" * 32, "/v1/audio/jobs/nope/result"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    store = app_jobs(client).store  # nothing is left behind by a refused job
    root = os.path.join(store.data_dir, "jobs")
    assert all(store.get(i) is not None for i in (os.listdir(root) if os.path.isdir(root) else []))


def test_tempo_or_pitch_without_the_stretch_extra_is_a_400_naming_the_field(client, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pedalboard", None)  # as if not installed
    for field, value in (("speed", 1.5), ("pitch", 2.0)):
        r = submit(client, "Hello.", **{field: value})
        assert r.status_code == 400 and r.json()["error"]["param"] == field, r.text
        assert "pip install 'chattts[stretch]'" in r.json()["error"]["message"]


def test_cancel_a_running_job_then_delete_a_finished_one(client):
    long = submit(client, long_book(60)).json()
    short = submit(client, "After the cancel.").json()
    folder = app_jobs(client).store.out(long["id"])
    deadline = time.monotonic() + TIMEOUT
    while len(renders(folder)) < 2:  # it runs: some segments are done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = client.delete(f"/v1/audio/jobs/{long['id']}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled" and not r.json()["deleted"]
    assert wait(client, short["id"])["state"] == "succeeded"  # the next job ran
    job = client.get(f"/v1/audio/jobs/{long['id']}").json()
    assert job["state"] == "cancelled" and job["progress"]["segments_done"] < 120
    assert not os.path.exists(os.path.dirname(folder))  # its files are gone, its record stays
    assert client.get(f"/v1/audio/jobs/{long['id']}/result").status_code == 409
    r = client.delete(f"/v1/audio/jobs/{short['id']}")
    assert r.status_code == 200 and r.json()["deleted"] and r.json()["state"] == "succeeded"
    assert client.get(f"/v1/audio/jobs/{short['id']}").status_code == 404
    assert client.delete(f"/v1/audio/jobs/{short['id']}").status_code == 404


def test_a_stopped_server_leaves_its_job_running_and_the_next_start_resumes_it(
    server_chat, tmp_path
):
    with make_client(server_chat, tmp_path) as c:
        job = submit(c, long_book(20)).json()
        folder = app_jobs(c).store.out(job["id"])
        deadline = time.monotonic() + TIMEOUT
        while len(renders(folder)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    # the app stopped (its lifespan ended): the batch in flight ended, the job is still
    # running in the index, for the next start
    before = renders(folder)
    assert app_jobs(c).store.get(job["id"]).state == "running" and 2 <= len(before) < 40
    with make_client(server_chat, tmp_path) as c:
        done = wait(c, job["id"])
    assert done["state"] == "succeeded"
    ids = [i for i, _ in renders(folder)]
    assert len(ids) == len(set(ids)) == 40 and renders(folder)[: len(before)] == before


def test_results_expire(client):
    id = submit(client, "Soon gone.").json()["id"]
    job = wait(client, id)
    jobs = app_jobs(client)
    assert id not in jobs.expire(now=job["expires_at"] - 1)  # not yet
    assert client.get(f"/v1/audio/jobs/{id}").status_code == 200
    assert id in jobs.expire(now=job["expires_at"] + 1)
    assert client.get(f"/v1/audio/jobs/{id}").status_code == 404
    assert not os.path.exists(jobs.store.folder(id)) and jobs.store.get(id) is None


def test_limits_429_and_413(server_chat, tmp_path):
    with make_client(server_chat, tmp_path, max_jobs=2, max_job_bytes=100) as c:
        app_jobs(c).stop()  # nothing runs: the jobs stay queued
        assert submit(c, "One.").status_code == 202
        assert upload(c, "b.txt", b"Two.").status_code == 202
        r = submit(c, "Three.")
        assert r.status_code == 429 and r.headers["retry-after"] == "30"
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        app_jobs(c).start()
        for id in [j.id for j in app_jobs(c).store.active()]:
            assert wait(c, id)["state"] == "succeeded"
        r = upload(c, "big.txt", b"word " * 40)
        assert r.status_code == 413 and r.json()["error"]["param"] == "file"
        r = submit(c, "x" * 200_000)  # the JSON body itself is refused before it is read
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_the_api_key_guards_jobs(server_chat, tmp_path):
    with make_client(server_chat, tmp_path, api_key="s3cret") as c:
        r = submit(c, "Keyed.")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        key = {"Authorization": "Bearer s3cret"}
        r = submit(c, "Keyed.", headers=key)
        assert r.status_code == 202
        id = r.json()["id"]
        for method, path in (("GET", ""), ("GET", "/result"), ("DELETE", "")):
            assert c.request(method, f"/v1/audio/jobs/{id}{path}").status_code == 401
        assert wait(c, id, headers=key)["state"] == "succeeded"


def test_form_fields_read_as_the_json_ones():
    from chattts.server.jobs_spec import parse_job_form, parse_job_json

    form = parse_job_form({"voice": "alloy", "speed": "1.5", "seed": "7", "refine": "true"})
    as_json = parse_job_json(
        b'{"input": "x", "voice": "alloy", "speed": 1.5, "seed": 7, "refine": true}'
    )
    assert form == as_json.model_copy(update={"input": None})
    assert parse_job_form({"voice": "a", "captions": "none", "book": ""}).captions is None
    body = JobBody(voice="alloy", speed=1.25, loudness=-18.0, chattts_speed=3, top_k=5)
    spec = JobSpec.of(body, "md", "input.md", {"spk_emb": "x"}, 99)
    again = JobSpec.from_json(json.loads(json.dumps(spec.as_json())))
    assert again == spec
    settings, out = again.settings("model"), again.output()
    assert settings.voice.spk_emb == "x" and settings.code.prompt == "[speed_3]"
    assert settings.code.top_K == 5 and settings.code.max_new_token == 99
    assert out.finish.tempo == 1.25 and out.finish.loudness == -18.0 and out.captions == "json"


# ---- a server killed mid-job -----------------------------------------------------------------


def serve(tiny_root, data_dir, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "chattts", "serve", "--model-dir", tiny_root, "--no-verify"]
    cmd += ["--device", "cpu", "--port", str(port), "--data-dir", str(data_dir)]
    cmd += ["--max-batch", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + TIMEOUT
    while True:
        assert proc.poll() is None, proc.stderr.read().decode(errors="replace")[-3000:]
        assert time.monotonic() < deadline, "the server did not come up"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)


@pytest.mark.e2e
def test_a_server_killed_mid_job_resumes_it_when_started_again(tiny_root, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    first = serve(tiny_root, tmp_path, port)
    try:
        body = {"input": long_book(20), "voice": "alloy", "seed": 5, "max_new_token": STEPS}
        r = httpx.post(f"{url}/v1/audio/jobs", json={**body, "response_format": "wav"})
        assert r.status_code == 202, r.text
        id = r.json()["id"]
        folder = tmp_path / "jobs" / id / "out"
        deadline = time.monotonic() + TIMEOUT
        while len(renders(folder)) < 4:
            assert time.monotonic() < deadline and first.poll() is None
            time.sleep(0.005)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    before = renders(folder)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as con:
        (state,) = con.execute("SELECT state FROM jobs WHERE id = ?", (id,)).fetchone()
    assert state == "running"  # nobody marked it on the way down
    second = serve(tiny_root, tmp_path, port)
    try:
        deadline = time.monotonic() + TIMEOUT
        while (job := httpx.get(f"{url}/v1/audio/jobs/{id}").json())["state"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert job["state"] == "succeeded", job
        done = renders(folder)
        ids = [i for i, _ in done]
        assert len(ids) == len(set(ids)) == job["progress"]["segments"] == 40
        assert done[: len(before)] == before and {r for _, r in done[len(before) :]} == {2}
        manifest = httpx.get(f"{url}{job['files'][-1]}").json()  # one chapter: its audio
        wav = load_audio(io.BytesIO(httpx.get(f"{url}{job['result']}").content))
        assert wav.size == manifest["samples"] and manifest["segments"] == 40
    finally:
        second.terminate()  # (uvicorn ends by raising SIGTERM again: no exit status to check)
        second.wait(60)


# ---- jobs beside live requests -----------------------------------------------------------------


def test_a_live_request_takes_a_job_rows_slot_at_the_next_step(chat):
    """The job's segments are background rows: a live request arriving while they fill every
    slot is admitted at the next step (it waits for no job segment to end), the job's row
    starts again afterwards and draws the same audio as it draws alone."""
    import threading

    from _speech import assert_same_audio
    from test_scheduler import ticket

    from chattts.generation.engine import Interrupt
    from chattts.pipeline.scheduler import SpeechScheduler
    from chattts.server.jobs_synth import background_synthesize

    params = [chattts.InferCodeParams(manual_seed=11, max_new_token=40, spk_emb=None)]
    alone = render.trim(next(iter(chat.synthesize(["Background narration here."], params)))[0])
    sched = SpeechScheduler(chat.pipeline, 1, 64, autostart=False)
    draw = background_synthesize(sched)
    out: list = []
    job = threading.Thread(
        target=lambda: out.append(
            draw(["Background narration here."], params, None, True, Interrupt())
        )
    )
    job.start()
    deadline = time.monotonic() + TIMEOUT
    while not sched.queued:  # the job's segment is submitted
        assert time.monotonic() < deadline
        time.sleep(0.001)
    for _ in range(5):
        sched.tick()
    assert sched.running == 1 and sched.stats.steps == 5  # the job's row holds the only slot
    live, sink = ticket(chat, "Live request.", 8)
    sched.submit(live)
    sched.tick()
    assert sched.stats.preempted == 1  # admitted at once, in the job row's slot
    while not sink.done.is_set():
        sched.tick()
    assert job.is_alive()  # the live request ended first; the job waits for its slot
    while job.is_alive():
        sched.tick()
        job.join(0.001)
    assert sink.speech().audio.size > 0
    assert_same_audio(render.trim(out[0][0]), alone, "the job's segment, drawn again")


def test_live_requests_are_answered_while_a_job_runs(server_chat, tmp_path):
    from _speech import assert_same_audio, pcm

    speech = {"model": "tts-1", "voice": "alloy", "response_format": "pcm", "max_new_token": 40}
    with make_client(server_chat, tmp_path, max_batch=2) as c:
        solo = [
            pcm(c.post("/v1/audio/speech", json={**speech, "input": t, "seed": i}).content)
            for i, t in enumerate(["One live request.", "Another one."])
        ]
        job = submit(c, long_book(40)).json()
        folder = app_jobs(c).store.out(job["id"])
        deadline = time.monotonic() + TIMEOUT
        while len(renders(folder)) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        for i, t in enumerate(["One live request.", "Another one."]):
            r = c.post("/v1/audio/speech", json={**speech, "input": t, "seed": i})
            assert r.status_code == 200
            assert_same_audio(pcm(r.content), solo[i], "live beside a job")
        assert c.get(f"/v1/audio/jobs/{job['id']}").json()["state"] == "running"
        done = wait(c, job["id"])
        assert done["state"] == "succeeded"
        ids = [i for i, _ in renders(folder)]
        assert len(ids) == len(set(ids)) == done["progress"]["segments"]  # none rendered twice


def test_the_job_options_of_chattts_serve():
    from chattts.cli.args import SERVER_DEFAULTS, ServerOptions, server_options
    from chattts.errors import UsageError
    from chattts.server import build_parser

    args = build_parser().parse_args(
        ["--data-dir", "d", "--max-jobs", "3", "--job-workers", "2", "--job-ttl", "0.5"]
    )
    options = server_options(args)
    assert (options.data_dir, options.max_jobs, options.job_workers) == ("d", 3, 2)
    assert options.job_ttl == 0.5 and options.max_job_bytes == SERVER_DEFAULTS.max_job_bytes
    for bad in ({"max_jobs": 0}, {"job_workers": 0}, {"max_job_bytes": 0}, {"job_ttl": 0}):
        with pytest.raises(UsageError, match="--" + next(iter(bad)).replace("_", "-")):
            ServerOptions(**bad)
