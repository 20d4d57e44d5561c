"""The FastAPI application of the OpenAI-compatible speech server (see docs/server.md): the
guard every request passes, the small routes, the OpenAPI document, and the app's assembly.
The routes share a :class:`~.service.SpeechService`; the speech routes are :mod:`.routes`'."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import audio
from . import metrics as _metrics
from .browser import install_cors, install_docs
from .google import GOOGLE_PATH, install_google
from .jobs import JobManager
from .jobs_routes import install_job_routes, jobs_openapi
from .openapi import captioned_openapi, error_response, google_openapi, speech_openapi
from .routes import install_speech_routes
from .schemas import MODEL_NAMES, RequestError
from .service import SpeechService

logger = logging.getLogger("chattts.server")

#: Largest total size of the request headers, in bytes (names and values).
MAX_HEADER_BYTES = 32 << 10
_CREATED = 1_700_000_000  # a fixed "created" time for /v1/models


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


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


def build_app(
    service: SpeechService,
    cors_origins: Sequence[str] = (),
    replica: Optional[str] = None,
    jobs: Optional[JobManager] = None,
) -> FastAPI:
    """The routes over a :class:`SpeechService` (its worker runs while the app does);
    ``cors_origins``: the web origins whose pages may call it (none: CORS off); ``replica``:
    the name the ``/metrics`` labels and the replica header carry (default: this host);
    ``jobs``: the narration jobs (their runners start after the worker and stop before it)."""

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.worker.start()
        if jobs is not None:
            jobs.start()
        try:
            yield
        finally:
            if jobs is not None:
                await run_in_threadpool(jobs.stop)
            await run_in_threadpool(service.worker.stop)

    app = _SpeechApp(
        title="chattts speech server", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    app.state.service, app.state.jobs = service, jobs
    _install_errors(app)
    _install_guard(app, service)
    _install_routes(app, service)
    install_speech_routes(app, service)
    install_google(app, service)  # POST /v1/text:synthesize, Google's shape (its errors too)
    if jobs is not None:
        install_job_routes(app, jobs)  # /v1/audio/jobs (docs/narrate.md, "The job API")
    install_docs(app)  # /docs and /redoc from the installation, no CDN
    _metrics.install(app, service, replica)  # /metrics, and the replica header on every answer
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
            elif request.url.path == "/openapi.json" and not service.authorized(request):
                return JSONResponse(app.public_openapi())  # type: ignore[attr-defined]
        except RequestError as e:
            return _error(e)
        try:
            return await call_next(request)
        except Exception as e:  # answered here, so the kept-alive connection stays open
            return _internal_error(e)


def _install_routes(app: FastAPI, service: SpeechService) -> None:
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": MODEL_NAMES[0], "worker": service.worker.snapshot()}

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


class _SpeechApp(FastAPI):
    """FastAPI, with an OpenAPI document that carries the speech routes' real bodies and
    responses (built once, on first request of ``/openapi.json``). With an API key, a request
    without it gets the document without the voice names (:meth:`public_openapi`), which only
    ``GET /v1/audio/voices`` gives, behind the key."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            base = super().openapi()
            self._public = _complete_openapi(copy.deepcopy(base), self.state.service, False)
            _complete_openapi(base, self.state.service, True)
        return self.openapi_schema

    def public_openapi(self) -> dict[str, Any]:
        self.openapi()
        return self._public


def _complete_openapi(doc: dict[str, Any], service: SpeechService, named: bool) -> dict:
    """Add the speech routes' bodies (with the voice names when ``named``), audio responses
    and the shared error responses; returns ``doc``."""
    names = [v.name for v in service.voices.list()] if named else None
    operation, components = speech_openapi(audio.MEDIA_TYPES, names, service.max_new_token_limit)
    doc["paths"]["/v1/audio/speech"]["post"].update(operation)
    doc["paths"]["/v1/audio/captioned_speech"]["post"].update(captioned_openapi(operation))
    doc.setdefault("components", {}).setdefault("schemas", {}).update(components)
    google, google_components = google_openapi(names)
    doc["paths"][GOOGLE_PATH]["post"].update(google)
    doc["components"]["schemas"].update(google_components)
    if "/v1/audio/jobs" in doc["paths"]:
        jobs_openapi(doc, components["SpeechBody"])
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
    return doc


__all__ = ["SpeechService", "build_app"]
