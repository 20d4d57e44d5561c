"""schemathesis against the server's own OpenAPI document, in-process (ASGI), tiny model:
every generated request gets a documented answer, never a 5xx; then the hand-made hostile
requests of the reliability probes, each a documented 4xx in OpenAI's error shape."""

from __future__ import annotations

import json
import time

import pytest

pytest.importorskip("schemathesis", reason="pip install 'chattts[test]'")

import schemathesis  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error, positive_data_acceptance  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

import chattts  # noqa: E402
from chattts.errors import ChatTTSError  # noqa: E402
from chattts.server import create_app  # noqa: E402
from chattts.text import Normalizer  # noqa: E402

LIMIT = 12  # the server's max_new_token: short audio keeps hundreds of cases fast
CASES = {"speech": 300, "other": 20}  # examples per operation and mode (6 operations)
COUNTS: dict[str, int] = {}


@pytest.fixture(scope="module")
def app(tiny_root, tmp_path_factory):
    c = chattts.Chat()
    c.normalizer = Normalizer(builtin_normalizers=False)  # the grammars are not under test
    c.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
    application = create_app(
        c,
        max_new_token=LIMIT,
        batch_wait_ms=0,
        voices={"narrator": 7},
        allowed_hosts=["testserver"],
        data_dir=str(tmp_path_factory.mktemp("jobs")),  # the generated jobs run there
        max_jobs=10_000,
    )
    with TestClient(application):  # runs the lifespan: the worker thread starts and stops
        yield application


@pytest.fixture(scope="module")
def operations(app) -> dict:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    ops = {}
    for result in schema.get_all_operations():
        op = result.ok()
        ops[f"{op.method.upper()} {op.path}"] = op
    return ops


def _reason(content: bytes) -> object:
    """An error answer's machine-readable code: OpenAI's ``error.code``, or the reason of
    the ``ErrorInfo`` detail of Google's shape (``POST /v1/text:synthesize``)."""
    try:
        error = json.loads(content)["error"]
        if isinstance(error.get("code"), int):
            return error["details"][0]["reason"].lower()
        return error["code"]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None


def accepted_unless_nothing_to_speak(ctx, response, case):
    """schemathesis's check that schema-valid requests are accepted, but for the 400s no
    schema can express: an input with nothing to speak once normalised (``"510892"`` with no
    normaliser to read digits, ``"😀"``; docs/text.md, "Nothing to speak"), Google's
    ``input.ssml`` that is not an SSML document, and a job's uploaded document that cannot be
    read (random bytes: not UTF-8, not an EPUB)."""
    reasons = ("empty_input", "invalid_ssml", "invalid_document")
    if response.status_code == 400 and _reason(response.content) in reasons:
        return None
    return positive_data_acceptance(ctx, response, case)


def _run(op, mode: GenerationMode, examples: int) -> None:
    """``examples`` generated requests of one operation, each validated by schemathesis's
    default checks plus "no 5xx"; counts by status go to COUNTS."""

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def check(case) -> None:
        response = case.call_and_validate(
            additional_checks=[not_a_server_error, accepted_unless_nothing_to_speak],
            excluded_checks=[positive_data_acceptance],
        )
        key = f"{op.method.upper()} {op.path} {mode.value} {response.status_code}"
        COUNTS[key] = COUNTS.get(key, 0) + 1
        assert response.status_code < 500

    check()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_generated_requests(operations, mode):
    started = time.perf_counter()
    assert "POST /v1/audio/speech" in operations and len(operations) >= 6
    for name, op in sorted(operations.items()):
        if mode is GenerationMode.NEGATIVE and not name.startswith("POST"):
            continue  # the GETs take nothing (or a free string) that could be made invalid
        _run(op, mode, CASES["speech" if name.endswith("/speech") else "other"])
    total = sum(n for k, n in COUNTS.items() if f" {mode.value} " in k)
    print(
        f"\nschemathesis {mode.value}: {total} generated requests, 0 failures, "
        f"{time.perf_counter() - started:.1f} s: {json.dumps(COUNTS, indent=1)}"
    )
    assert total >= 300
    if mode is GenerationMode.POSITIVE:
        accepted = sum(n for k, n in COUNTS.items() if k.startswith("POST") and k.endswith(" 200"))
        assert accepted >= 100, "too few speech requests accepted: the schema is too loose"


# ---- hand-made hostile requests ------------------------------------------------------------

GOOD = {"model": "tts-1", "input": "hello", "voice": "alloy", "max_new_token": 4}


def _body(**fields) -> bytes:
    return json.dumps({**GOOD, **fields}).encode()


HOSTILE = [
    ("temperature 0", _body(temperature=0), 400, "temperature"),
    ("temperature 5e-324", _body(temperature=5e-324), 400, "temperature"),
    ("temperature NaN", _body(temperature=0.3).replace(b"0.3", b"NaN"), 400, None),
    ("temperature 1e999", _body(temperature=0.3).replace(b"0.3", b"1e999"), 400, "temperature"),
    (
        "seed of 5,000 digits",
        _body(seed=1).replace(b'"seed": 1', b'"seed": ' + b"9" * 5000),
        400,
        None,
    ),
    ("seed 2**63", _body(seed=2**63), 400, "seed"),
    ("seed -1", _body(seed=-1), 400, "seed"),
    ("top_p 1.5", _body(top_p=1.5), 400, "top_p"),
    ("top_k 0", _body(top_k=0), 400, "top_k"),
    ("max_new_token over the limit", _body(max_new_token=LIMIT + 1), 400, "max_new_token"),
    ("max_new_token 10**30", _body(max_new_token=10**30), 400, "max_new_token"),
    ("100,000 deep", b"[" * 100_000 + b"]" * 100_000, 400, None),
    ("50,000 deep object", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, 400, None),
    ("speed 0", _body(speed=0), 400, "speed"),
    ("lone surrogate", b'{"model":"tts-1","input":"\\ud800","voice":"alloy"}', 400, None),
    ("bad utf-8", b'{"model":"tts-1","input":"\xff","voice":"alloy"}', 400, None),
    ("garbage speaker string", _body(voice="x" * 40), 400, "voice"),
    ("a list", b"[1, 2]", 400, None),
]


@pytest.mark.parametrize("name,body,status,param", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_requests_are_documented_4xx(app, name, body, status, param):
    with TestClient(app) as client:
        r = client.post(
            "/v1/audio/speech", content=body, headers={"content-type": "application/json"}
        )
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err


def test_json_only_and_host_check(app):
    with TestClient(app) as client:
        r = client.post("/v1/audio/speech", content=_body(), headers={"content-type": "text/plain"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
        r = client.post("/v1/audio/speech", data={"model": "tts-1"})  # a form post
        assert r.status_code == 415
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example"):
            r = client.get("/v1/models", headers={"host": host})
            assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
        r = client.get("/v1/models", headers={"x-big": "a" * (40 << 10)})
        assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
        for host in ("localhost:8000", "127.0.0.1", "[::1]:9", "testserver"):
            assert client.get("/v1/models", headers={"host": host}).status_code == 200


def test_decompression_bomb_voice_is_refused_fast(app):
    from chattts.voices.speaker import _b14_encode, _compress

    bomb = _b14_encode(_compress(b"\0" * (256 << 20)))  # 256 MB of zeros in a few dozen KB
    with TestClient(app) as client:
        t = time.perf_counter()
        r = client.post(
            "/v1/audio/speech",
            content=_body(voice=bomb),
            headers={"content-type": "application/json"},
        )
        elapsed = time.perf_counter() - t
    assert r.status_code == 400 and r.json()["error"]["param"] == "voice"
    assert elapsed < 1.0, f"{elapsed:.2f} s"


def test_openapi_documents_body_and_audio(app):
    with TestClient(app) as client:
        doc = client.get("/openapi.json").json()
    op = doc["paths"]["/v1/audio/speech"]["post"]
    body = op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/SpeechBody"}
    props = doc["components"]["schemas"]["SpeechBody"]["properties"]
    assert {"model", "input", "voice", "response_format", "seed", "temperature"} <= set(props)
    content = op["responses"]["200"]["content"]
    assert {"audio/mpeg", "audio/wav", "audio/pcm", "text/event-stream"} <= set(content)
    assert "Retry-After" in op["responses"]["429"]["headers"]


def test_queue_full_is_429_with_retry_after(tiny_root, monkeypatch):
    from chattts.pipeline.scheduler import SpeechScheduler

    c = chattts.Chat()
    c.normalizer = Normalizer(builtin_normalizers=False)
    c.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
    application = create_app(c, max_queue=1, allowed_hosts=["testserver"])
    # one segment already waits for a slot: the queue is full
    monkeypatch.setattr(SpeechScheduler, "queued", property(lambda self: 1))
    with TestClient(application) as client:
        r = client.post("/v1/audio/speech", json=GOOD)
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert r.json()["error"]["type"] == "rate_limit_error"


@pytest.mark.parametrize(
    "voices,words",
    [
        ({"big": 10**30}, "about 30 digits"),
        ({"neg": -1}, "[0, 9223372036854775807]"),
        ({"yes": True}, "not True"),
        ({"junk": "garbage speaker string that is long enough"}, "invalid speaker string"),
    ],
)
def test_bad_voices_are_refused_at_start_up(chat, tmp_path, voices, words):
    from chattts.errors import VoicesError

    with pytest.raises(VoicesError, match=next(iter(voices))) as e:
        create_app(chat, voices=voices)
    assert words in str(e.value)
    path = tmp_path / "voices.json"
    path.write_text(json.dumps(voices))
    with pytest.raises(ChatTTSError, match=next(iter(voices))):  # the file loader's check
        create_app(chat, voices=str(path))


def test_one_bad_request_never_fails_its_batch(app):
    """A bad value is refused before queueing, so the good requests of the same moment (one
    batch: the worker waits for them) all succeed."""
    import concurrent.futures

    bodies = [dict(GOOD, seed=i) for i in range(6)] + [dict(GOOD, temperature=1e-300)]
    with TestClient(app) as client:
        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            codes = list(pool.map(lambda b: client.post("/v1/audio/speech", json=b), bodies))
    assert [r.status_code for r in codes] == [200] * 6 + [400]
    assert codes[-1].json()["error"]["param"] == "temperature"
