"""The official asset layout, its SHA256 table, verification and downloads from the Hub.

Three sources, as in the reference:

- ``huggingface``: the files of ``2Noise/ChatTTS`` that the reference's ``snapshot_download``
  patterns select, plus ``asset/spk_stat.pt``, in the Hub cache (``custom_path`` is the cache
  directory). A complete snapshot already there is reused without any network access (so it
  works offline); missing files are added to it and corrupt ones fetched again;
- ``local``: the model root is ``custom_path`` or the current directory; files that are missing
  or fail verification are fetched from the Hub into that folder, then verified;
- ``custom``: ``custom_path`` as given, verified, nothing fetched.

Every Hub access of the package is in this module (:func:`resolve_model_root`,
:func:`snapshot_repo` for other repos, :func:`fetch_file` for one file). All Hub traffic goes
through ``huggingface_hub`` (``HfApi.model_info`` and ``hf_hub_download``
pinned to one commit), so ``HF_ENDPOINT`` (read when called, not only at import), tokens,
proxies and the cache layout behave as usual. The first request carries a timeout
(``HF_HUB_ETAG_TIMEOUT``, 10 s by default): ``snapshot_download`` itself asks for the repo
info and file list with no timeout at all, so a Hub that accepts connections but never
answers would hang it forever. Offline (``HF_HUB_OFFLINE=1``), unreachable or failing Hubs
raise :class:`~chattts.errors.DownloadError` saying what was needed and why.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..config import (
    DECODER_WEIGHTS,
    DVAE_WEIGHTS,
    EMBED_WEIGHTS,
    GPT_CONFIG,
    GPT_WEIGHTS,
    SPK_STAT,
    VOCOS_WEIGHTS,
)
from ..errors import AssetNotFoundError, ChecksumMismatchError, DownloadError
from .cache import sha256_file

logger = logging.getLogger("chattts")

REPO_ID = "2Noise/ChatTTS"

#: SHA256 of the official files, relative to the model root (docs/architecture.md, "Model files").
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

_MAX_WORKERS = 8


def verify_model_root(
    root: str, verify: bool = True, sha256_map: Mapping[str, str] | None = None
) -> None:
    """Check that ``root`` holds every required file and, if ``verify``, the hashes of
    ``sha256_map`` (default :data:`SHA256_MAP`, the official ones).

    Raises :class:`AssetNotFoundError` naming every missing file, or
    :class:`ChecksumMismatchError` naming the first file whose SHA256 differs (with both hashes).
    """
    table = SHA256_MAP if sha256_map is None else sha256_map
    missing = [f for f in (_all_files(table) if verify else REQUIRED_FILES) if not _exists(root, f)]
    if missing:
        paths = ", ".join(os.path.join(root, rel) for rel in missing)
        raise AssetNotFoundError(f"model file(s) not found: {paths}")
    if not verify:
        return
    for rel, expected in table.items():
        path = os.path.join(root, rel)
        found = sha256_file(path)
        if found != expected:
            raise ChecksumMismatchError(path, expected, found)
    logger.info("all model files in %s match the official SHA256", root)


def _all_files(table: Mapping[str, str]) -> list[str]:
    """Every file of the layout: the required ones and those with a hash in ``table``."""
    return list(REQUIRED_FILES) + [f for f in table if f not in REQUIRED_FILES]


def _exists(root: str, rel: str) -> bool:
    return os.path.isfile(os.path.join(root, rel))


def _bad_files(root: str, verify: bool, table: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """(missing, corrupt) files of ``root``, relative paths; corrupt ones only when ``verify``."""
    missing, corrupt = [], []
    for rel in _all_files(table) if verify else REQUIRED_FILES:
        if not _exists(root, rel):
            missing.append(rel)
        elif verify and rel in table:
            path = os.path.join(root, rel)
            if sha256_file(path) != table[rel]:
                logger.warning("%s does not match its expected SHA256", path)
                corrupt.append(rel)
    return missing, corrupt


# -- the Hub -------------------------------------------------------------------------------------


def _endpoint() -> str | None:
    """``HF_ENDPOINT`` as set now (``huggingface_hub`` reads it only once, at import)."""
    endpoint = os.environ.get("HF_ENDPOINT")
    return endpoint.rstrip("/") if endpoint else None


def _timeout() -> float:
    """Seconds to wait for the Hub to answer a metadata request (``HF_HUB_ETAG_TIMEOUT``)."""
    from huggingface_hub import constants

    return float(constants.HF_HUB_ETAG_TIMEOUT)


def _files_in(files: list[str], where: str) -> str:
    """``"a, b, c, d and 3 more in <where>"``."""
    shown = ", ".join(files[:4]) + (f" and {len(files) - 4} more" if len(files) > 4 else "")
    return f"{shown} in {where}"


#: The end of a DownloadError's message: what a Python caller can do instead (the command line
#: says it in its own words, ``--model-dir DIR``).
CUSTOM_HINT = "or pass source='custom' with custom_path=<a complete model folder>"


def _hub_error(
    e: BaseException | None, need: str, repo_id: str = REPO_ID, other: str = CUSTOM_HINT
) -> DownloadError:
    """A DownloadError saying what was needed, why the Hub could not provide it, what to do
    (``other``: what else the caller can do)."""
    from huggingface_hub import constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    if e is None or isinstance(e, OfflineModeIsEnabled):
        why, hint = "downloads are disabled (HF_HUB_OFFLINE is set)", "unset HF_HUB_OFFLINE"
    else:
        endpoint = _endpoint() or constants.ENDPOINT
        cause = e
        while cause.__cause__ is not None:  # huggingface_hub wraps the network error
            cause = cause.__cause__
        detail = f"{type(e).__name__}: {e}"
        if cause is not e:
            detail += f" <- {type(cause).__name__}: {cause}"
        why = f"the Hub at {endpoint} could not provide it ({detail})"
        hint = "check the network and HF_ENDPOINT"
    return DownloadError(f"{repo_id}: needed {need}, but {why}; {hint}, {other}")


def _latest_commit(
    need: str, repo_id: str = REPO_ID, revision: str | None = None, other: str = CUSTOM_HINT
) -> tuple[str, list[str]]:
    """(commit hash of ``revision``, default ``main``; files in the repo), asked with a timeout
    so that an unreachable or silent Hub fails fast instead of hanging (``huggingface_hub``
    2.4's ``snapshot_download`` lists the repo with no timeout at all)."""
    import huggingface_hub
    from huggingface_hub import constants

    if constants.is_offline_mode():
        raise _hub_error(None, need, repo_id, other)
    try:
        info = huggingface_hub.HfApi(endpoint=_endpoint()).model_info(
            repo_id, revision=revision or constants.DEFAULT_REVISION, timeout=_timeout()
        )
    except Exception as e:  # connection, timeout, HTTP and Hub errors all end here
        raise _hub_error(e, need, repo_id, other) from e
    if not info.sha:
        raise _hub_error(ValueError("no commit hash in the repo info"), need, repo_id, other)
    return info.sha, [s.rfilename for s in info.siblings or []]


def _fetch(
    files: list[str],
    commit: str,
    force: set[str],
    where: str,
    repo_id: str = REPO_ID,
    other: str = CUSTOM_HINT,
    **dest: object,
) -> list[str]:
    """``hf_hub_download`` each file of ``repo_id`` at ``commit`` (in parallel) into ``dest``
    (``cache_dir=`` or ``local_dir=``); files in ``force`` are fetched even if present.
    Returns the paths.

    Every request is bounded: HEAD by ``etag_timeout``, GET by ``HF_HUB_DOWNLOAD_TIMEOUT`` between
    bytes (with the library's limited retries)."""
    import huggingface_hub

    def one(rel: str) -> str:
        try:
            return huggingface_hub.hf_hub_download(
                repo_id,
                rel,
                revision=commit,
                endpoint=_endpoint(),
                etag_timeout=_timeout(),
                force_download=rel in force,
                **dest,  # type: ignore[arg-type]
            )
        except Exception as e:
            raise _hub_error(e, _files_in([rel], where), repo_id, other) from e

    logger.info("fetching %d file(s) of %s@%s into %s", len(files), repo_id, commit[:8], where)
    with ThreadPoolExecutor(max_workers=max(1, min(_MAX_WORKERS, len(files)))) as pool:
        futures = [pool.submit(one, rel) for rel in files]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _write_ref(storage_folder: str, commit: str, revision: str = "main") -> None:
    """Record ``refs/<revision>`` -> ``commit`` in the Hub cache (its documented layout), so
    that the snapshot is found again, offline too. ``hf_hub_download`` pinned to a commit does
    not."""
    ref = os.path.join(storage_folder, "refs", *revision.split("/"))
    try:
        os.makedirs(os.path.dirname(ref), exist_ok=True)
        tmp = f"{ref}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(commit)
        os.replace(tmp, ref)
    except OSError as e:  # a read-only cache still works, it is only not found offline
        logger.warning("cannot record %s: %s", ref, e)


def _cached_snapshot(
    cache_dir: str | None, repo_id: str = REPO_ID, revision: str | None = None
) -> str | None:
    """The snapshot of ``revision`` (default ``main``) already in the Hub cache, without any
    network access."""
    import huggingface_hub

    try:
        return huggingface_hub.snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=ALLOW_PATTERNS,
            cache_dir=cache_dir,
            local_files_only=True,
        )
    except Exception:  # not cached, incomplete, unreadable: download
        return None


def download_huggingface(
    cache_dir: str | None = None,
    force_redownload: bool = False,
    verify: bool = True,
    sha256_map: Mapping[str, str] | None = None,
) -> str:
    """Snapshot of the Hub repo in the Hub cache (``cache_dir``, default the Hub's own); an
    existing complete snapshot is reused without network access unless ``force_redownload``.
    Files of the reference's patterns plus ``asset/spk_stat.pt`` are fetched; missing ones are
    added to an existing snapshot, corrupt ones fetched again. Returns the snapshot root."""
    from huggingface_hub import constants
    from huggingface_hub.utils import filter_repo_objects

    where = f"the Hub cache {cache_dir or constants.HF_HUB_CACHE}"
    table = SHA256_MAP if sha256_map is None else sha256_map
    need, force = f"a snapshot in {where}", set()
    cached = None if force_redownload else _cached_snapshot(cache_dir)
    if cached is not None:
        missing, corrupt = _bad_files(cached, verify, table)
        if not missing and not corrupt:
            logger.info("using the cached snapshot %s", cached)
            return cached
        need, force = _files_in(missing + corrupt, cached), set(corrupt)
    commit, repo_files = _latest_commit(need)
    files = sorted(filter_repo_objects(repo_files, allow_patterns=ALLOW_PATTERNS))
    if not files:
        raise DownloadError(f"{REPO_ID} on the Hub holds no file matching {ALLOW_PATTERNS}")
    if force_redownload:
        force = set(files)
    paths = _fetch(files, commit, force, where, cache_dir=cache_dir)
    root = _snapshot_root(paths[0], files[0])
    _write_ref(os.path.dirname(os.path.dirname(root)), commit)
    verify_model_root(root, verify, table)
    return root


def _snapshot_root(path: str, rel: str) -> str:
    """The snapshot folder of a file ``rel`` downloaded to ``path``."""
    return str(Path(path).parents[len(rel.split("/")) - 1])


def download_local(
    root: str | None = None,
    force_redownload: bool = False,
    verify: bool = True,
    sha256_map: Mapping[str, str] | None = None,
) -> str:
    """Complete a local model root from the Hub: fetch missing (and, with ``verify``, corrupt)
    files into it, or every file with ``force_redownload``; then verify. Returns the root."""
    root = os.path.abspath(root or os.getcwd())
    table = SHA256_MAP if sha256_map is None else sha256_map
    if force_redownload:
        missing, corrupt = [], _all_files(table)
    else:
        missing, corrupt = _bad_files(root, verify, table)
    if missing or corrupt:
        needed = missing + corrupt
        commit, _ = _latest_commit(_files_in(needed, root))
        _fetch(needed, commit, set(corrupt), root, local_dir=root)
    verify_model_root(root, verify, table)
    return root


_FOLDER_HINT = "or pass a local model folder"


def snapshot_repo(
    repo_id: str,
    revision: str | None = None,
    cache_dir: str | None = None,
    force: bool = False,
) -> str:
    """A snapshot of any Hub model repo (the files of :data:`ALLOW_PATTERNS`) in the Hub cache.

    A snapshot of ``revision`` (a branch, tag or commit; default ``main``) already in
    ``cache_dir`` (default: the Hub's cache) is reused without network access unless
    ``force``; otherwise the revision is resolved to a commit with a bounded request
    (``HF_HUB_ETAG_TIMEOUT``) and its files are fetched as :func:`download_huggingface` fetches
    them. Nothing is verified here (the caller loads the checkpoint with its own checks).
    Returns the snapshot folder.

    Raises:
        DownloadError: no such repo or revision, no matching file, or a Hub that is offline,
            unreachable or silent.
    """
    from huggingface_hub import constants
    from huggingface_hub.utils import filter_repo_objects

    if not force:
        cached = _cached_snapshot(cache_dir, repo_id, revision)
        if cached is not None:
            logger.info("using the cached snapshot %s", cached)
            return cached
    where = f"the Hub cache {cache_dir or constants.HF_HUB_CACHE}"
    need = f"a snapshot{f' of {revision}' if revision else ''} in {where}"
    commit, repo_files = _latest_commit(need, repo_id, revision, _FOLDER_HINT)
    files = sorted(filter_repo_objects(repo_files, allow_patterns=ALLOW_PATTERNS))
    if not files:
        raise DownloadError(f"{repo_id} on the Hub holds no file matching {ALLOW_PATTERNS}")
    force_set = set(files) if force else set()
    paths = _fetch(files, commit, force_set, where, repo_id, _FOLDER_HINT, cache_dir=cache_dir)
    root = _snapshot_root(paths[0], files[0])
    if revision != commit:  # a branch or tag: found again (offline too) through its ref
        _write_ref(os.path.dirname(os.path.dirname(root)), commit, revision or "main")
    return root


def fetch_file(filename: str, cache_dir: str | None = None) -> str:
    """One file of the official repo (such as ``asset/spk_stat.pt``) in the Hub cache.

    A copy already in ``cache_dir`` (default: the Hub's cache) is used without network access;
    otherwise ``main`` is resolved with a bounded request and the file fetched at that commit,
    as :func:`download_huggingface` does (``hf_hub_download`` alone would retry a dead Hub for
    half a minute).
    Returns its path.

    Raises:
        DownloadError: the file is not on the Hub, or the Hub is offline, unreachable or silent.
    """
    import huggingface_hub
    from huggingface_hub import constants

    try:
        return huggingface_hub.hf_hub_download(
            REPO_ID, filename, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # not cached (or unreadable): fetch it
        pass
    where = f"the Hub cache {cache_dir or constants.HF_HUB_CACHE}"
    need = _files_in([filename], where)
    commit, repo_files = _latest_commit(need)  # bounded: a dead Hub fails at once
    if filename not in repo_files:
        raise DownloadError(f"{REPO_ID}: needed {need}, but the repo holds no {filename}")
    path = _fetch([filename], commit, set(), where, cache_dir=cache_dir)[0]
    _write_ref(os.path.dirname(os.path.dirname(_snapshot_root(path, filename))), commit)
    return path


def resolve_model_root(
    source: str = "local",
    custom_path: str | None = None,
    force_redownload: bool = False,
    verify: bool = True,
    *,
    sha256_map: Mapping[str, str] | None = None,
) -> str:
    """The model root for ``source``, fetched and verified as needed; raises on failure.

    ``huggingface``: a snapshot in the Hub cache (``custom_path`` = cache dir); ``local``: the
    folder ``custom_path`` (default the current directory), completed from the Hub; ``custom``:
    ``custom_path`` as is. ``verify`` checks the hashes of ``sha256_map`` (default
    :data:`SHA256_MAP`); missing or corrupt files make ``local``/``huggingface`` fetch them.
    Raises :class:`AssetNotFoundError`, :class:`ChecksumMismatchError`, :class:`DownloadError`
    (Hub offline, unreachable or not answering within ``HF_HUB_ETAG_TIMEOUT`` seconds) or
    ``ValueError`` (bad arguments).
    """
    if source == "huggingface":
        return download_huggingface(custom_path, force_redownload, verify, sha256_map)
    if source == "local":
        return download_local(custom_path, force_redownload, verify, sha256_map)
    if source == "custom":
        if not custom_path:
            raise ValueError("source='custom' needs custom_path, the model root folder")
        root = os.path.abspath(custom_path)
        if not os.path.isdir(root):
            raise AssetNotFoundError(f"model folder not found: {root}")
        verify_model_root(root, verify, sha256_map)
        return root
    raise ValueError(f"unknown source {source!r}: use 'huggingface', 'local' or 'custom'")
