"""What browsers need from the speech server: the API documentation pages served from the
installation (no CDN), and CORS for web front ends on other origins (docs/server.md, "Browsers").

The pages are FastAPI's own (``get_swagger_ui_html``, ``get_redoc_html``) pointed at the
Swagger UI and ReDoc bundles that the ``fastapi-offline`` package ships (MIT; Swagger UI is
Apache-2.0, ReDoc MIT): its wheel holds exactly the files FastAPI would load from its CDN
(``swagger-ui-dist@5``, ``redoc@2``), 2.8 MB installed, and it depends on FastAPI alone. Only
its files are used, not its app factory. Without it (an installation older than the
``server`` extra's pin) the pages load from the CDN, with a warning at start-up.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ..cli.args import check_origins
from .metrics import REPLICA_HEADER

logger = logging.getLogger("chattts.server")

#: Where the documentation pages' scripts and styles are served.
ASSETS_PATH = "/docs-assets"
#: The package that ships them.
ASSETS_PACKAGE = "fastapi_offline"
INSTALL_HINT = "pip install 'chattts[server]'"
#: Headers a cross-origin client may send, and may read in the answer.
CORS_REQUEST_HEADERS = ("Authorization", "Content-Type")
CORS_EXPOSED_HEADERS = ("Retry-After", REPLICA_HEADER)


def assets_dir() -> Optional[str]:
    """The folder of Swagger UI's and ReDoc's files, or None when the package is missing."""
    spec = importlib.util.find_spec(ASSETS_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "static")
    return folder if os.path.isfile(os.path.join(folder, "swagger-ui-bundle.js")) else None


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI), ``/redoc`` (ReDoc) and their files under :data:`ASSETS_PATH`.

    ``app`` must be built with ``docs_url=None, redoc_url=None`` (FastAPI's CDN pages).
    """
    folder = assets_dir()
    if folder is not None:
        app.mount(ASSETS_PATH, StaticFiles(directory=folder), name="docs-assets")
    else:
        logger.warning("/docs and /redoc load their scripts from a CDN: %s", INSTALL_HINT)
    title = app.title
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    def files(request: Request, **names: str) -> dict[str, str]:
        """The page's keyword -> URL of each file (none without the package: the CDN's)."""
        root = request.scope.get("root_path", "")
        if folder is None:
            return {}
        return {key: f"{root}{ASSETS_PATH}/{name}" for key, name in names.items()}

    @app.get("/docs", include_in_schema=False)
    async def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            **files(
                request,
                swagger_js_url="swagger-ui-bundle.js",
                swagger_css_url="swagger-ui.css",
                swagger_favicon_url="favicon.png",
            ),
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} - ReDoc",
            with_google_fonts=folder is None,
            **files(request, redoc_js_url="redoc.standalone.js", redoc_favicon_url="favicon.png"),
        )


def install_cors(app: FastAPI, origins: Sequence[str]) -> None:
    """Answer CORS preflights and tag answers for pages of ``origins`` (none: CORS off).

    Added last, so it wraps every other middleware: a preflight needs no API key and no Host
    check, and errors (401, 429...) carry the CORS headers too, so a page can read them.
    """
    allowed = check_origins(origins)
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed),
        allow_methods=["GET", "POST"],
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=600,
    )
    logger.info("CORS: pages of %s may call the server", ", ".join(allowed))


__all__ = ["ASSETS_PATH", "assets_dir", "install_cors", "install_docs"]
