"""The job routes: ``POST /v1/audio/jobs`` (a document, as JSON ``input`` text or a
``multipart/form-data`` upload), ``GET /v1/audio/jobs/{id}`` (state, progress, ETA),
``GET /v1/audio/jobs/{id}/result`` (the audio of a one-chapter document, else a zip of every
output), ``GET /v1/audio/jobs/{id}/files/{name}`` (one output file) and
``DELETE /v1/audio/jobs/{id}`` (docs/narrate.md, "The job API"). They are under ``/v1``, so
the API key guards them as it guards speech.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from .. import audio, captions
from ..errors import ChatTTSError, RequestError
from .jobs_spec import KINDS, TEXT_KINDS, JobBody, parse_job_form, parse_job_json
from .openapi import error_response

if TYPE_CHECKING:
    from .jobs import JobManager
    from .jobs_store import JobRecord

#: Bytes a request may carry besides the document (JSON fields, multipart headers).
SLACK_BYTES = 64 << 10
#: Seconds a client told 429 is asked to wait before submitting again.
RETRY_AFTER_S = 30
_CLIENT_CLOSED = 499
_TEXT_SUFFIXES = (".json", ".srt", ".vtt")


def _media_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    if suffix == ".m4b":
        return "audio/mp4"
    for fmt, media in captions.MEDIA_TYPES.items():
        if suffix == f".{fmt}":
            return media
    try:
        return audio.MEDIA_TYPES[audio.normalize_format(suffix)]
    except ChatTTSError:  # an unknown suffix
        return "application/octet-stream"


def job_json(record: JobRecord) -> dict[str, Any]:
    """A job as the API shows it (times: Unix seconds)."""
    base = f"/v1/audio/jobs/{record.id}"
    progress = record.progress
    return {
        "id": record.id,
        "object": "audio.job",
        "state": record.state,
        "created_at": record.created,
        "started_at": record.started,
        "finished_at": record.finished,
        "expires_at": record.expires,
        "progress": progress,
        "eta_seconds": None
        if not progress or record.state != "running"
        else progress["eta_seconds"],
        "error": record.error,
        "result": f"{base}/result" if record.state == "succeeded" else None,
        "files": [f"{base}/files/{name}" for name in record.files],
        "replica": record.replica,
        "bytes": record.bytes,
    }


def _error(e: RequestError) -> JSONResponse:
    headers = {"Retry-After": str(RETRY_AFTER_S)} if e.status == 429 else None
    return JSONResponse(e.body(), e.status, headers=headers)


def _not_found(id: str) -> RequestError:
    return RequestError(f"no job {id!r} (unknown, or expired)", "id", "job_not_found", status=404)


async def _chunks(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body, refused with 413 past ``limit`` bytes (before it is all read)."""
    too_large = RequestError(
        f"the request body is larger than {limit} bytes", code="too_large", status=413
    )
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > limit:
        raise too_large
    n = 0
    try:
        async for chunk in request.stream():
            n += len(chunk)
            if n > limit:
                raise too_large
            yield chunk
    except ClientDisconnect:
        raise RequestError("the client closed the connection", status=_CLIENT_CLOSED) from None


async def _submit(request: Request, jobs: JobManager) -> JobRecord:
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    limit = jobs.max_bytes + SLACK_BYTES
    if kind == "application/json":
        raw = b"".join([chunk async for chunk in _chunks(request, limit)])
        body = await run_in_threadpool(parse_job_json, raw)
        text = io.BytesIO((body.input or "").encode("utf-8"))
        return await run_in_threadpool(jobs.submit, body, text, None, "input")
    if kind != "multipart/form-data":
        raise RequestError(
            f"send the job as application/json or multipart/form-data, not {kind or 'nothing'!r}",
            code="unsupported_media_type",
            status=415,
        )
    parser = MultiPartParser(
        request.headers, _chunks(request, limit), max_files=1, max_fields=64, max_part_size=64 << 10
    )
    try:
        form = await parser.parse()
    except MultiPartException as e:
        raise RequestError(f"the form is malformed: {e.message}", code="invalid_form") from e
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise RequestError(
                "missing required parameter: 'file' (the document)", "file", "missing_required"
            )
        fields: dict[str, str] = {}
        for key, value in form.multi_items():
            if key == "file":
                continue
            if not isinstance(value, str) or key in fields:
                raise RequestError(
                    f"the form field {key!r} must be one text value", key, "invalid_value"
                )
            fields[key] = value
        body = parse_job_form(fields)
        return await run_in_threadpool(jobs.submit, body, upload.file, upload.filename, "file")
    finally:
        await form.close()


def _zip(folder: str, names: list[str]) -> Iterator[bytes]:
    """A zip of ``names`` in ``folder``, streamed as it is written (audio stored, text
    deflated; ZIP64 for files over 2 GiB)."""
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w") as zf:
        for name in names:
            path = os.path.join(folder, name)
            info = zipfile.ZipInfo.from_file(path, name)
            text = name.endswith(_TEXT_SUFFIXES)
            info.compress_type = zipfile.ZIP_DEFLATED if text else zipfile.ZIP_STORED
            big = os.path.getsize(path) > zipfile.ZIP64_LIMIT
            with open(path, "rb") as src, zf.open(info, "w", force_zip64=big) as dst:
                while block := src.read(1 << 20):
                    dst.write(block)
                    yield pipe.take()
    yield pipe.take()


class _Pipe(io.RawIOBase):
    """A write-only stream whose bytes are taken as they come (no seek: zipfile then writes
    data descriptors, so the zip is streamed)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buffer)
        self.buffer.clear()
        return out


def install_job_routes(app: FastAPI, jobs: JobManager) -> None:
    """The job routes over ``jobs`` (see the module docstring)."""

    @app.post("/v1/audio/jobs", status_code=202)
    async def create_job(request: Request) -> Response:
        try:
            record = await _submit(request, jobs)
        except RequestError as e:
            return _error(e)
        headers = {"Location": f"/v1/audio/jobs/{record.id}"}
        return JSONResponse(job_json(record), 202, headers=headers)

    async def found(id: str) -> JobRecord:
        record = await run_in_threadpool(jobs.get, id)
        if record is None:
            raise _not_found(id)
        return record

    @app.get("/v1/audio/jobs/{id}")
    async def get_job(id: str) -> dict[str, Any]:
        return job_json(await found(id))

    @app.get("/v1/audio/jobs/{id}/result")
    async def job_result(id: str) -> Response:
        record = await found(id)
        if record.state != "succeeded":
            why = f": {record.error}" if record.error else ""
            raise RequestError(
                f"the job is {record.state}{why}", "id", f"job_{record.state}", status=409
            )
        folder = jobs.path(record, "")
        if record.result != "result.zip":
            return _file(folder, record.result or "", record)
        if not all(os.path.exists(os.path.join(folder, n)) for n in record.files):
            raise _not_found(id)
        disposition = {"Content-Disposition": f'attachment; filename="{record.id}.zip"'}
        stream = _zip(folder, list(record.files))
        return StreamingResponse(stream, media_type="application/zip", headers=disposition)

    @app.get("/v1/audio/jobs/{id}/files/{name}")
    async def job_file(id: str, name: str) -> Response:
        record = await found(id)
        if name not in record.files:
            raise RequestError(f"the job has no file {name!r}", "name", "file_not_found", 404)
        return _file(jobs.path(record, ""), name, record)

    @app.delete("/v1/audio/jobs/{id}")
    async def delete_job(id: str) -> dict[str, Any]:
        out = await run_in_threadpool(jobs.cancel, id)
        if out is None:
            raise _not_found(id)
        record, deleted = out
        return {**job_json(record), "deleted": deleted}


def _file(folder: str, name: str, record: JobRecord) -> Response:
    path = os.path.join(folder, name)
    if not name or not os.path.isfile(path):
        raise _not_found(record.id)
    return FileResponse(path, media_type=_media_type(name), filename=name)


# ---- the OpenAPI document ------------------------------------------------------------------

_JOB: dict[str, Any] = {
    "type": "object",
    "required": ["id", "object", "state"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "audio.job"},
        "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
        "created_at": {"type": "number"},
        "started_at": {"type": ["number", "null"]},
        "finished_at": {"type": ["number", "null"]},
        "expires_at": {"type": ["number", "null"]},
        "progress": {"type": ["object", "null"]},
        "eta_seconds": {"type": ["number", "null"]},
        "error": {"type": ["string", "null"]},
        "result": {"type": ["string", "null"]},
        "files": {"type": "array", "items": {"type": "string"}},
        "replica": {"type": ["string", "null"]},
        "bytes": {"type": "integer"},
        "deleted": {"type": "boolean"},
    },
}


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A property without its ``null`` alternative (a form field cannot send null)."""
    options = [p for p in prop.get("anyOf", []) if p.get("type") != "null"]
    if len(options) == 1 and "anyOf" in prop:
        rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
        return {**options[0], **rest}
    return prop


def jobs_openapi(doc: dict[str, Any], speech_body: dict[str, Any]) -> None:
    """Complete the job routes in the OpenAPI document ``doc``: the bodies (JSON text, or an
    upload) with ``voice`` and ``max_new_token`` as the speech body has them (the voice names
    only in the document given with the key), the job object, and the error responses."""
    schema = JobBody.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    props = schema["properties"]
    for name in ("voice", "max_new_token"):
        props[name] = speech_body["properties"][name]
    as_json = {**schema, "properties": dict(props), "required": ["input", "voice"]}
    as_json["properties"]["input"] = {"type": "string", "minLength": 1, "pattern": r"\S"}
    as_json["properties"]["format"] = {"enum": list(TEXT_KINDS), "default": "txt"}
    form = {k: _not_null(v) for k, v in props.items() if k not in ("input", "voice")}
    voice = speech_body["properties"]["voice"]  # a form field is text: no {"id": ...}
    form["voice"] = {**voice, "anyOf": [v for v in voice["anyOf"] if v.get("type") == "string"]}
    form["format"] = {"enum": list(KINDS)}
    form["file"] = {"type": "string", "format": "binary", "description": "the document"}
    upload = {
        "type": "object",
        "required": ["file", "voice"],
        "properties": form,
        "additionalProperties": False,
    }
    doc.setdefault("components", {}).setdefault("schemas", {}).update(JobBody=as_json, Job=_JOB)
    job = {"application/json": {"schema": {"$ref": "#/components/schemas/Job"}}}
    errors = {
        "404": error_response("no such job (or it expired)"),
        "409": error_response("the job has not succeeded"),
    }
    paths = doc["paths"]
    paths["/v1/audio/jobs"]["post"].update(
        summary="Narrate a document in the background",
        requestBody={
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/JobBody"}},
                "multipart/form-data": {"schema": upload},
            },
        },
        responses={
            "202": {"description": "the job, queued", "content": job},
            "400": error_response("a bad field or document (the error names the field)"),
            "404": error_response("no such model"),
            "413": error_response("the document is larger than the server's limit"),
            "415": error_response("the body is neither JSON nor a multipart upload"),
            "429": error_response("too many jobs queued or running", retry_after=True),
        },
    )
    for path, method, ok in (
        ("/v1/audio/jobs/{id}", "get", {"description": "the job", "content": job}),
        ("/v1/audio/jobs/{id}", "delete", {"description": "cancelled or deleted", "content": job}),
        ("/v1/audio/jobs/{id}/result", "get", {"description": "the audio, or a zip of the files"}),
        ("/v1/audio/jobs/{id}/files/{name}", "get", {"description": "one output file"}),
    ):
        op = paths[path][method]
        op["responses"] = {"200": ok, "404": errors["404"]}
        if path.endswith("/result"):
            op["responses"]["409"] = errors["409"]


__all__ = ["RETRY_AFTER_S", "install_job_routes", "job_json", "jobs_openapi"]
