"""Server benchmark: the plain server against Ray Serve replicas, and the proxy's overhead.

Usage (from the repository root; needs ``pip install 'chattts[ray]'``)::

    python benchmarks/bench_server.py                          # the tiny test model
    python benchmarks/bench_server.py --model-dir ./ChatTTS-model --steps 64 --requests 64
    python benchmarks/bench_server.py --model-dir FULL --quantize int8 --staggered 12 0.4

Three setups serve the same model: ``plain`` (``chattts serve``: uvicorn, one model, one
worker), ``ray1`` and ``ray2`` (Ray Serve with 1 and 2 replicas, one CPU each, on a local Ray
instance). Output: one JSON object per line.

* ``{"kind": "load", "setup", "clients", "requests", "rps", "p50_s", "p95_s", "errors"}``:
  ``requests`` speech requests (pcm, ``--steps`` code steps, a fixed seed each) from
  ``clients`` concurrent clients; latency to the last byte.
* ``{"kind": "overhead", "setup", "models_p50_ms", "speech_p50_ms"}``: medians of
  ``--repeats`` sequential requests, one client: ``GET /v1/models`` (no model work: the
  transport alone) and a speech request of one code step. The Ray setups' difference from
  ``plain`` is what the proxy and the replica's handle add to each request.

``--staggered N G`` measures one model under arrivals instead (``--setups`` is then ignored):
``N`` streamed clients (raw PCM), the i-th starting ``i*G`` seconds after the first, each
asking for ``--steps`` code steps (a different seed each), served with static scheduling
(a batch runs to its end) and with continuous scheduling (requests join at the next step),
one after the other on the same loaded model and the same requests:

* ``{"kind": "staggered", "scheduling", "clients", "gap_s", "ttfa_p50_s", "ttfa_p95_s",
  "ttfa_max_s", "total_p50_s", "audio_s", "throughput", "errors", "peak_rss_mb"}``: time to
  the first audio byte and to the last; ``audio_s`` the audio served (seconds) and ``throughput``
  audio seconds per wall second from the first request to the last byte; the process's
  peak RSS so far (the model, the server and the clients).
* ``{"kind": "staggered_ratio", "ttfa_p95", "throughput"}``: continuous over static.

Timings depend on the load of the machine: each line carries the 1-minute load average.
Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import resource
import socket
import statistics
import threading
import time
from typing import Any

import httpx

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "..", "tests", "fixtures", "tiny")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def speech(client: httpx.Client, url: str, seed: int, steps: int) -> float:
    body = {"model": "tts-1", "input": "hello world", "voice": "alloy"}
    body.update(response_format="pcm", seed=seed, max_new_token=steps)
    start = time.perf_counter()
    r = client.post(f"{url}/v1/audio/speech", json=body)
    r.raise_for_status()
    return time.perf_counter() - start


def load(url: str, clients: int, requests: int, steps: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            futures = [pool.submit(speech, client, url, 100 + i, steps) for i in range(requests)]
            for f in futures:
                try:
                    latencies.append(f.result())
                except httpx.HTTPError:
                    errors += 1
        wall = time.perf_counter() - start
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
    return {
        "rps": round(len(latencies) / wall, 3),
        "p50_s": round(statistics.median(latencies), 4) if latencies else None,
        "p95_s": round(p95, 4) if p95 is not None else None,
        "errors": errors,
    }


def overhead(url: str, repeats: int) -> dict[str, Any]:
    with httpx.Client(timeout=600) as client:
        for _ in range(3):  # warm the connection and the worker
            client.get(f"{url}/v1/models").raise_for_status()
            speech(client, url, 1, 1)
        models = []
        for _ in range(repeats):
            start = time.perf_counter()
            client.get(f"{url}/v1/models").raise_for_status()
            models.append(time.perf_counter() - start)
        tiny = [speech(client, url, 1, 1) for _ in range(repeats)]
    return {
        "models_p50_ms": round(1000 * statistics.median(models), 2),
        "speech_p50_ms": round(1000 * statistics.median(tiny), 2),
    }


def streamed(url: str, seed: int, steps: int, delay: float) -> tuple[float, float, int]:
    """One streamed client starting after ``delay`` s: (first audio s, last byte s, bytes)."""
    time.sleep(delay)
    body = {"model": "tts-1", "input": "hello world, this is a test.", "voice": "alloy"}
    body.update(response_format="pcm", seed=seed, max_new_token=steps)
    first = None
    size = 0
    start = time.perf_counter()
    with httpx.Client(timeout=600) as client:
        with client.stream("POST", f"{url}/v1/audio/speech", json=body) as r:
            r.raise_for_status()
            for chunk in r.iter_bytes():
                if chunk and first is None:
                    first = time.perf_counter() - start
                size += len(chunk)
    return first if first is not None else float("nan"), time.perf_counter() - start, size


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def staggered(url: str, clients: int, gap: float, steps: int) -> dict[str, Any]:
    results, errors = [], 0
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(streamed, url, 500 + i, steps, i * gap) for i in range(clients)]
        for f in futures:
            try:
                results.append(f.result())
            except httpx.HTTPError:
                errors += 1
    wall = time.perf_counter() - start
    ttfa = [r[0] for r in results]
    audio_s = sum(r[2] for r in results) / 2 / 24000  # 16-bit mono PCM at 24 kHz
    return {
        "ttfa_p50_s": round(statistics.median(ttfa), 3),
        "ttfa_p95_s": round(percentile(ttfa, 0.95), 3),
        "ttfa_max_s": round(max(ttfa), 3),
        "total_p50_s": round(statistics.median(r[1] for r in results), 3),
        "audio_s": round(audio_s, 2),
        "throughput": round(audio_s / wall, 3),
        "errors": errors,
    }


def serve_in_thread(app):
    """A uvicorn server of ``app`` on a free port, started: (server, thread, url)."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


def run_staggered(args: argparse.Namespace) -> None:
    from chattts.chat import Chat
    from chattts.cli.args import ServerOptions
    from chattts.server import create_app

    chat = Chat()
    extra = {"quantize": args.quantize} if args.quantize else {}
    chat.load(source="custom", custom_path=args.model_dir, verify=False, **extra)
    clients, gap = int(args.staggered[0]), float(args.staggered[1])
    figures = {}
    for scheduling in ("static", "continuous"):
        settings = ServerOptions(max_batch=args.max_batch, scheduling=scheduling)
        server, thread, url = serve_in_thread(create_app(chat, settings=settings))
        try:
            streamed(url, 1, 2, 0.0)  # warm the worker and the connection
            figures[scheduling] = staggered(url, clients, gap, args.steps)
        finally:
            server.should_exit = True
            thread.join(30)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        emit(
            {
                "kind": "staggered",
                "scheduling": scheduling,
                "clients": clients,
                "gap_s": gap,
                **figures[scheduling],
                "peak_rss_mb": round(peak),
            }
        )
    static, cont = figures["static"], figures["continuous"]
    emit(
        {
            "kind": "staggered_ratio",
            "ttfa_p95": round(cont["ttfa_p95_s"] / static["ttfa_p95_s"], 3),
            "throughput": round(cont["throughput"] / static["throughput"], 3),
        }
    )


def emit(obj: dict[str, Any]) -> None:
    obj["load1"] = round(os.getloadavg()[0], 2)
    print(json.dumps(obj), flush=True)


def measure(setup: str, url: str, args: argparse.Namespace) -> None:
    emit({"kind": "overhead", "setup": setup, **overhead(url, args.repeats)})
    for clients in args.clients:
        n = max(args.requests, clients)
        result = load(url, clients, n, args.steps)
        emit({"kind": "load", "setup": setup, "clients": clients, "requests": n, **result})


def plain(args: argparse.Namespace) -> None:
    from chattts.options import LoadOptions
    from chattts.server import create_app

    options = LoadOptions("custom", args.model_dir, verify=False, device="cpu")
    server, thread, url = serve_in_thread(create_app(options=options, max_batch=args.max_batch))
    try:
        measure("plain", url, args)
    finally:
        server.should_exit = True
        thread.join(30)


def on_ray(args: argparse.Namespace) -> None:
    import ray
    from ray import serve

    from chattts.server.ray import APP_NAME, ReplicaOptions, build_app

    ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        options = ReplicaOptions.from_model(args.model_dir, max_batch=args.max_batch, threads=1)
        for replicas in args.replicas:
            app = build_app(options, replicas=replicas, replica_cpus=1)
            serve.run(app, name=APP_NAME, route_prefix="/")
            measure(f"ray{replicas}", f"http://127.0.0.1:{port}", args)
            serve.delete(APP_NAME)
    finally:
        serve.shutdown()
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model-dir", default=TINY, help="model folder (default: the tiny model)")
    ap.add_argument("--steps", type=int, default=32, help="code steps per request (32)")
    ap.add_argument("--requests", type=int, default=32, help="requests per load point (32)")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=30, help="sequential requests (30)")
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--setups", nargs="+", default=["plain", "ray"], choices=["plain", "ray"])
    ap.add_argument("--staggered", nargs=2, metavar=("N", "G"), help="N clients G s apart")
    ap.add_argument("--quantize", choices=["int8"], help="the staggered mode's engine")
    args = ap.parse_args()
    if args.staggered:
        run_staggered(args)
        return
    if "plain" in args.setups:
        import torch

        torch.set_num_threads(1)  # one core, as each Ray replica gets
        plain(args)
    if "ray" in args.setups:
        on_ray(args)


if __name__ == "__main__":
    main()
