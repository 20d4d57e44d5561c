"""A local stand-in for the Hugging Face Hub, for tests of the download paths.

:class:`HubStub` is a threaded HTTP server on 127.0.0.1 (a free port) that serves a set of files
as one model repo, speaking the endpoints ``huggingface_hub`` 2.4 really calls from
``snapshot_download`` / ``hf_hub_download`` / ``HfApi.model_info``:

- ``GET /api/models/{repo}[/revision/{rev}]``: repo info (``sha``, ``siblings``);
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=..``: the file listing, with ``oid``
  (git blob sha1), ``size`` and, for LFS files, ``lfs`` (``oid`` = sha256, ``size``,
  ``pointerSize``);
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}``: regular files answer 200 with ``ETag`` (git blob
  sha1), ``X-Repo-Commit`` and ``Content-Length``; LFS files (``.safetensors``, ``.pt``) answer
  302 to a "CDN" URL on another origin (``localhost`` instead of ``127.0.0.1``, same port) with
  ``X-Linked-Etag`` (sha256) and ``X-Linked-Size``, as the real Hub does, so the library stops
  at the redirect for metadata and downloads from the CDN URL;
- ``GET /lfs/{sha256}``: the CDN, honouring ``Range: bytes=N-``;
- missing repo / revision / file: 401 ``RepoNotFound`` / 404 ``RevisionNotFound`` / 404
  ``EntryNotFound`` with ``X-Error-Code`` as the Hub sends them; anything else (such as
  ``/api/agent-harnesses``) is 404.

No Xet headers are ever sent, so the library falls back to plain HTTP downloads.

Every request is recorded (:attr:`HubStub.requests`) so that tests can assert what was fetched.
:func:`use_hub` points ``huggingface_hub`` at an endpoint in-process (its constants are read at
import, so the module attributes are patched as well as the environment) with an isolated
``HF_HOME``; the ``hub`` fixture combines both with the tiny model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

TINY = Path(__file__).parent / "fixtures" / "tiny"
REPO_ID = "2Noise/ChatTTS"
LFS_SUFFIXES = (".safetensors", ".pt", ".bin")


@dataclass(frozen=True)
class Request:
    """One request the stub answered: ``kind`` is info, tree, head, file (a file body sent),
    redirect (a GET answered with 302 to the CDN) or other."""

    method: str
    path: str
    kind: str
    status: int


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(data: bytes) -> bytes:
    sha = hashlib.sha256(data).hexdigest()
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha}\nsize {len(data)}\n".encode()
    )


class HubStub:
    """Serve ``files`` (repo path -> bytes) as the model repo ``repo_id`` at one commit."""

    def __init__(
        self,
        files: dict[str, bytes],
        repo_id: str = REPO_ID,
        commit: str | None = None,
    ) -> None:
        self.files = dict(files)
        self.repo_id = repo_id
        self.commit = commit or hashlib.sha1(repr(sorted(files)).encode()).hexdigest()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, include: tuple[str, ...] = ("asset/",), **kw
    ) -> HubStub:
        """Files of ``folder`` whose repo path starts with one of ``include``."""
        root = Path(folder)
        files = {
            p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix().startswith(include)
        }
        return cls(files, **kw)

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "stub not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HubStub:
        stub = self

        class Handler(_Handler):
            hub = stub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubStub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- bookkeeping -----------------------------------------------------------------------------
    def record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    def of_kind(self, kind: str) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.kind == kind]

    def fetched(self) -> list[str]:
        """Repo paths whose content was sent (sorted, with repeats)."""
        by_sha = {hashlib.sha256(d).hexdigest(): p for p, d in self.files.items()}
        out = []
        for r in self.of_kind("file"):
            m = re.fullmatch(r"/lfs/([0-9a-f]{64})", r.path)
            out.append(by_sha.get(m.group(1), r.path) if m else r.path.split("/", 5)[-1])
        return sorted(out)

    # -- metadata --------------------------------------------------------------------------------
    def is_lfs(self, path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    def tree(self, prefix: str, recursive: bool) -> list[dict]:
        prefix = prefix.strip("/")
        entries: dict[str, dict] = {}
        for path, data in sorted(self.files.items()):
            if prefix and not path.startswith(prefix + "/"):
                continue
            rest = path[len(prefix) + 1 :] if prefix else path
            parts = rest.split("/")
            base = f"{prefix}/" if prefix else ""
            # folders on the way
            for i in range(1, len(parts) if recursive else min(2, len(parts))):
                folder = base + "/".join(parts[:i])
                entries.setdefault(folder, {"type": "directory", "oid": "0" * 40, "path": folder})
            if not recursive and len(parts) > 1:
                continue
            entry = {"type": "file", "path": path, "size": len(data)}
            if self.is_lfs(path):
                pointer = _lfs_pointer(data)
                entry.update(size=len(data), oid=_git_blob_sha1(pointer))
                entry["lfs"] = {
                    "oid": hashlib.sha256(data).hexdigest(),
                    "size": len(data),
                    "pointerSize": len(pointer),
                }
            else:
                entry["oid"] = _git_blob_sha1(data)
            entries[path] = entry
        return list(entries.values())


class _Handler(BaseHTTPRequestHandler):
    hub: HubStub
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    # -- responses -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str], kind: str = "other") -> None:
        """Answer; a HEAD gets the headers of the GET (Content-Length included), no body."""
        # recorded before anything is sent, so a client never sees an unrecorded answer
        self.hub.record(Request(self.command, self.path, kind, status))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, obj: object, kind: str) -> None:
        self._send(200, json.dumps(obj).encode(), {"Content-Type": "application/json"}, kind)

    def _error(self, status: int, code: str, extra: dict[str, str] | None = None) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": code, **(extra or {})}
        self._send(status, json.dumps({"error": code}).encode(), headers)

    def _revision_ok(self, rev: str) -> bool:
        return unquote(rev) in ("main", self.hub.commit)

    # -- routing ---------------------------------------------------------------------------------
    def _route(self) -> None:
        hub = self.hub
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        repo = re.escape(hub.repo_id)

        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        if m:
            if m.group(1) != hub.repo_id:
                return self._error(401, "RepoNotFound")
            if m.group(2) is not None and not self._revision_ok(m.group(2)):
                return self._error(404, "RevisionNotFound")
            siblings = [{"rfilename": p} for p in sorted(hub.files)]
            info = {"_id": "stub", "id": hub.repo_id, "modelId": hub.repo_id, "sha": hub.commit}
            info.update(private=False, gated=False, disabled=False, tags=[], siblings=siblings)
            return self._json(info, "info")

        m = re.fullmatch(rf"/api/models/{repo}/tree/([^/]+)(/.*)?", path)
        if m:
            if not self._revision_ok(m.group(1)):
                return self._error(404, "RevisionNotFound")
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            return self._json(hub.tree(unquote(m.group(2) or ""), recursive), "tree")

        m = re.fullmatch(rf"/{repo}/resolve/([^/]+)/(.+)", path)
        if m:
            return self._resolve(m.group(1), unquote(m.group(2)))

        m = re.fullmatch(r"/lfs/([0-9a-f]{64})", path)
        if m:
            for data in hub.files.values():
                if hashlib.sha256(data).hexdigest() == m.group(1):
                    return self._content(data, f'"{m.group(1)}"', {})
        return self._error(404, "NotFound")

    def _resolve(self, rev: str, file: str) -> None:
        hub = self.hub
        commit = {"X-Repo-Commit": hub.commit}
        if not self._revision_ok(rev):
            return self._error(404, "RevisionNotFound")
        if file not in hub.files:
            return self._error(404, "EntryNotFound", commit)
        data = hub.files[file]
        if not hub.is_lfs(file):
            return self._content(data, f'"{_git_blob_sha1(data)}"', commit)
        sha = hashlib.sha256(data).hexdigest()
        headers = {
            **commit,
            "ETag": f'"{_git_blob_sha1(_lfs_pointer(data))}"',
            "X-Linked-Etag": f'"{sha}"',
            "X-Linked-Size": str(len(data)),
            # another origin than the Hub's, as the real CDN is
            "Location": f"http://localhost:{hub.port}/lfs/{sha}",
        }
        self._send(302, b"", headers, "head" if self.command == "HEAD" else "redirect")

    def _content(self, data: bytes, etag: str, extra: dict[str, str]) -> None:
        headers = {"ETag": etag, "Accept-Ranges": "bytes", **extra}
        status = 200
        rng = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if rng and self.command == "GET":
            start = int(rng.group(1))
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            data, status = data[start:], 206
        self._send(status, data, headers, "head" if self.command == "HEAD" else "file")


# -- pointing huggingface_hub at an endpoint, in-process ------------------------------------------


def use_hub(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: str | os.PathLike) -> None:
    """Make ``huggingface_hub`` (already imported) talk to ``endpoint`` with an empty ``hf_home``.

    ``huggingface_hub.constants`` reads the environment once at import, so both the environment
    (for subprocesses and code that reads it at call time) and the module attributes are patched.
    Tokens are cleared so no credential of the machine is read or sent; Xet is disabled (the stub
    speaks plain HTTP); the shared HTTP client is closed so no pooled connection outlives a test.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    home = Path(hf_home)
    endpoint = endpoint.rstrip("/")
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    attrs = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(home / "hub"),
        "HF_XET_CACHE": str(home / "xet"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": True,
    }
    for k, v in attrs.items():
        monkeypatch.setattr(constants, k, v)
    close_session()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[str]:
    """An endpoint that accepts TCP connections (the kernel's backlog) but never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture(name="point_hub")
def point_hub_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], None]]:
    """``point_hub(endpoint)``: :func:`use_hub` with an empty ``HF_HOME`` under ``tmp_path``; the
    shared HTTP client is closed again at teardown."""
    from huggingface_hub.utils import close_session

    yield lambda endpoint: use_hub(monkeypatch, endpoint, tmp_path / "hf_home")
    close_session()


@pytest.fixture(name="hub")
def hub_fixture(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubStub]:
    """The tiny model (its ``asset/`` files plus a README) served as ``2Noise/ChatTTS``, with
    ``huggingface_hub`` pointed at it and an empty ``HF_HOME`` under ``tmp_path``."""
    from huggingface_hub.utils import close_session

    stub = HubStub.from_folder(TINY)
    stub.files["README.md"] = b"# stand-in for 2Noise/ChatTTS\n"
    stub.files[".gitattributes"] = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    with stub:
        use_hub(monkeypatch, stub.url, tmp_path / "hf_home")
        yield stub
        close_session()
