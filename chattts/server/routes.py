"""The speech routes: ``POST /v1/audio/speech`` (OpenAI's) and
``POST /v1/audio/captioned_speech`` (audio with its captions), and how their answers stream.

A request is parsed (:func:`~.schemas.parse_request`), planned in a thread (voices, text
normalisation: :meth:`~.service.SpeechService.plan`), queued on the worker, and answered once its
first audio is there: as an audio stream, server-sent events (``speech.audio.delta``, with
``speech.caption`` events for captions), a FLAC file sent whole (its header holds the
duration), or, for captioned speech without SSE, one JSON object with the encoded audio and
the captions (docs/server.md).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Optional

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import audio
from ..audio.speech import Speech
from ..errors import QueueFullError, RequestError
from ..pipeline.assembler import SpeechChunk, collect
from ..pipeline.speech import PlanItem, SpeechRequest
from . import metrics as _metrics
from .batcher import DONE, JobFailed, SpeechJob
from .schemas import SpeechBody, parse_request

if TYPE_CHECKING:
    from .service import SpeechService

logger = logging.getLogger("chattts.server")

#: Largest request body accepted, in bytes.
MAX_BODY_BYTES = 1 << 20
#: Seconds a client told 429 is asked to wait.
RETRY_AFTER_S = 1
CLIENT_CLOSED = 499  # nginx's code for "the client closed the request": nobody reads it


class AudioStream(StreamingResponse):
    """A streamed body that cancels its job the moment the client disconnects.

    The disconnect is watched for while no chunk is due too (whatever ASGI version the server
    speaks), so the worker drops the request within one generation step.
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        job: SpeechJob,
        **kw: Any,  # Any: StreamingResponse's keywords (media_type, headers...)
    ) -> None:
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


class Encoded:
    """A job's chunks as they arrive, encoded; ``ok`` once all of it was sent. ``chunks``
    keeps every :class:`SpeechChunk` (their segments make the captions)."""

    def __init__(self, job: SpeechJob, first: SpeechChunk, fmt: str, rate: int) -> None:
        self.job, self.first, self.fmt, self.rate = job, first, fmt, rate
        self.ok = False
        self.chunks: list[SpeechChunk] = []

    async def items(self) -> AsyncIterator[tuple[bytes, SpeechChunk]]:
        """(encoded bytes, the chunk they came from), the container's head first."""
        job, item = self.job, self.first
        enc = audio.StreamEncoder(self.fmt, self.rate)
        empty = SpeechChunk(np.zeros(0, dtype=np.float32))
        try:
            head = enc.write(empty.audio)  # WAV header, container header
            if head:
                yield head, empty
            while item is not DONE:
                if isinstance(item, JobFailed):
                    logger.error("request ended early: %s", item)
                    return
                self.chunks.append(item)
                data = await run_in_threadpool(enc.write, item.audio) if item.audio.size else b""
                yield data, item
                item = await job.get()
            tail = await run_in_threadpool(enc.close)
            if tail:
                yield tail, empty
            self.ok = not job.cancelled
        finally:
            job.cancel()  # no-op when the worker has finished it


def event(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def _caption_events(chunk: SpeechChunk) -> list[bytes]:
    out = [
        event({"type": "speech.caption", "start": s.start, "end": s.end, "text": s.text})
        for s in chunk.segments
        if s.text
    ]
    out += [event({"type": "speech.mark", "name": m.name, "time": m.time}) for m in chunk.marks]
    return out


async def _sse(
    encoded: Encoded, body: SpeechBody, per_step: int, captions: bool
) -> AsyncIterator[bytes]:
    """``speech.audio.delta`` events (base64 of the encoded audio), with ``speech.caption``
    and ``speech.mark`` events as segments end when ``captions``, then ``speech.audio.done``."""
    async for data, chunk in encoded.items():
        if data:
            yield event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
        for e in _caption_events(chunk) if captions else ():
            yield e
    if not encoded.ok:
        err = RequestError("synthesis failed", type="server_error", status=500).body()
        yield event({"type": "error", **err})
        return
    steps = -(-encoded.job.samples // per_step)
    n = len(body.input)
    usage = {"input_tokens": n, "output_tokens": steps, "total_tokens": n + steps}
    yield event({"type": "speech.audio.done", "usage": usage})


async def _bytes(encoded: Encoded) -> AsyncIterator[bytes]:
    async for data, _ in encoded.items():
        if data:
            yield data


async def read_body(request: Request) -> bytes:
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
        raise RequestError("the client closed the connection", status=CLIENT_CLOSED) from None
    return bytes(body)


def check_json(request: Request) -> None:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise RequestError(
            f"send the body as application/json, not {kind or 'no Content-Type'!r}",
            code="unsupported_media_type",
            status=415,
        )


async def next_item(request: Request, job: SpeechJob) -> object:
    """The job's next item: a :class:`SpeechChunk`, :data:`DONE` or a :class:`JobFailed`;
    None when the client left before it."""
    getter = asyncio.ensure_future(job.get())
    try:
        while True:
            done, _ = await asyncio.wait({getter}, timeout=0.05)
            if done:
                return getter.result()
            if await request.is_disconnected():
                logger.info("client left before its audio came: request cancelled")
                job.cancel()
                return None
    finally:
        getter.cancel()


async def whole_speech(
    request: Request, job: SpeechJob, first: object, rate: int
) -> Optional[Speech]:
    """Every chunk of the job as one :class:`Speech` (None when the client left)."""
    chunks, item = [], first
    while item is not DONE:
        if item is None:
            return None
        if isinstance(item, JobFailed):
            raise RequestError(str(item), type="server_error", status=500)
        chunks.append(item)
        item = await next_item(request, job)
    return collect(iter(chunks), rate)


async def start_job(
    service: SpeechService, request: Request, captions: bool
) -> tuple[SpeechBody, SpeechJob, Any]:
    """Parse, plan (in a thread), queue; returns the body, the job and its first item (None:
    the client left). Raises RequestError (429 when the queue is full)."""
    raw = await read_body(request)  # 413 first: a too-large body is not read whole
    check_json(request)
    body = parse_request(raw) if len(raw) < 65536 else await run_in_threadpool(parse_request, raw)
    req, items = await run_in_threadpool(service.plan, body, captions=captions)
    job, first = await queue_job(service, request, req, items)
    return body, job, first


async def queue_job(
    service: SpeechService, request: Request, req: SpeechRequest, items: list[PlanItem]
) -> tuple[SpeechJob, Any]:
    """Queue a planned request on the worker; returns its job and first item (None: the
    client left). Raises RequestError (429 when the queue is full, 500 when it failed)."""
    job = SpeechJob(items, req)
    _metrics.note_job(request, job)
    try:
        service.worker.submit(job)
    except QueueFullError as e:
        raise RequestError(
            f"the server is busy ({e}): retry after {RETRY_AFTER_S} s",
            code="rate_limit_exceeded",
            status=429,
            type="rate_limit_error",
        ) from e
    first = await next_item(request, job)
    if isinstance(first, JobFailed):
        raise RequestError(str(first), type="server_error", status=500)
    return job, first


def busy_response(e: RequestError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if e.status == 429 else None
    return JSONResponse(e.body(), e.status, headers=headers)


def install_speech_routes(app: FastAPI, service: SpeechService) -> None:
    """``POST /v1/audio/speech`` and ``POST /v1/audio/captioned_speech``."""

    @app.post("/v1/audio/speech")
    async def speech(request: Request) -> Response:
        try:
            body, job, first = await start_job(service, request, captions=False)
        except RequestError as e:
            return busy_response(e)
        if first is None:
            return Response(status_code=CLIENT_CLOSED)
        if body.response_format == "flac" and body.stream_format == "audio":
            return await _whole_flac(request, job, first, service.rate)
        return _stream(job, first, body, service, captions=False)

    @app.post("/v1/audio/captioned_speech")
    async def captioned_speech(request: Request) -> Response:
        try:
            body, job, first = await start_job(service, request, captions=True)
        except RequestError as e:
            return busy_response(e)
        if first is None:
            return Response(status_code=CLIENT_CLOSED)
        if body.stream_format == "sse":
            return _stream(job, first, body, service, captions=True)
        speech = await whole_speech(request, job, first, service.rate)
        if speech is None:
            return Response(status_code=CLIENT_CLOSED)
        return JSONResponse(await run_in_threadpool(captioned_json, speech, body.response_format))


def _stream(
    job: SpeechJob, first: Any, body: SpeechBody, service: SpeechService, captions: bool
) -> Response:
    encoded = Encoded(job, first, body.response_format, service.rate)
    if body.stream_format == "sse":
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        content = _sse(encoded, body, service.per_step, captions)
        return AudioStream(content, job, media_type="text/event-stream", headers=headers)
    media = audio.MEDIA_TYPES[body.response_format]
    return AudioStream(_bytes(encoded), job, media_type=media)


async def _whole_flac(request: Request, job: SpeechJob, first: Any, rate: int) -> Response:
    """A FLAC file sent once complete, so that its header holds the duration (total samples)
    and the MD5 of the audio, which a stream cannot go back and write."""
    speech = await whole_speech(request, job, first, rate)
    if speech is None:
        return Response(status_code=CLIENT_CLOSED)
    data = await run_in_threadpool(audio.encode_audio, speech.audio, "flac", rate)
    return Response(data, media_type=audio.MEDIA_TYPES["flac"])


def captioned_json(speech: Speech, fmt: str) -> dict[str, Any]:
    """``{"audio": base64 of the file, "format", "duration", "captions": [{start, end, text}],
    "marks": [{name, time}]}``."""
    data = audio.encode_audio(speech.audio, fmt, speech.sample_rate)
    return {
        "audio": base64.b64encode(data).decode(),
        "format": fmt,
        "duration": speech.duration,
        "captions": [{"start": c.start, "end": c.end, "text": c.text} for c in speech.captions()],
        "marks": [{"name": m.name, "time": m.time} for m in speech.marks],
    }


__all__ = ["MAX_BODY_BYTES", "RETRY_AFTER_S", "captioned_json", "install_speech_routes"]
