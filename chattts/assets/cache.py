"""The package's caches on disk and file hashes: one place for both.

- :func:`user_cache_dir`: ``<user cache>/chattts/...`` (``$XDG_CACHE_HOME`` or ``~/.cache`` on
  Linux), the base of the voice library, the text normalisers' grammars and the ONNX Runtime graphs;
- :func:`sha256_file`: a file's SHA256;
- :func:`checkpoint_sha256`: a checkpoint's SHA256, remembered in an index so that a later load
  does not read the whole file again (see its docstring for what makes that safe);
- :func:`cached_entry`: a folder of files made from a source (a converted graph...), built once
  under a lock, recorded in a manifest of every file's size and SHA256, moved into place whole,
  and checked before each use (docs/limits.md, "Caches").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, Optional

from ..errors import AssetError

logger = logging.getLogger("chattts")

#: The manifest inside a cache entry.
MANIFEST_FILE = "manifest.json"
#: Largest manifest read (a real one is a few hundred bytes).
MAX_MANIFEST_BYTES = 1 << 20
#: The checkpoint-hash index of a cache folder.
HASH_INDEX = "hashes.json"
#: Blocks of a checkpoint read for its content check (with its first and last block).
SAMPLE_BLOCKS, SAMPLE_BLOCK_BYTES = 16, 1 << 16
#: Largest checkpoint-hash index read, and the most checkpoints it remembers (the oldest
#: are forgotten first: each rewrite of a checkpoint is a new entry).
MAX_INDEX_BYTES, MAX_INDEX_ENTRIES = 1 << 22, 256


def user_cache_dir(*parts: str) -> str:
    """``<user cache>/chattts/<parts>``: the user cache is ``$XDG_CACHE_HOME`` (an absolute
    path; else ``~/.cache``) on Linux, ``~/Library/Caches`` on macOS and ``%LOCALAPPDATA%`` on
    Windows."""
    home = os.path.expanduser("~")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.join(home, "AppData", "Local")
    elif sys.platform == "darwin":
        base = os.path.join(home, "Library", "Caches")
    else:
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        base = xdg if os.path.isabs(xdg) else os.path.join(home, ".cache")
    return os.path.join(base, "chattts", *parts)


def sha256_file(path: str, chunk_size: int = 1 << 22) -> str:
    """Hex SHA256 of a file, read in chunks."""
    with open(path, "rb") as f:
        return _sha256_of(f, chunk_size)


def _sha256_of(f: Any, chunk_size: int = 1 << 22) -> str:
    h = hashlib.sha256()
    while chunk := f.read(chunk_size):
        h.update(chunk)
    return h.hexdigest()


def _open_regular(path: str) -> Any:
    """``path`` opened for reading only if it is a regular file itself: never follows a link
    and never blocks (a FIFO is refused before anything is read).

    Raises:
        OSError: missing, a link, or not a regular file.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


def _read_small(path: str, limit: int) -> bytes:
    """A regular file's bytes (:func:`_open_regular`); OSError past ``limit`` bytes."""
    with _open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(f"{path}: larger than {limit} bytes")
    return data


def sample_digest(path: str) -> str:
    """SHA256 of the file's size and of :data:`SAMPLE_BLOCKS` blocks spread over it (the first
    and last included): about 1 MB read whatever the file's size, so a few milliseconds."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode())
    step = max(size // SAMPLE_BLOCKS, 1)
    offsets = sorted({*range(0, size, step), max(size - SAMPLE_BLOCK_BYTES, 0)})
    with open(path, "rb") as f:
        for off in offsets:
            f.seek(off)
            h.update(f.read(SAMPLE_BLOCK_BYTES))
    return h.hexdigest()


def _file_key(path: str) -> str:
    """The identity of a file's current content as the file system tells it: path, device,
    inode, size, mtime and ctime (ctime changes on every write, even when mtime is set back)."""
    st = os.stat(path)
    parts = (os.path.realpath(path), st.st_dev, st.st_ino, st.st_size)
    return "|".join(map(str, (*parts, st.st_mtime_ns, st.st_ctime_ns)))


def _read_index(index_path: str) -> dict[str, Any]:
    """The hash index, or {} when it is missing, not a regular file, too large or not JSON."""
    try:
        index = json.loads(_read_small(index_path, MAX_INDEX_BYTES))
    except (OSError, ValueError, RecursionError):
        return {}
    return index if isinstance(index, dict) else {}


def checkpoint_sha256(path: str, cache_dir: str) -> str:
    """SHA256 of a checkpoint file, read whole only when the cache's index does not know it.

    The index (``hashes.json`` in ``cache_dir``) keys each hash by :func:`_file_key` (path,
    inode, size, mtime and ctime) and stores a :func:`sample_digest` of the content beside it,
    checked again at every use: weights rewritten in place (even with their size and mtime
    kept) or an index entry written by hand (a hash that is not this file's) fall back to
    hashing the file. Cost at load: the sampled digest (about 1 MB read) when the index knows
    the file; the whole file once (about 2 s for the official 850 MB GPT) otherwise. A
    read-only cache folder is used as it is (the index is then not updated).
    """
    key = _file_key(path)
    index_path = os.path.join(cache_dir, HASH_INDEX)
    index = _read_index(index_path)
    known = index.get(key)
    sample = sample_digest(path)
    if isinstance(known, dict) and known.get("sample") == sample:
        digest = known.get("sha256")
        if isinstance(digest, str) and len(digest) == 64:
            return digest
    digest = sha256_file(path)
    index.pop(key, None)
    index[key] = {"sha256": digest, "sample": sample}
    for old in list(index)[:-MAX_INDEX_ENTRIES]:
        del index[old]
    try:
        _write_json(index_path, index)
    except OSError as e:  # a read-only cache: the hash is recomputed next time
        logger.debug("cannot update %s (%s)", index_path, e)
    return digest


def _write_json(path: str, data: Any) -> None:
    """Write ``data`` as JSON through a unique temporary file renamed into place (atomic:
    concurrent writers never leave a partial file)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def _regular(path: str) -> bool:
    """``path`` is a regular file itself (not a link, a FIFO, a device or a folder)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _plain_name(name: object) -> bool:
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and "\0" not in name
    )


def entry_problem(entry: str, want: dict[str, Any]) -> Optional[str]:
    """Why the cache entry ``entry`` cannot be used (None: it is complete and intact).

    ``want``: manifest fields that must hold these values (versions, source hashes). The entry
    must be a real folder (not a link); its manifest a regular file of at most
    :data:`MAX_MANIFEST_BYTES`; every file it lists a plain name of a regular file inside the
    folder with the recorded size and SHA256.
    """
    if os.path.islink(entry) or not os.path.isdir(entry):
        return "not a folder" if os.path.lexists(entry) else "missing"
    path = os.path.join(entry, MANIFEST_FILE)
    if not _regular(path):
        return "no manifest" if not os.path.lexists(path) else "the manifest is not a file"
    try:
        manifest = json.loads(_read_small(path, MAX_MANIFEST_BYTES))
    except (OSError, ValueError, RecursionError) as e:
        return f"unreadable manifest ({e})"
    if not isinstance(manifest, dict):
        return "the manifest is not an object"
    for key, value in want.items():
        if manifest.get(key) != value:
            return f"{key} is {manifest.get(key)!r}, not {value!r}"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return "the manifest lists no files"
    for name, meta in files.items():
        if not _plain_name(name) or not isinstance(meta, dict):
            return f"the manifest lists {name!r}, not a file of the entry"
        problem = _file_problem(os.path.join(entry, name), name, meta)
        if problem is not None:
            return problem
    return None


def _file_problem(file: str, name: str, meta: dict[str, Any]) -> Optional[str]:
    """Why the entry's file ``name`` is not what its manifest ``meta`` records (or None)."""
    try:
        with _open_regular(file) as f:
            size = os.fstat(f.fileno()).st_size
            if size != meta.get("size"):
                return f"{name} has {size} bytes, not {meta.get('size')}"
            if _sha256_of(f) != meta.get("sha256"):
                return f"{name} does not match its SHA256"
    except OSError:
        return f"{name} is missing or not a regular file"
    return None


def _remove(path: str) -> None:
    """Remove a file, a link (not what it points to) or a folder."""
    if os.path.islink(path) or os.path.isfile(path):
        os.remove(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def cached_entry(
    cache_dir: str,
    name: str,
    want: dict[str, Any],
    build: Callable[[str], dict[str, Any]],
    *,
    rebuild: bool = False,
    what: str = "cache entry",
) -> str:
    """The folder ``cache_dir/name``: reused when intact (:func:`entry_problem` with ``want``),
    else (re)built by ``build(out_dir) -> extra manifest fields`` in a scratch folder, recorded
    in a manifest (``want``, the extra fields, every file's size and SHA256) and moved into
    place. An intact entry is used without writing anything (a read-only cache works); a
    build takes a file lock, so one process builds and the others then find it built.

    Raises:
        AssetError: the entry must be built and the cache folder is not writable.
    """
    entry = os.path.join(cache_dir, name)
    if not rebuild and entry_problem(entry, want) is None:
        logger.debug("%s from the cache: %s", what, entry)
        return entry
    try:
        os.makedirs(cache_dir, exist_ok=True)
        from filelock import FileLock

        lock = FileLock(entry + ".lock")
        lock.acquire()
    except OSError as e:
        raise AssetError(f"cannot build the {what} in {cache_dir}: {e.strerror or e}") from e
    try:
        problem = "a rebuild was asked for" if rebuild else entry_problem(entry, want)
        if problem is None:
            return entry
        if os.path.lexists(entry):
            logger.warning("the %s in %s is unusable (%s): rebuilding", what, entry, problem)
        start = time.monotonic()
        _build_into(entry, cache_dir, want, build)
        logger.info("%s written to %s in %.1f s", what, entry, time.monotonic() - start)
    finally:
        lock.release()
    return entry


def _build_into(
    entry: str, cache_dir: str, want: dict[str, Any], build: Callable[[str], dict[str, Any]]
) -> None:
    scratch = tempfile.mkdtemp(prefix="build-", dir=cache_dir)
    try:
        out = os.path.join(scratch, "out")
        os.makedirs(out)
        fields = build(out)
        files = {
            name: {"size": os.path.getsize(path), "sha256": sha256_file(path)}
            for name in sorted(os.listdir(out))
            if _regular(path := os.path.join(out, name))
        }
        manifest = {**want, **fields, "files": files}
        with open(os.path.join(out, MANIFEST_FILE), "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
        if os.path.lexists(entry):
            _remove(entry)
        os.replace(out, entry)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


__all__ = [
    "HASH_INDEX",
    "MANIFEST_FILE",
    "cached_entry",
    "checkpoint_sha256",
    "entry_problem",
    "sample_digest",
    "sha256_file",
    "user_cache_dir",
]
