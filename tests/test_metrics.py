"""``GET /metrics`` and the replica header on the plain server, in process (no socket)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from chattts.server import create_app
from chattts.server.metrics import REPLICA_HEADER, Histogram, Metrics

LINE = re.compile(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$")


def parse(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text -> {(name, labels): value}; every non-comment line must parse."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = frozenset(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    found = [v for (n, ls), v in samples.items() if n == name and want <= ls]
    assert len(found) == 1, f"{name} {labels}: {len(found)} series"
    return found[0]


@pytest.fixture(scope="module")
def client(chat):
    app = create_app(chat, max_batch=4)
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def speech(client, seed: int, **extra):
    body = {"model": "tts-1", "input": "hello", "voice": "alloy", "response_format": "pcm"}
    return client.post("/v1/audio/speech", json={**body, "seed": seed, "max_new_token": 8, **extra})


def test_metrics_count_answers_batches_and_queue(client):
    replica = client.get("/health").headers[REPLICA_HEADER]
    assert replica
    ok = [speech(client, seed) for seed in (1, 2)]
    assert [r.status_code for r in ok] == [200, 200]
    assert all(r.headers[REPLICA_HEADER] == replica for r in ok)
    bad = speech(client, 3, speed=99)
    assert bad.status_code == 400 and bad.headers[REPLICA_HEADER] == replica
    assert client.get("/nowhere").status_code == 404

    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = parse(r.text)
    path = "/v1/audio/speech"
    total = "chattts_server_http_requests_total"

    assert value(after, total, endpoint=path, status="200", replica=replica) == 2
    assert value(after, total, endpoint=path, status="400") == 1
    assert value(after, total, endpoint="other", status="404") == 1
    # the latency histogram: both speech answers counted, cumulative buckets, a real sum
    hist = "chattts_server_http_request_duration_seconds"
    count = value(after, f"{hist}_count", endpoint=path)
    assert count == 3  # 200, 200, 400
    assert value(after, f"{hist}_bucket", endpoint=path, le="+Inf") == count
    assert value(after, f"{hist}_sum", endpoint=path) > 0
    buckets = sorted(
        (float(dict(ls)["le"]), v)
        for (n, ls), v in after.items()
        if n == f"{hist}_bucket" and ("endpoint", path) in ls
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    # the batch each of the two synthesised requests ran in (the 400 never reached the worker)
    assert value(after, "chattts_server_batch_size_count") == 2
    assert value(after, "chattts_server_batch_size_sum") == 2  # one at a time: batches of 1
    assert value(after, "chattts_server_queued", replica=replica) == 0
    assert value(after, "chattts_server_completed") >= 2
    assert value(after, "chattts_server_batches") >= 2
    assert "# TYPE chattts_server_queued gauge" in r.text
    assert "# TYPE chattts_server_http_requests_total counter" in r.text


def test_histogram_buckets_are_cumulative():
    h = Histogram((1, 5))
    for v in (0.5, 2, 7):
        h.observe((("a", "x"),), v)
    lines = h.lines("m", ',r="1"')
    assert lines == [
        'm_bucket{a="x",r="1",le="1"} 1',
        'm_bucket{a="x",r="1",le="5"} 2',
        'm_bucket{a="x",r="1",le="+Inf"} 3',
        'm_sum{a="x",r="1"} 9.5',
        'm_count{a="x",r="1"} 3',
    ]


def test_labels_are_escaped():
    class Idle:
        def snapshot(self):
            return {"queued": 3, "name": "not a number"}

    m = Metrics(Idle(), replica='a"b\\c')
    m.observe("/x", 200, 0.1)
    text = m.render()
    assert 'replica="a\\"b\\\\c"' in text
    assert "chattts_server_name" not in text
    samples = parse(text)
    assert value(samples, "chattts_server_queued") == 3
    assert m.requests("/x", 200) == 1 and m.requests("/x", 500) == 0
