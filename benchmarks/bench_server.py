"""Server benchmark: the plain server against Ray Serve replicas, and the proxy's overhead.

Usage (from the repository root; needs ``pip install 'chattts[ray]'``)::

    python benchmarks/bench_server.py                          # the tiny test model
    python benchmarks/bench_server.py --model-dir ./ChatTTS-model --steps 64 --requests 64

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

Timings depend on the load of the machine: each line carries the 1-minute load average.
Nothing here is asserted by the test suite.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
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
    import uvicorn

    from chattts.options import LoadOptions
    from chattts.server import create_app

    options = LoadOptions("custom", args.model_dir, verify=False, device="cpu")
    app = create_app(options=options, max_batch=args.max_batch)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        measure("plain", f"http://127.0.0.1:{port}", args)
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
    args = ap.parse_args()
    if "plain" in args.setups:
        import torch

        torch.set_num_threads(1)  # one core, as each Ray replica gets
        plain(args)
    if "ray" in args.setups:
        on_ray(args)


if __name__ == "__main__":
    main()
