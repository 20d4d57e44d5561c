"""The FastAPI application of the OpenAI-compatible speech server (see docs/server.md)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, Optional

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from .. import audio
from ..errors import EmptyInputError, InputTypeError, ParameterError
from ..params import InferCodeParams, RefineTextParams
from ..validation import MAX_NEW_TOKEN, check_code_params, check_refine_params
from . import metrics as _metrics
from .batcher import DONE, Batcher, JobFailed, QueueFullError, SpeechJob
from .browser import install_cors, install_docs
from .schemas import (
    MODEL_NAMES,
    RequestError,
    SpeechRequest,
    error_response,
    parse_request,
    speech_openapi,
    speed_to_prompt,
)
from .voices import Voices

logger = logging.getLogger("chattts.server")

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1 << 20
#: Largest total size of the request headers, in bytes (names and values).
MAX_HEADER_BYTES = 32 << 10
#: Hosts always accepted in the Host header when the server has no API key.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Extra hosts accepted in the Host header (comma-separated; ``*``: any), for a server
#: reached under another name without an API key.
ALLOWED_HOSTS_ENV = "CHATTTS_ALLOWED_HOSTS"
#: Seconds a client told 429 is asked to wait.
RETRY_AFTER_S = 1
_WILDCARD_BINDS = ("0.0.0.0", "::", "[::]", "")
_CREATED = 1_700_000_000  # a fixed "created" time for /v1/models
_CLIENT_CLOSED = 499  # nginx's code for "the client closed the request": nobody reads it
#: The OpenAPI document and its page: behind the API key when there is one.
DOC_PATHS = ("/openapi.json", "/docs")


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


class SpeechService:
    """What the routes need: the Chat, its worker, the voices and the limits."""

    def __init__(
        self,
        chat: Any,
        voices: Voices,
        batcher: Batcher,
        api_key: Optional[str] = None,
        max_new_token_limit: int = 2048,
        allowed_hosts: Optional[list[str]] = None,
    ) -> None:
        self.chat = chat
        self.voices = voices
        self.batcher = batcher
        self.api_key = api_key
        if max_new_token_limit > MAX_NEW_TOKEN:
            logger.warning(
                "max_new_token %d is over the cap: %d", max_new_token_limit, MAX_NEW_TOKEN
            )
        self.max_new_token_limit = min(max_new_token_limit, MAX_NEW_TOKEN)
        self.rate = int(chat.config.sample_rate)
        self.per_step = int(chat.config.samples_per_step)
        extra = [h for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
        hosts = [h.strip().lower() for h in [*LOCAL_HOSTS, *(allowed_hosts or []), *extra]]
        self.allowed_hosts = {h for h in hosts if h not in _WILDCARD_BINDS}

    def job(self, req: SpeechRequest, voice: Optional[dict[str, Any]] = None) -> SpeechJob:
        """A worker job for a validated request (parameters mapped), on the event loop.

        ``voice``: the request's voice already resolved (:meth:`Voices.fields`), which may
        draw speakers and mix them (cached, at most ``MAX_MIX_TERMS`` terms): the route does it
        in a thread, never on the event loop.
        """
        voice = self.voices.fields(req.voice) if voice is None else voice
        if req.max_new_token is not None and req.max_new_token > self.max_new_token_limit:
            raise RequestError(
                f"'max_new_token' must be at most {self.max_new_token_limit}",
                "max_new_token",
                "invalid_value",
            )
        code: dict[str, Any] = {
            **voice,
            "prompt": speed_to_prompt(req.speed),
            "manual_seed": req.seed,
            "show_tqdm": False,
            "max_new_token": req.max_new_token or self.max_new_token_limit,
        }
        for field, name in (("temperature", "temperature"), ("top_p", "top_P"), ("top_k", "top_K")):
            if getattr(req, field) is not None:
                code[name] = getattr(req, field)
        refine = RefineTextParams(manual_seed=req.seed, show_tqdm=False) if req.refine else None
        params = InferCodeParams(**code)
        try:  # the library's own checks, before queueing: a bad job never fails its batch
            check_code_params(params, int(self.chat.config.gpt.num_vq))
            if refine is not None:
                check_refine_params(refine)
        except (ParameterError, InputTypeError) as e:
            field = str(e).split(" ", 1)[0].rpartition(".")[2]
            field = {"top_P": "top_p", "top_K": "top_k", "manual_seed": "seed"}.get(field, field)
            raise RequestError(f"invalid request: {e}", field, "invalid_value") from e
        return SpeechJob(text=req.input, params=params, refine=refine)

    def check_host(self, request: Request) -> None:
        """Without an API key, only local hosts (and the configured ones) may be named in
        the Host header, so that a web page cannot reach the server by DNS rebinding."""
        if self.api_key or "*" in self.allowed_hosts:
            return
        host = request.headers.get("host", "").strip().lower()
        name = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host
        name = name.split(":", 1)[0] if not name.startswith("[") else name
        if host and name not in self.allowed_hosts:
            raise RequestError(
                f"the Host header {host!r} is not allowed: use localhost, or set an API key "
                f"or {ALLOWED_HOSTS_ENV}",
                "host",
                "host_not_allowed",
                status=403,
            )

    def needs_key(self, path: str) -> bool:
        """Whether ``path`` is behind the API key: ``/v1/*``, and the OpenAPI document and its
        pages (they list the voice names)."""
        return path.startswith("/v1/") or path in DOC_PATHS or path.startswith("/docs/")

    def check_auth(self, request: Request) -> None:
        if not self.api_key:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), self.api_key.encode()
        ):
            raise RequestError(
                "invalid or missing API key: send 'Authorization: Bearer KEY'",
                code="invalid_api_key",
                status=401,
            )


class _AudioStream(StreamingResponse):
    """A streamed body that cancels its job the moment the client disconnects.

    The disconnect is watched for while no chunk is due too (whatever ASGI version the server
    speaks), so the worker drops the request within one generation step.
    """

    def __init__(self, content: AsyncIterator[bytes], job: SpeechJob, **kw: Any) -> None:
        super().__init__(content, **kw)
        self.job = job

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                if not self.job.done.is_set():
                    logger.info("client went away: request cancelled")
                self.job.cancel()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            try:
                await self.stream_response(send)
            except OSError:  # the connection broke while sending
                self.job.cancel()
            finally:
                tg.cancel_scope.cancel()


class _Encoded:
    """The encoded audio of a job as its chunks arrive; ``ok`` once all of it was sent."""

    def __init__(self, job: SpeechJob, first: Any, fmt: str, rate: int) -> None:
        self.job, self.first, self.fmt, self.rate = job, first, fmt, rate
        self.ok = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        job, item = self.job, self.first
        enc = audio.StreamEncoder(self.fmt, self.rate)
        try:
            head = enc.write(np.zeros(0, dtype=np.float32))  # WAV header, container header
            if head:
                yield head
            while item is not DONE:
                if isinstance(item, JobFailed):
                    logger.error("request ended early: %s", item)
                    return
                data = await run_in_threadpool(enc.write, item)
                if data:
                    yield data
                item = await job.get()
            tail = await run_in_threadpool(enc.close)
            if tail:
                yield tail
            self.ok = not job.cancelled
        finally:
            job.cancel()  # no-op when the worker has finished it


def _event(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


async def _sse(encoded: _Encoded, req: SpeechRequest, per_step: int) -> AsyncIterator[bytes]:
    """``speech.audio.delta`` events (base64 of the encoded audio), then ``speech.audio.done``."""
    async for data in encoded:
        yield _event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    if not encoded.ok:
        err = RequestError("synthesis failed", type="server_error", status=500).body()
        yield _event({"type": "error", **err})
        return
    steps = -(-encoded.job.samples // per_step)
    usage = {
        "input_tokens": len(req.input),
        "output_tokens": steps,
        "total_tokens": len(req.input) + steps,
    }
    yield _event({"type": "speech.audio.done", "usage": usage})


async def _bytes(encoded: _Encoded) -> AsyncIterator[bytes]:
    async for data in encoded:
        yield data


async def _read_body(request: Request) -> bytes:
    too_large = RequestError(
        f"the request body is larger than {MAX_BODY_BYTES} bytes", status=413, code="too_large"
    )
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > MAX_BODY_BYTES:
        raise too_large
    body = bytearray()
    try:
        async for part in request.stream():
            body += part
            if len(body) > MAX_BODY_BYTES:
                raise too_large
    except ClientDisconnect:  # gone, or closed for sending too slowly (protocol.py)
        raise RequestError("the client closed the connection", status=_CLIENT_CLOSED) from None
    return bytes(body)


async def _whole_flac(request: Request, job: SpeechJob, first: Any, rate: int) -> Response:
    """A FLAC file sent once complete, so that its header holds the duration (total samples)
    and the MD5 of the audio, which a stream cannot go back and write."""
    parts, item = [], first
    while item is not DONE:
        if item is None:  # the client left
            return Response(status_code=_CLIENT_CLOSED)
        if isinstance(item, JobFailed):
            raise RequestError(str(item), type="server_error", status=500)
        parts.append(item)
        item = await _first_item(request, job)
    wav = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    data = await run_in_threadpool(audio.encode_audio, wav, "flac", rate)
    return Response(data, media_type=audio.MEDIA_TYPES["flac"])


async def _first_item(request: Request, job: SpeechJob) -> Any:
    """The job's next item (chunk, DONE or failure); None when the client left before it."""
    getter = asyncio.ensure_future(job.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=0.05)
            if done:
                return getter.result()
            if await request.is_disconnected():
                logger.info("client left before its audio started: request cancelled")
                job.cancel()
                return None
    finally:
        getter.cancel()


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(RequestError)
    async def request_error(_: Request, e: RequestError) -> JSONResponse:
        return _error(e)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        err = RequestError(str(e.detail), code=code, status=e.status_code)
        return JSONResponse(err.body(), status_code=e.status_code, headers=e.headers)

    @app.exception_handler(Exception)
    async def server_error(_: Request, e: Exception) -> JSONResponse:
        return _internal_error(e)


def _internal_error(e: Exception) -> JSONResponse:
    logger.error("internal error: %s", e, exc_info=e)
    err = RequestError(f"internal error ({type(e).__name__}: {e})", type="server_error", status=500)
    return _error(err)


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "chattts"}


def build_app(service: SpeechService, cors_origins: Sequence[str] = ()) -> FastAPI:
    """The routes over a :class:`SpeechService` (its worker runs while the app does);
    ``cors_origins``: the web origins whose pages may call it (none: CORS off)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(service.batcher.stop)

    app = _SpeechApp(
        title="chattts speech server", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.service = service
    _install_errors(app)
    _install_guard(app, service)
    _install_routes(app, service)
    install_docs(app)  # /docs and /redoc from the installation, no CDN
    _metrics.install(app, service)  # /metrics, and the replica header on every answer
    install_cors(app, cors_origins)  # last: the outermost layer, around errors too
    return app


def _install_guard(app: FastAPI, service: SpeechService) -> None:
    """The middleware every request passes: header size, Host check, API key."""

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        size = sum(len(k) + len(v) for k, v in request.headers.raw)
        if size > MAX_HEADER_BYTES:
            msg = f"the request headers are larger than {MAX_HEADER_BYTES} bytes"
            return _error(RequestError(msg, code="headers_too_large", status=431))
        try:
            service.check_host(request)
            if service.needs_key(request.url.path):
                service.check_auth(request)
        except RequestError as e:
            return _error(e)
        try:
            return await call_next(request)
        except Exception as e:  # answered here, so the kept-alive connection stays open
            return _internal_error(e)


def _install_routes(app: FastAPI, service: SpeechService) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": MODEL_NAMES[0], "worker": service.batcher.snapshot()}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [_model_card(n) for n in MODEL_NAMES]}

    @app.get("/v1/models/{name}", responses={404: error_response("no such model")})
    async def model(name: str) -> dict[str, Any]:
        if name not in MODEL_NAMES:
            msg = f"the model {name!r} does not exist"
            raise RequestError(msg, "model", "model_not_found", status=404)
        return _model_card(name)

    @app.get("/v1/audio/voices")
    async def voices() -> dict[str, Any]:
        return {"object": "list", "data": [v.describe() for v in service.voices.list()]}

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        body = await _read_body(request)  # 413 first: a too-large body is not read whole
        _check_json(request)
        req = (
            parse_request(body)
            if len(body) < 65536
            else await run_in_threadpool(parse_request, body)
        )
        voice = await run_in_threadpool(service.voices.fields, req.voice)  # draws, mixes
        job = service.job(req, voice)
        _metrics.note_job(request, job)
        try:
            service.batcher.submit(job)
        except QueueFullError as e:
            err = RequestError(
                f"the server is busy ({e}): retry after {RETRY_AFTER_S} s",
                code="rate_limit_exceeded",
                status=429,
                type="rate_limit_error",
            )
            return JSONResponse(err.body(), 429, headers={"Retry-After": str(RETRY_AFTER_S)})
        first = await _first_item(request, job)
        if first is None:
            return Response(status_code=_CLIENT_CLOSED)
        if isinstance(first, JobFailed):
            if isinstance(first.cause, EmptyInputError):  # the same rule as the library's
                raise RequestError(f"'input': {first.cause}", "input", "empty_input")
            raise RequestError(str(first), type="server_error", status=500)
        if req.response_format == "flac" and req.stream_format == "audio":
            return await _whole_flac(request, job, first, service.rate)
        encoded = _Encoded(job, first, req.response_format, service.rate)
        if req.stream_format == "sse":
            headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            content = _sse(encoded, req, service.per_step)
            return _AudioStream(content, job, media_type="text/event-stream", headers=headers)
        media = audio.MEDIA_TYPES[req.response_format]
        return _AudioStream(_bytes(encoded), job, media_type=media)


def _check_json(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise RequestError(
            f"send the body as application/json, not {kind or 'no Content-Type'!r}",
            code="unsupported_media_type",
            status=415,
        )


class _SpeechApp(FastAPI):
    """FastAPI, with an OpenAPI document that carries the speech route's real body and
    responses (built once, on first request of ``/openapi.json``)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            _complete_openapi(super().openapi(), self.state.service)
        return self.openapi_schema


def _complete_openapi(doc: dict[str, Any], service: SpeechService) -> None:
    """Add the speech route's body, audio responses and the shared error responses."""
    names = [v.name for v in service.voices.list()]
    operation, components = speech_openapi(audio.MEDIA_TYPES, names, service.max_new_token_limit)
    doc["paths"]["/v1/audio/speech"]["post"].update(operation)
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    for path, item in doc["paths"].items():
        for op in item.values():
            extra = {
                "403": error_response("the Host header is not allowed"),
                "500": error_response("internal error (the message names the cause)"),
            }
            if path.startswith("/v1/") and service.api_key:
                extra["401"] = error_response("missing or wrong API key")
            for status, resp in extra.items():
                op["responses"].setdefault(status, resp)


__all__ = ["SpeechService", "build_app"]
