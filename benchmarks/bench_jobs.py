"""A narration job beside live requests: how much later a live request's first audio comes
while a job fills the scheduler's slots.

Usage (from the repository root; needs ``pip install 'chattts[server]'``)::

    python benchmarks/bench_jobs.py                                 # the tiny test model
    python benchmarks/bench_jobs.py --model-dir ./ChatTTS-model --steps 200 --max-batch 8

One server (uvicorn in this process, ``--max-batch`` rows) answers ``--requests`` live
requests one after another (streamed pcm, ``--steps`` code steps, a fixed seed each), first
with nothing else running, then while a job narrates a long document (its segments fill every
slot as background rows). Output: one JSON object per line, each with the 1-minute load
average:

* ``{"kind": "live", "job": false|true, "ttfb_p50_ms", "ttfb_p95_ms", "total_p50_ms"}``: the
  time to the first audio byte and to the last;
* ``{"kind": "steps", "step_ms", "preempted", "job_segments_per_s"}``: the mean duration of a
  generation step while the job ran (steps counted by the worker over the whole phase), the
  background rows that gave their slot to a live one, and the job's pace.

The promise of docs/narrate.md ("a running job delays a live request's first audio by at
most one batch step") reads as: ``ttfb_p50_ms`` with the job minus without it, next to
``step_ms``. Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from typing import Any

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny")


def emit(obj: dict[str, Any]) -> None:
    obj["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(obj), flush=True)


def live(client: httpx.Client, url: str, seed: int, steps: int) -> tuple[float, float]:
    """(seconds to the first audio byte, seconds to the last) of one streamed request."""
    body = {"model": "tts-1", "input": "A live request, spoken now.", "voice": "alloy"}
    body.update(response_format="pcm", seed=seed, max_new_token=steps)
    start = time.perf_counter()
    first = None
    with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - start
    return first if first is not None else float("nan"), time.perf_counter() - start


def phase(url: str, args: argparse.Namespace, job: bool) -> None:
    ttfb, total = [], []
    with httpx.Client(timeout=600) as client:
        for i in range(args.requests):
            a, b = live(client, url, 100 + i, args.steps)
            ttfb.append(a * 1000)
            total.append(b * 1000)
    ttfb.sort()
    emit(
        {
            "kind": "live",
            "job": job,
            "requests": args.requests,
            "ttfb_p50_ms": round(statistics.median(ttfb), 1),
            "ttfb_p95_ms": round(ttfb[min(len(ttfb) - 1, int(0.95 * len(ttfb)))], 1),
            "total_p50_ms": round(statistics.median(total), 1),
        }
    )


def book(paragraphs: int) -> str:
    return "\n\n".join(
        f"Paragraph {n + 1} of the long book. It goes on, sentence after sentence, for a while."
        for n in range(paragraphs)
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model-dir", default=TINY)
    p.add_argument("--steps", type=int, default=48, help="code steps of a live request")
    p.add_argument("--job-steps", type=int, default=48, help="code steps of a job segment")
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--paragraphs", type=int, default=400)
    args = p.parse_args()

    import uvicorn

    import chattts
    from chattts.server import create_app

    chat = chattts.Chat()
    chat.load(source="custom", custom_path=args.model_dir, verify=False, raise_on_error=True)
    with tempfile.TemporaryDirectory() as data:
        app = create_app(chat, max_batch=args.max_batch, data_dir=data)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=600) as client:
            live(client, url, 1, args.steps)  # warm up
        phase(url, args, job=False)
        body = {"input": book(args.paragraphs), "voice": "alloy", "response_format": "wav"}
        body.update(max_new_token=args.job_steps, book=None)
        id = httpx.post(f"{url}/v1/audio/jobs", json=body, timeout=60).json()["id"]
        while (httpx.get(f"{url}/v1/audio/jobs/{id}").json().get("progress") or {}).get(
            "segments_done", 0
        ) < 1:
            time.sleep(0.05)
        before = httpx.get(f"{url}/health").json()["worker"]
        job_before = httpx.get(f"{url}/v1/audio/jobs/{id}").json()["progress"]
        start = time.perf_counter()
        phase(url, args, job=True)
        wall = time.perf_counter() - start
        after = httpx.get(f"{url}/health").json()["worker"]
        job_after = httpx.get(f"{url}/v1/audio/jobs/{id}").json()
        steps = after["steps"] - before["steps"]
        done = job_after["progress"]["segments_done"] - job_before["segments_done"]
        emit(
            {
                "kind": "steps",
                "step_ms": round(wall / max(steps, 1) * 1000, 2),
                "preempted": after["preempted"] - before["preempted"],
                "job_state": job_after["state"],
                "job_segments_per_s": round(done / wall, 2),
            }
        )
        httpx.delete(f"{url}/v1/audio/jobs/{id}")
        server.should_exit = True  # the lifespan stops the job runners, then the worker
        thread.join(60)


if __name__ == "__main__":
    main()
