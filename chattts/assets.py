"""The official asset layout, its SHA256 table, verification and downloads from the Hub.

Three sources, as in the reference:

- ``huggingface``: ``huggingface_hub.snapshot_download`` of ``2Noise/ChatTTS`` into the Hub
  cache (``custom_path`` is the cache directory); an existing snapshot is reused;
- ``local``: the model root is ``custom_path`` or the current directory; files that are missing
  or fail verification are fetched from the Hub into that folder, then verified;
- ``custom``: ``custom_path`` as given, verified, nothing fetched.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Optional

from .config import (
    DECODER_WEIGHTS,
    DVAE_WEIGHTS,
    EMBED_WEIGHTS,
    GPT_CONFIG,
    GPT_WEIGHTS,
    SPK_STAT,
    VOCOS_WEIGHTS,
)
from .errors import AssetNotFoundError, ChecksumMismatchError, DownloadError

logger = logging.getLogger("chattts")

REPO_ID = "2Noise/ChatTTS"

#: SHA256 of the official files, relative to the model root (REFERENCE.md §1).
SHA256_MAP: dict[str, str] = {
    DECODER_WEIGHTS: "77aa55e0a977949c4733df3c6f876fa85860d3298cba63295a7bc6901729d4e0",
    DVAE_WEIGHTS: "1d0b044a8368c0513100a2eca98456b289e6be6a18b7a63be1bcaa315ea874d9",
    EMBED_WEIGHTS: "2ff0be7134934155741b643b74e32fb6bf3eec41257984459b2ed60cdb4c48b0",
    VOCOS_WEIGHTS: "07e5561491cce41f7f90cfdb94b2ff263ff5742c3d89339db99b17ad82cc3f44",
    GPT_CONFIG: "0aaa1ecd96c49ad4f473459eb1982fa7ad79fa5de08cde2781bf6ad1f9a0c236",
    GPT_WEIGHTS: "cd0806fd971f52f6a22c923ec64982b305e817bcc41ca83417fcf9141b984a0f",
    "asset/tokenizer/special_tokens_map.json": (
        "bd0ac9d9bb1657996b5c5fbcaa7d80f8de530d01a283da97f89deae5b1b8d011"
    ),
    "asset/tokenizer/tokenizer_config.json": (
        "43e9d658b554fa5ee8d8e1d763349323bfef1ed7a89c0794220ab8861387d421"
    ),
    "asset/tokenizer/tokenizer.json": (
        "843838a64e121e23e774cc75874c6fe862198d9f7dd43747914633a8fd89c20e"
    ),
}

#: Files every model root needs, whatever checkpoint it holds (a tokenizer saved by
#: transformers 5 may lack ``special_tokens_map.json``, so it is not required).
REQUIRED_FILES: tuple[str, ...] = (
    GPT_CONFIG,
    GPT_WEIGHTS,
    EMBED_WEIGHTS,
    DVAE_WEIGHTS,
    DECODER_WEIGHTS,
    VOCOS_WEIGHTS,
    "asset/tokenizer/tokenizer.json",
    "asset/tokenizer/tokenizer_config.json",
    SPK_STAT,
)

#: What the reference fetches from the Hub, plus the speaker statistics.
ALLOW_PATTERNS = ["*.yaml", "*.json", "*.safetensors", SPK_STAT]


def sha256_file(path: str, chunk_size: int = 1 << 20) -> str:
    """Hex SHA256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def verify_model_root(root: str, verify: bool = True) -> None:
    """Raise on the first problem of :func:`check_model_root`, naming the file."""
    for rel in REQUIRED_FILES:
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            raise AssetNotFoundError(f"model file not found: {path}")
    if not verify:
        return
    for rel, expected in SHA256_MAP.items():
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            raise AssetNotFoundError(f"model file not found: {path}")
        found = sha256_file(path)
        if found != expected:
            raise ChecksumMismatchError(path, expected, found)
    logger.info("all model files in %s match the official SHA256", root)


def _bad_files(root: str, verify: bool) -> list[str]:
    bad = []
    wanted = list(REQUIRED_FILES) + ([f for f in SHA256_MAP if f not in REQUIRED_FILES] if verify else [])
    for rel in wanted:
        path = os.path.join(root, rel)
        if not os.path.isfile(path):
            bad.append(rel)
        elif verify and rel in SHA256_MAP and sha256_file(path) != SHA256_MAP[rel]:
            logger.warning("%s does not match the official SHA256: fetching it again", path)
            bad.append(rel)
    return bad


def _hub_error(e: Exception) -> DownloadError:
    return DownloadError(
        f"cannot download {REPO_ID} from the Hugging Face Hub ({type(e).__name__}: {e}); "
        "check the network or HF_ENDPOINT, or use source='local'/'custom' with a model folder"
    )


def download_huggingface(
    cache_dir: Optional[str] = None, force_redownload: bool = False, verify: bool = True
) -> str:
    """Snapshot of the Hub repo in the Hub cache; reuses an existing one. Returns the root."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    root = None
    if not force_redownload:
        try:
            root = huggingface_hub.snapshot_download(
                REPO_ID, allow_patterns=ALLOW_PATTERNS, cache_dir=cache_dir, local_files_only=True
            )
            if _bad_files(root, verify):
                root = None
            else:
                logger.info("using the cached snapshot %s", root)
        except (LocalEntryNotFoundError, FileNotFoundError, OSError):
            root = None
    if root is None:
        logger.info("downloading %s from the Hugging Face Hub", REPO_ID)
        try:
            root = huggingface_hub.snapshot_download(
                REPO_ID,
                allow_patterns=ALLOW_PATTERNS,
                cache_dir=cache_dir,
                force_download=force_redownload,
            )
        except Exception as e:  # network, HTTP and Hub errors all end here
            raise _hub_error(e) from e
    verify_model_root(root, verify)
    return root


def download_local(
    root: Optional[str] = None, force_redownload: bool = False, verify: bool = True
) -> str:
    """Complete a local model root from the Hub: fetch missing or corrupt files into it."""
    import huggingface_hub

    root = os.path.abspath(root or os.getcwd())
    bad = list(REQUIRED_FILES) if force_redownload else _bad_files(root, verify)
    if bad:
        logger.info("fetching %d file(s) of %s into %s: %s", len(bad), REPO_ID, root, bad)
        for rel in bad:
            try:
                huggingface_hub.hf_hub_download(
                    REPO_ID, rel, local_dir=root, force_download=True
                )
            except Exception as e:
                raise _hub_error(e) from e
    verify_model_root(root, verify)
    return root


def resolve_model_root(
    source: str = "local",
    custom_path: Optional[str] = None,
    force_redownload: bool = False,
    verify: bool = True,
) -> str:
    """The model root for ``source``, fetched and verified as needed; raises on failure."""
    if source == "huggingface":
        return download_huggingface(custom_path, force_redownload, verify)
    if source == "local":
        return download_local(custom_path, force_redownload, verify)
    if source == "custom":
        if not custom_path:
            raise ValueError("source='custom' needs custom_path, the model root folder")
        root = os.path.abspath(custom_path)
        if not os.path.isdir(root):
            raise AssetNotFoundError(f"model folder not found: {root}")
        verify_model_root(root, verify)
        return root
    raise ValueError(f"unknown source {source!r}: use 'huggingface', 'local' or 'custom'")
