"""The server on Ray Serve: a local Ray instance (2 CPUs) with 2 replicas of the tiny model,
driven through the official ``openai`` client; then one replica is killed under load.

The cluster test is marked ``e2e`` and ``ray`` (``pytest -m "not ray"`` skips it).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
import ray
import yaml
from _speech import assert_same_audio, decode
from ray import serve

from chattts.cli.args import ServerOptions
from chattts.cli.ray_args import autoscale_range
from chattts.errors import ReplicaUnhealthy, UsageError
from chattts.server import create_app
from chattts.server.metrics import REPLICA_HEADER
from chattts.server.ray import (
    APP_NAME,
    DEPLOYMENT_NAME,
    ReplicaOptions,
    SpeechReplica,
    app_builder,
    build_app,
    deployment_options,
)

STEPS = 20
TIMEOUT = 120  # seconds a client waits for one answer: nothing may hang past it
try:  # the openai package speaks through httpx2 where it is installed
    import httpx2

    TRANSPORT_ERRORS: tuple = (httpx.TransportError, httpx2.TransportError)
except ImportError:
    TRANSPORT_ERRORS = (httpx.TransportError,)


# ---- without a cluster ---------------------------------------------------------------------


def test_deployment_options():
    opts = ReplicaOptions(server=ServerOptions(max_batch=4))
    fixed = deployment_options(opts, replicas=3, replica_cpus=2)
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"]["num_cpus"] == 2
    assert fixed["max_ongoing_requests"] == 8  # twice max_batch: a batch under way, one waiting
    auto = deployment_options(opts, autoscale=(0, 5), max_ongoing_requests=32)
    assert "num_replicas" not in auto and auto["max_ongoing_requests"] == 32
    assert auto["autoscaling_config"] == {
        "min_replicas": 0,
        "max_replicas": 5,
        "initial_replicas": 1,
        "target_ongoing_requests": 4,
    }
    with pytest.raises(UsageError):
        deployment_options(opts, autoscale=(3, 2))
    with pytest.raises(UsageError):
        deployment_options(opts, replicas=0)
    assert autoscale_range("1:4") == (1, 4)
    for bad in ("4", "2:1", "0:0", "a:b", "-1:2"):
        with pytest.raises(Exception, match="MIN"):
            autoscale_range(bad)


def test_app_builder_reads_the_config_args(tiny_root):
    app = app_builder(
        {
            "model_dir": tiny_root,
            "verify": False,
            "device": "cpu",
            "max_batch": 4,
            "autoscale": "1:3",
            "replica_cpus": 2,
            "allowed_hosts": ["tts.example"],
        }
    )
    deployment = app._bound_deployment
    assert deployment.name == DEPLOYMENT_NAME
    options = deployment.init_args[0]
    assert options.load.custom_path == tiny_root and options.load.verify is False
    assert options.server.max_batch == 4 and options.allowed_hosts == ("tts.example",)
    assert deployment.ray_actor_options["num_cpus"] == 2
    with pytest.raises(UsageError, match="unknown argument"):
        app_builder({"model_dir": tiny_root, "bogus": 1})


def test_the_example_config_is_a_valid_serve_config(tiny_root, monkeypatch):
    from ray.serve.schema import ServeDeploySchema

    path = os.path.join(os.path.dirname(__file__), "..", "examples", "ray", "serve.yaml")
    with open(path, encoding="utf-8") as f:
        config = ServeDeploySchema.model_validate(yaml.safe_load(f))
    (app,) = config.applications
    assert app.import_path == "chattts.server.ray:app_builder"
    assert app.deployments[0].name == DEPLOYMENT_NAME
    monkeypatch.setenv("CHATTTS_API_KEY", "from-env")
    built = app_builder({**app.args, "model_dir": tiny_root})
    options = built._bound_deployment.init_args[0]
    assert options.server.api_key == "from-env"
    assert options.server.max_batch == app.args["max_batch"]


def test_serve_ray_options(tiny_root, capsys):
    from chattts.server import build_parser
    from chattts.server.ray import options_from_args

    base = ["--model-dir", tiny_root, "--no-verify", "--device", "cpu", "--max-batch", "4"]
    args = build_parser().parse_args([*base, "--ray", "--autoscale", "1:3", "--host", "tts.lan"])
    options, scale = options_from_args(args)
    assert args.ray and scale["autoscale"] == (1, 3) and scale["max_ongoing_requests"] is None
    assert options.server.max_batch == 4 and options.allowed_hosts == ("tts.lan",)
    assert options.load.custom_path == tiny_root and options.load.verify is False
    args = build_parser().parse_args([*base, "--ray", "--replicas", "3", "--replica-cpus", "2"])
    assert options_from_args(args)[1]["replicas"] == 3 and args.replica_cpus == 2
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--ray", "--replicas", "2", "--autoscale", "1:2"])
    assert "not allowed with" in capsys.readouterr().err
    # the plain server's defaults and checks, read by the same helper
    bare = argparse.Namespace(model_dir=tiny_root, verify=False)
    options = options_from_args(bare)[0]
    server = options.server
    assert (server.max_batch, server.max_queue, options.allowed_hosts) == (8, 256, ("127.0.0.1",))
    with pytest.raises(UsageError, match="--max-queue must be at least 1"):
        options_from_args(argparse.Namespace(model_dir=tiny_root, verify=False, max_queue=0))


def test_check_health_follows_the_worker(chat, tmp_path):
    """A replica is healthy while its model is loaded and its worker and job runner threads
    run."""
    replica = SpeechReplica.__new__(SpeechReplica)  # no Serve context: the app built by hand
    replica.name = "test#1"
    replica._chattts_app = create_app(chat, data_dir=str(tmp_path))
    batcher = replica._chattts_app.state.service.worker
    jobs = replica._chattts_app.state.jobs
    with pytest.raises(ReplicaUnhealthy, match="worker"):
        replica.check_health()  # not started
    batcher.start()
    with pytest.raises(ReplicaUnhealthy, match="job runners"):
        replica.check_health()
    jobs.start()
    replica.check_health()
    jobs.stop()
    with pytest.raises(ReplicaUnhealthy, match="job runners"):
        replica.check_health()
    batcher.stop()
    with pytest.raises(ReplicaUnhealthy, match="worker"):
        replica.check_health()


# ---- chattts serve --ray in a subprocess ---------------------------------------------------


@pytest.mark.e2e
@pytest.mark.ray
def test_serve_ray_command_drains_on_sigterm(tiny_root, voice_library):
    """``chattts serve --ray`` on its own local Ray: SIGTERM lets the request under way finish,
    then the command stops with status 0."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "chattts", "serve", "--ray", "--model-dir", tiny_root]
    cmd += ["--no-verify", "--device", "cpu", "--port", str(port), "--replica-cpus", "1"]
    cmd += ["--voices", voice_library]  # not the user's library
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, b"".join(output).decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "chattts serve --ray did not come up"
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        # seed 3 runs to max_new_token without an end token: a few seconds of work
        body = {"model": "tts-1", "input": "hello world", "voice": "alloy"}
        body.update(response_format="pcm", seed=3, max_new_token=300)
        data = bytearray()
        with httpx.stream("POST", f"{url}/v1/audio/speech", json=body, timeout=TIMEOUT) as r:
            assert r.status_code == 200
            chunks = r.iter_bytes()
            data += next(chunks)
            proc.send_signal(signal.SIGTERM)  # mid-stream
            for chunk in chunks:
                data += chunk
        assert len(data) >= 0.9 * 300 * 512 * 2, f"{len(data)} bytes: the stream was cut"
        assert proc.wait(TIMEOUT) == 0, b"".join(output).decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    reader.join(10)


# ---- on a local Ray instance ---------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    """The replicas' shared data dir (both run on this machine)."""
    return str(tmp_path_factory.mktemp("ray-jobs"))


@pytest.fixture(scope="module")
def serve_url(tiny_root, voice_library, data_dir):
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.WARNING,
        configure_logging=False,
    )
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ReplicaOptions.from_model(
            tiny_root, max_batch=8, batch_wait_ms=100, voices=voice_library, data_dir=data_dir
        )
        app = build_app(options, replicas=2, replica_cpus=1, health_check_period_s=2)
        serve.run(app, name=APP_NAME, route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="module")
def client(serve_url):
    return openai.OpenAI(
        base_url=f"{serve_url}/v1", api_key="unused", max_retries=0, timeout=TIMEOUT
    )


#: (text, seed, format, how): how = "whole", "streamed" or "sse"
SPECS = [
    (text, seed, fmt, how)
    for text, seed in (("hello world", 1), ("chat speech model", 2), ("a third voice", 3))
    for fmt, how in (
        ("pcm", "whole"),
        ("wav", "streamed"),
        ("flac", "whole"),
        ("pcm", "sse"),
        ("wav", "whole"),
        ("pcm", "streamed"),
        ("flac", "streamed"),
        ("pcm", "whole"),
    )
]


def request(client, text, seed, fmt, how, steps=STEPS):
    """(samples, replica) of one request."""
    args = dict(
        model="tts-1",
        input=text,
        voice="alloy",
        response_format=fmt,
        extra_body={"seed": seed, "max_new_token": steps},
    )
    if how == "whole":
        r = client.audio.speech.with_raw_response.create(**args)
        data, headers = r.content, r.headers
    else:
        if how == "sse":
            args["stream_format"] = "sse"
        with client.audio.speech.with_streaming_response.create(**args) as r:
            assert r.status_code == 200
            headers = r.headers
            if how == "sse":
                data = sse_audio(r.iter_lines())
            else:
                data = b"".join(r.iter_bytes())
    return decode(data, fmt), headers[REPLICA_HEADER]


def sse_audio(lines) -> bytes:
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line]
    assert events and events[-1]["type"] == "speech.audio.done", events[-1:]
    deltas = events[:-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    return b"".join(base64.b64decode(e["audio"]) for e in deltas)


@pytest.mark.e2e
@pytest.mark.ray
def test_two_replicas_under_load_then_one_killed(client, serve_url):
    # the same requests alone, one at a time
    alone = {}
    for text, seed in {(s[0], s[1]) for s in SPECS}:
        alone[text, seed] = request(client, text, seed, "pcm", "whole")[0]
        assert alone[text, seed].size > 0

    # 24 at once, streamed and not, pcm / wav / flac / SSE
    with concurrent.futures.ThreadPoolExecutor(len(SPECS)) as pool:
        futures = {pool.submit(request, client, *spec): spec for spec in SPECS}
        results = {futures[f]: f.result(timeout=2 * TIMEOUT) for f in futures}
    replicas = {replica for _, replica in results.values()}
    for spec, (samples, _) in results.items():
        assert_same_audio(samples, alone[spec[0], spec[1]], f"{spec} vs alone")
    assert len(replicas) == 2, f"one replica served all 24: {replicas}"
    assert all(r.startswith(f"{DEPLOYMENT_NAME}#") for r in replicas)

    # bad requests: OpenAI-shaped 4xx, from the replica's own app
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", input="hi", voice="nobody")
    assert e.value.status_code == 400 and e.value.body["param"] == "voice"
    assert e.value.body["code"] == "voice_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", input="hi", voice="alloy", speed=9)
    assert e.value.body["param"] == "speed"
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("no-such-model")
    assert e.value.body["code"] == "model_not_found"

    metrics = httpx.get(f"{serve_url}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert f'replica="{metrics.headers[REPLICA_HEADER]}"' in metrics.text
    assert "chattts_server_http_requests_total{" in metrics.text

    # kill one replica's actor with longer requests under way on both
    victim = sorted(replicas)[0]
    actor = _replica_actor(victim)
    load = [("hello world", 10 + i, "pcm", ("whole", "streamed")[i % 2]) for i in range(12)]
    with concurrent.futures.ThreadPoolExecutor(len(load) + 6) as pool:
        futures = [pool.submit(_outcome, client, *spec) for spec in load]
        time.sleep(1.0)
        ray.kill(actor, no_restart=True)
        late = [("a third voice", 30 + i, "pcm", "whole") for i in range(6)]
        futures += [pool.submit(_outcome, client, *spec) for spec in late]
        outcomes = [f.result(timeout=2 * TIMEOUT) for f in futures]  # none hangs
    # a stream under way on the dead replica ends unfinished (the chunked body has no end, so
    # the client knows); requests sent after the kill go to the live replica
    assert "ok" in [kind for kind, _ in outcomes], outcomes
    for kind, detail in outcomes:
        assert kind in ("ok", "5xx", "cut"), (kind, detail)
        if kind == "5xx":
            assert detail, "a 5xx without a message"
    assert any(o[1] != victim for o in outcomes if o[0] == "ok")

    # Serve starts a new replica in place of the dead one
    deadline = time.monotonic() + 90
    while True:
        status = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
        if status.replica_states.get("RUNNING", 0) == 2 and status.status == "HEALTHY":
            break
        assert time.monotonic() < deadline, f"the replica was not replaced: {status}"
        time.sleep(0.5)
    seen = set()
    for _ in range(10):
        samples, replica = request(client, "hello world", 1, "pcm", "whole")
        assert_same_audio(samples, alone["hello world", 1], "after the replacement")
        seen.add(replica)
    assert victim not in seen


def _replica_actor(name: str):
    return ray.get_actor(f"SERVE_REPLICA::{APP_NAME}#{name}", namespace="serve")


def _outcome(client, text, seed, fmt, how):
    """("ok", replica), ("5xx", message) or ("cut", error): a stream broken mid-body."""
    try:
        samples, replica = request(client, text, seed, fmt, how, steps=200)
        assert samples.size > 0
        return "ok", replica
    except openai.APIStatusError as e:
        assert e.status_code >= 500, f"{e.status_code}: {e.message}"
        return "5xx", e.message
    except (openai.APIConnectionError, *TRANSPORT_ERRORS) as e:
        if isinstance(e, openai.APITimeoutError):
            raise
        return "cut", repr(e)


def _renders(folder: str) -> list[tuple[str, int]]:
    from test_server_jobs import renders

    return renders(folder)


@pytest.mark.e2e
@pytest.mark.ray
def test_jobs_share_the_data_dir_and_survive_a_replica(serve_url, data_dir):
    """Both replicas keep their jobs in one data dir: any replica answers any job, a job runs
    on one of them (its lock), a DELETE through either cancels it, and a job whose replica is
    killed is taken over by another one, which renders only what was not done."""
    from test_server_jobs import long_book

    def job(id: str) -> tuple[dict, str]:
        """The job and the replica that answered (a poll that reached a replica being
        killed is sent again)."""
        for _ in range(50):
            try:
                r = httpx.get(f"{serve_url}/v1/audio/jobs/{id}", timeout=TIMEOUT)
            except TRANSPORT_ERRORS:
                continue
            if r.status_code < 500:
                assert r.status_code == 200, r.text
                return r.json(), r.headers[REPLICA_HEADER]
            time.sleep(0.2)
        raise AssertionError("no replica answered")

    def running(id: str, segments: int) -> dict:
        folder = os.path.join(data_dir, "jobs", id, "out")
        deadline = time.monotonic() + TIMEOUT
        while len(_renders(folder)) < segments or job(id)[0]["replica"] is None:
            assert time.monotonic() < deadline, job(id)
            time.sleep(0.05)
        return job(id)[0]

    body = {"voice": "alloy", "seed": 5, "max_new_token": 40, "response_format": "wav"}
    r = httpx.post(
        f"{serve_url}/v1/audio/jobs", json={**body, "input": long_book(30)}, timeout=TIMEOUT
    )
    assert r.status_code == 202, r.text
    id = r.json()["id"]
    victim = running(id, 4)["replica"]
    ray.kill(_replica_actor(victim), no_restart=True)
    before = _renders(os.path.join(data_dir, "jobs", id, "out"))
    deadline = time.monotonic() + 3 * TIMEOUT
    answered = set()
    while True:
        state, replica = job(id)
        answered.add(replica)
        if state["state"] == "succeeded":
            break
        assert state["state"] == "running" and time.monotonic() < deadline, state
        time.sleep(0.2)
    # the replicas that answered for the job are not the one that ran it (dead): they read
    # it from the shared index
    assert answered and victim not in answered
    assert state["replica"] != victim  # taken over
    done = _renders(os.path.join(data_dir, "jobs", id, "out"))
    ids = [i for i, _ in done]
    assert len(ids) == len(set(ids)) == state["progress"]["segments"]  # none rendered twice
    assert done[: len(before)] == before
    result = httpx.get(f"{serve_url}{state['result']}", timeout=TIMEOUT)
    assert result.status_code == 200 and result.headers["content-type"] == "audio/wav"

    # a DELETE through the proxy cancels the job wherever it runs; its files go
    r = httpx.post(
        f"{serve_url}/v1/audio/jobs", json={**body, "input": long_book(30)}, timeout=TIMEOUT
    )
    other = r.json()["id"]
    running(other, 2)
    r = httpx.delete(f"{serve_url}/v1/audio/jobs/{other}", timeout=TIMEOUT)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    deadline = time.monotonic() + TIMEOUT
    while os.path.exists(os.path.join(data_dir, "jobs", other)):
        assert time.monotonic() < deadline, "the cancelled job's files stayed"
        time.sleep(0.1)
    assert job(other)[0]["state"] == "cancelled"
