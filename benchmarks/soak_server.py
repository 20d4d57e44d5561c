"""Soak test of the speech server: N minutes of mixed requests against ``chattts serve``.

Starts ``python -m chattts.server`` on 127.0.0.1 with the given model (the tiny test model by
default), then runs ``--clients`` threads that send, until the time is up, a random mix of:
whole responses in every format, streamed responses, SSE, requests cancelled after their
first chunk, and deliberately bad requests (which must be 4xx). Prints requests by kind and
status, p50/p95 latency of the good ones, and the server's RSS after warm-up and at the end.

    python benchmarks/soak_server.py --minutes 5
    python benchmarks/soak_server.py --minutes 30 --model-dir DIR

Exit status 1 when a good request failed, a bad one was not a 4xx, or any 5xx was seen.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections import Counter

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny")
FORMATS = ("wav", "mp3", "opus", "flac", "aac", "pcm")
BAD = [
    ("temperature 0", {"temperature": 0}),
    ("temperature 1e-300", {"temperature": 1e-300}),
    ("seed 10**30", {"seed": 10**30}),
    ("unknown voice", {"voice": "nobody"}),
    ("garbage speaker", {"voice": "x" * 64}),
    ("empty input", {"input": "   "}),
]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    options = ["--model-dir", args.model_dir, "--max-new-token", str(args.max_new_token)]
    return launch_server(options + (["--no-verify"] if args.no_verify else []), port)


def launch_server(options: list[str], port: int) -> subprocess.Popen:
    """``python -m chattts.server OPTIONS --port PORT``, once its /health answers."""
    cmd = [sys.executable, "-m", "chattts.server", *options, "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise SystemExit("the server did not start in 300 s")


class Soak:
    def __init__(self, url: str, steps: int) -> None:
        self.url = url
        self.steps = steps
        self.counts: Counter[tuple[str, int]] = Counter()
        self.latency: list[float] = []
        self.problems: list[str] = []
        self.lock = threading.Lock()

    def body(self, rng: random.Random, **extra) -> dict:
        words = rng.choice(["hello world", "a quick test", "one two three", "你好世界"])
        return {
            "model": "tts-1",
            "input": words,
            "voice": rng.choice(["alloy", "echo", "seed_7"]),
            "seed": rng.randrange(1000),
            "max_new_token": self.steps,
            **extra,
        }

    def note(self, kind: str, status: int, took: float, good: bool) -> None:
        with self.lock:
            self.counts[(kind, status)] += 1
            if good and status == 200:
                self.latency.append(took)
            if good and status != 200 and kind != "cancel":
                self.problems.append(f"{kind}: {status}")
            if not good and not 400 <= status < 500:
                self.problems.append(f"bad request {kind}: {status}")

    def one(self, client: httpx.Client, rng: random.Random) -> None:
        url = f"{self.url}/v1/audio/speech"
        pick = rng.random()
        t = time.perf_counter()
        if pick < 0.15:
            name, change = rng.choice(BAD)
            r = client.post(url, json=self.body(rng, **change))
            self.note(f"bad: {name}", r.status_code, 0, False)
        elif pick < 0.2:
            kind, content, headers = rng.choice(
                [
                    ("bad: deep JSON", b"[" * 50_000, {"content-type": "application/json"}),
                    ("bad: text/plain", json.dumps(self.body(rng)).encode(), {}),
                    ("bad: not JSON", b"{nope", {"content-type": "application/json"}),
                ]
            )
            r = client.post(url, content=content, headers=headers)
            self.note(kind, r.status_code, 0, False)
        elif pick < 0.3:  # cancelled after the first chunk
            with client.stream("POST", url, json=self.body(rng, response_format="pcm")) as r:
                for _ in r.iter_bytes():
                    break
                self.note("cancel", r.status_code, time.perf_counter() - t, True)
        elif pick < 0.45:
            with client.stream("POST", url, json=self.body(rng, stream_format="sse")) as r:
                events = [line for line in r.iter_lines() if line.startswith("data: ")]
                ok = r.status_code == 200 and "speech.audio.done" in events[-1]
                self.note("sse", r.status_code if ok else 599, time.perf_counter() - t, True)
        elif pick < 0.6:
            fmt = rng.choice(FORMATS)
            with client.stream("POST", url, json=self.body(rng, response_format=fmt)) as r:
                size = sum(len(c) for c in r.iter_bytes())
                status = r.status_code if size else 598
                self.note(f"stream {fmt}", status, time.perf_counter() - t, True)
        else:
            fmt = rng.choice(FORMATS)
            r = client.post(url, json=self.body(rng, response_format=fmt))
            status = r.status_code if r.content else 598
            self.note(f"whole {fmt}", status, time.perf_counter() - t, True)

    def run(self, seconds: float, clients: int) -> None:
        end = time.monotonic() + seconds

        def worker(i: int) -> None:
            rng = random.Random(i)
            with httpx.Client(timeout=120) as client:
                while time.monotonic() < end:
                    try:
                        self.one(client, rng)
                    except httpx.HTTPError as e:
                        with self.lock:
                            self.counts[(f"transport {type(e).__name__}", 0)] += 1
                            self.problems.append(repr(e))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--model-dir", default=TINY)
    p.add_argument("--no-verify", action="store_true", default=True)
    p.add_argument("--max-new-token", type=int, default=48, help="code steps per request")
    args = p.parse_args()
    port = free_port()
    proc = start_server(args, port)
    url = f"http://127.0.0.1:{port}"
    try:
        Soak(url, args.max_new_token).run(20, args.clients)  # warm-up: allocator, encoders
        rss0 = rss_mb(proc.pid)
        soak = Soak(url, args.max_new_token)
        t = time.perf_counter()
        soak.run(args.minutes * 60, args.clients)
        took = time.perf_counter() - t
        rss1 = rss_mb(proc.pid)
        health = httpx.get(f"{url}/health", timeout=10).json()["worker"]
    finally:
        proc.terminate()
        proc.wait(30)
    total = sum(soak.counts.values())
    print(f"{total} requests in {took / 60:.1f} min, {args.clients} clients")
    by_status = Counter()
    for (kind, status), n in sorted(soak.counts.items()):
        by_status[status] += n
        print(f"  {kind:28s} {status:4d} {n:6d}")
    print("by status:", dict(sorted(by_status.items())))
    lat = sorted(soak.latency)
    if lat:
        p50, p95 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.95))]
        print(f"latency of good requests: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms")
    print(
        f"server RSS: {rss0:.0f} MB after warm-up, {rss1:.0f} MB at the end "
        f"({(rss1 - rss0) / rss0 * 100:+.1f} %)"
    )
    print("worker:", json.dumps({k: health[k] for k in ("completed", "cancelled", "failed")}))
    for line in soak.problems[:20]:
        print("problem:", line)
    return 1 if soak.problems else 0


if __name__ == "__main__":
    sys.exit(main())
