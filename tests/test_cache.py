"""The caches on disk (chattts/assets/cache.py): a read-only cache, checkpoint hashes that
follow the content, and entries that are links, FIFOs or manifests pointing outside."""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import stat
from pathlib import Path

import pytest
from conftest import finishes

from chattts.assets import cache
from chattts.assets.cache import (
    HASH_INDEX,
    MANIFEST_FILE,
    cached_entry,
    checkpoint_sha256,
    entry_problem,
    sample_digest,
    sha256_file,
)
from chattts.errors import AssetError

WANT = {"converter_version": 1, "source_sha256": "ab" * 32, "precision": "fp32"}


def build(out: str) -> dict:
    Path(out, "graph.onnx").write_bytes(b"graph" * 100)
    return {"builder": "test"}


def fail(out: str) -> dict:
    raise AssertionError("the entry was rebuilt")


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` and everything under it made read-only. The file modes are changed (which is
    all a normal user needs); under root, which the modes do not stop, any open for writing
    below ``folder`` is refused as the kernel would refuse it for a normal user."""
    paths = [folder, *folder.rglob("*")]
    modes = {p: p.lstat().st_mode for p in paths if not p.is_symlink()}
    for p in modes:
        p.chmod(0o555 if p.is_dir() else 0o444)
    root = str(folder.resolve())
    below = lambda p: os.path.realpath(os.fspath(p)).startswith(root)  # noqa: E731
    real_open, real_os_open = builtins.open, os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def os_open(path, flags, *args, **kw):
        if flags & writes and below(path):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_os_open(path, flags, *args, **kw)

    def open_(file, mode="r", *args, **kw):
        if isinstance(file, (str, os.PathLike)) and set(mode) & set("wax+") and below(file):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, mode, *args, **kw)

    with pytest.MonkeyPatch.context() as mp:
        if os.geteuid() == 0:
            mp.setattr(os, "open", os_open)
            mp.setattr(builtins, "open", open_)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(stat.S_IMODE(mode))


def listing(folder: Path) -> list[str]:
    return sorted(os.fspath(p.relative_to(folder)) for p in folder.rglob("*"))


# ---- 7: a read-only cache ---------------------------------------------------------------------


def test_a_complete_read_only_cache_is_used_without_writing(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    entry = cached_entry(str(root), "gpt-x", WANT, build)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(1 << 16))
    digest = checkpoint_sha256(str(weights), str(root))
    for lock in root.glob("*.lock"):
        lock.unlink()  # as shipped: no lock file left from the build
    before = listing(root)
    with read_only(root):
        assert cached_entry(str(root), "gpt-x", WANT, fail) == entry
        assert checkpoint_sha256(str(weights), str(root)) == digest
        with pytest.raises(AssetError, match="cannot build"):  # a missing entry: a clear error
            cached_entry(str(root), "gpt-y", WANT, build)
    assert listing(root) == before


# ---- 8: checkpoint hashes follow the content ------------------------------------------------


def test_weights_changed_in_place_with_size_and_mtime_kept_get_a_new_hash(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(1 << 20))
    first = checkpoint_sha256(str(weights), str(tmp_path / "cache"))
    st = weights.stat()
    with open(weights, "r+b") as f:  # one byte between the sampled blocks
        f.seek((1 << 20) // 16 + (1 << 16) + 7)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    second = checkpoint_sha256(str(weights), str(tmp_path / "cache"))
    assert second == sha256_file(str(weights)) != first


def test_a_poisoned_index_is_not_trusted(tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(1 << 18))
    true = sha256_file(str(weights))
    index = tmp_path / "cache" / HASH_INDEX
    assert checkpoint_sha256(str(weights), str(index.parent)) == true
    key = next(iter(json.loads(index.read_text())))
    wrong = "00" * 32
    poisons = [
        {key: wrong},  # the old format: a bare hash for the file's key
        {key: {"sha256": wrong, "sample": "11" * 32}},  # a content check that does not match
        {key: {"sha256": wrong}},  # no content check
        # the old key (path, size, mtime): what the index trusted before
        {f"{weights}|{weights.stat().st_size}|{weights.stat().st_mtime}": wrong},
    ]
    for poison in poisons:
        index.write_text(json.dumps(poison))
        assert checkpoint_sha256(str(weights), str(index.parent)) == true, poison
    other = tmp_path / "other.safetensors"  # another file's entry is not this file's
    other.write_bytes(weights.read_bytes()[:-1] + b"x")
    checkpoint_sha256(str(other), str(index.parent))
    assert checkpoint_sha256(str(weights), str(index.parent)) == true
    assert json.loads(index.read_text())[key]["sample"] == sample_digest(str(weights))


def test_the_index_is_bounded_and_a_fifo_index_is_never_opened(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(cache, "MAX_INDEX_ENTRIES", 3)
    folder = tmp_path / "cache"
    for i in range(5):
        f = tmp_path / f"w{i}"
        f.write_bytes(os.urandom(100))
        checkpoint_sha256(str(f), str(folder))
    assert len(json.loads((folder / HASH_INDEX).read_text())) == 3
    (folder / HASH_INDEX).unlink()
    os.mkfifo(folder / HASH_INDEX)
    assert finishes(lambda: checkpoint_sha256(str(tmp_path / "w0"), str(folder)))


# ---- 9: entries that are links, FIFOs, or manifests that point outside ---------------------


def test_a_symlinked_entry_is_replaced_by_a_real_one(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    elsewhere = Path(cached_entry(str(tmp_path / "other"), "gpt-x", WANT, build))
    root.mkdir()
    (root / "gpt-x").symlink_to(elsewhere, target_is_directory=True)
    assert entry_problem(str(root / "gpt-x"), WANT) == "not a folder"
    for _ in range(2):  # and again: the first rebuild left a real folder
        entry = Path(cached_entry(str(root), "gpt-x", WANT, build))
        assert not entry.is_symlink() and entry.is_dir()
        assert entry_problem(str(entry), WANT) is None
    assert entry_problem(str(elsewhere), WANT) is None  # what the link pointed to is untouched
    (root / "gpt-x").rename(root / "real")
    (root / "gpt-x").symlink_to(tmp_path / "nowhere")  # a dangling link too
    assert entry_problem(str(cached_entry(str(root), "gpt-x", WANT, build)), WANT) is None


@pytest.mark.parametrize("what", [MANIFEST_FILE, "graph.onnx"])
def test_a_fifo_in_an_entry_is_never_opened(tmp_path: Path, what: str) -> None:
    entry = Path(cached_entry(str(tmp_path), "gpt-x", WANT, build))
    (entry / what).unlink()
    os.mkfifo(entry / what)
    problem = finishes(lambda: entry_problem(str(entry), WANT))
    assert problem is not None and "not a" in problem
    rebuilt = finishes(lambda: cached_entry(str(tmp_path), "gpt-x", WANT, build))
    assert entry_problem(rebuilt, WANT) is None


@pytest.mark.parametrize(
    "name", ["../outside.bin", "/etc/hostname", "sub/graph.onnx", "..", ".", "a\\b", "x\0y"]
)
def test_a_manifest_cannot_list_files_outside_its_entry(tmp_path: Path, name: str) -> None:
    entry = Path(cached_entry(str(tmp_path / "cache"), "gpt-x", WANT, build))
    outside = tmp_path / "cache" / "outside.bin"
    outside.write_bytes(b"secret")
    manifest = json.loads((entry / MANIFEST_FILE).read_text())
    manifest["files"][name] = {"size": 6, "sha256": sha256_file(str(outside))}
    (entry / MANIFEST_FILE).write_text(json.dumps(manifest))
    problem = entry_problem(str(entry), WANT)
    assert problem is not None and "not a file of the entry" in problem
