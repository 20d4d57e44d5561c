"""Model files and caches: the official layout and its SHA256 table, downloads from the Hub
(:mod:`.hub`), and the package's caches on disk with file hashes (:mod:`.cache`)."""

from __future__ import annotations

from .cache import sha256_file, user_cache_dir
from .hub import (
    ALLOW_PATTERNS,
    REPO_ID,
    REQUIRED_FILES,
    SHA256_MAP,
    download_huggingface,
    download_local,
    fetch_file,
    resolve_model_root,
    snapshot_repo,
    verify_model_root,
)

__all__ = [
    "ALLOW_PATTERNS",
    "REPO_ID",
    "REQUIRED_FILES",
    "SHA256_MAP",
    "download_huggingface",
    "download_local",
    "fetch_file",
    "resolve_model_root",
    "sha256_file",
    "snapshot_repo",
    "user_cache_dir",
    "verify_model_root",
]
