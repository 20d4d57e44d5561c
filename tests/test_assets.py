"""Asset layout, verification and the three download sources, with the real ``huggingface_hub``
code talking to a local stand-in of the Hub (tests/hub_stub.py) that serves the tiny model."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from hub_stub import (  # noqa: F401 (fixtures)
    TINY,
    HubStub,
    closed_port,
    hub_fixture,
    point_hub_fixture,
    silent_server,
)

import chattts.assets.hub as assets
from chattts.assets import REQUIRED_FILES, SHA256_MAP, resolve_model_root, sha256_file
from chattts.errors import AssetNotFoundError, ChecksumMismatchError, DownloadError

#: What source="huggingface" fetches from the stub: the asset files, not README/.gitattributes.
HUB_FILES = sorted(
    p.relative_to(TINY).as_posix() for p in (TINY / "asset").rglob("*") if p.is_file()
)


@pytest.fixture
def tiny_hashes(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SHA256_MAP replaced by the tiny model's own hashes (the official files it has)."""
    table = {rel: sha256_file(str(TINY / rel)) for rel in SHA256_MAP if (TINY / rel).is_file()}
    assert len(table) == len(SHA256_MAP) - 1  # the tiny tokenizer has no special_tokens_map.json
    monkeypatch.setattr(assets, "SHA256_MAP", table)
    return table


def copy_tiny(dst: Path) -> Path:
    shutil.copytree(TINY / "asset", dst / "asset")
    return dst


def same_as_tiny(root: str | Path, files: list[str] | tuple[str, ...] = REQUIRED_FILES) -> bool:
    return all((Path(root) / f).read_bytes() == (TINY / f).read_bytes() for f in files)


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))  # through the cache's symlink: the blob itself


# -- source="huggingface" ------------------------------------------------------------------------


def test_huggingface_downloads_into_cache_dir(hub: HubStub, tmp_path: Path, tiny_hashes) -> None:
    cache = tmp_path / "cache"
    root = resolve_model_root("huggingface", custom_path=str(cache))
    assert Path(root) == cache / "models--2Noise--ChatTTS" / "snapshots" / hub.commit
    assert (Path(root) / "asset/spk_stat.pt").is_file()
    assert same_as_tiny(root, HUB_FILES)
    assert not (Path(root) / "README.md").exists()  # only the reference's patterns + spk_stat
    assert hub.fetched() == HUB_FILES  # each file once
    assert (cache / "models--2Noise--ChatTTS" / "refs" / "main").read_text() == hub.commit


def test_huggingface_reuses_snapshot_then_force_redownloads(
    hub: HubStub, tmp_path: Path, tiny_hashes
) -> None:
    cache = str(tmp_path / "cache")
    root = resolve_model_root("huggingface", custom_path=cache)
    hub.reset()
    assert resolve_model_root("huggingface", custom_path=cache) == root
    assert hub.requests == []  # a complete, verified snapshot needs no network at all
    assert resolve_model_root("huggingface", custom_path=cache, force_redownload=True) == root
    assert hub.fetched() == HUB_FILES
    assert same_as_tiny(root, HUB_FILES)


def test_huggingface_default_cache_is_the_hub_cache(hub: HubStub, tmp_path: Path) -> None:
    root = resolve_model_root("huggingface", verify=False)
    assert Path(root).is_relative_to(tmp_path / "hf_home" / "hub")  # HF_HOME set by the fixture
    assert same_as_tiny(root)


def test_huggingface_completes_and_repairs_a_snapshot(
    hub: HubStub, tmp_path: Path, tiny_hashes
) -> None:
    cache = str(tmp_path / "cache")
    root = Path(resolve_model_root("huggingface", custom_path=cache))
    # a snapshot made by the reference has no spk_stat.pt; a file may also rot on disk
    (root / "asset/spk_stat.pt").unlink()
    corrupt(root / "asset/Embed.safetensors")
    hub.reset()
    assert resolve_model_root("huggingface", custom_path=cache) == str(root)
    assert hub.fetched() == ["asset/Embed.safetensors"]  # spk_stat's blob is still cached
    assert same_as_tiny(root, HUB_FILES)


def test_huggingface_wrong_hash_after_download(
    hub: HubStub, tmp_path: Path, tiny_hashes, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "0" * 64
    monkeypatch.setitem(tiny_hashes, "asset/Vocos.safetensors", wrong)
    with pytest.raises(ChecksumMismatchError) as info:
        resolve_model_root("huggingface", custom_path=str(tmp_path / "cache"))
    found = sha256_file(str(TINY / "asset/Vocos.safetensors"))
    assert "asset/Vocos.safetensors" in str(info.value)
    assert wrong in str(info.value) and found in str(info.value)


def test_huggingface_missing_on_the_hub_names_the_file(tmp_path: Path, point_hub) -> None:
    stub = HubStub.from_folder(TINY)
    del stub.files["asset/spk_stat.pt"]
    with stub:
        point_hub(stub.url)
        with pytest.raises(AssetNotFoundError, match="asset/spk_stat.pt"):
            resolve_model_root("huggingface", verify=False)
        with pytest.raises(DownloadError, match="asset/spk_stat.pt"):
            resolve_model_root("local", custom_path=str(tmp_path / "local"), verify=False)


def test_hf_endpoint_set_after_import_is_used(
    hub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    # huggingface_hub read HF_ENDPOINT at import: leave its copy on a dead port, set the env var
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setattr(constants, "ENDPOINT", dead)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", dead + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    root = resolve_model_root("huggingface", custom_path=str(tmp_path / "c"), verify=False)
    assert hub.fetched() == HUB_FILES and same_as_tiny(root)


# -- source="local" ------------------------------------------------------------------------------


def test_local_fills_an_empty_folder(hub: HubStub, tmp_path: Path, tiny_hashes) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    assert resolve_model_root("local", custom_path=str(folder)) == str(folder)
    assert hub.fetched() == sorted(REQUIRED_FILES)
    assert same_as_tiny(folder)


def test_local_default_root_is_the_current_directory(
    hub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_model_root("local", verify=False) == str(tmp_path)
    assert same_as_tiny(tmp_path)


def test_local_complete_folder_needs_no_network(hub: HubStub, tmp_path: Path, tiny_hashes) -> None:
    folder = copy_tiny(tmp_path)
    assert resolve_model_root("local", custom_path=str(folder)) == str(folder)
    assert hub.requests == []


def test_local_fetches_only_missing_and_corrupt_files(
    hub: HubStub, tmp_path: Path, tiny_hashes
) -> None:
    folder = copy_tiny(tmp_path)
    corrupt(folder / "asset/DVAE.safetensors")
    (folder / "asset/tokenizer/tokenizer.json").unlink()
    resolve_model_root("local", custom_path=str(folder))
    assert hub.fetched() == ["asset/DVAE.safetensors", "asset/tokenizer/tokenizer.json"]
    assert same_as_tiny(folder)
    assert_verifies(folder)


def test_local_refetches_a_file_it_downloaded_that_rotted(
    hub: HubStub, tmp_path: Path, tiny_hashes
) -> None:
    # huggingface_hub keeps download metadata in <folder>/.cache and would trust the old file
    folder = tmp_path / "model"
    resolve_model_root("local", custom_path=str(folder))
    corrupt(folder / "asset/gpt/model.safetensors")
    hub.reset()
    resolve_model_root("local", custom_path=str(folder))
    assert hub.fetched() == ["asset/gpt/model.safetensors"]
    assert_verifies(folder)


def test_local_corruption_is_ignored_without_verify(hub: HubStub, tmp_path: Path) -> None:
    folder = copy_tiny(tmp_path)
    corrupt(folder / "asset/DVAE.safetensors")
    resolve_model_root("local", custom_path=str(folder), verify=False)
    assert hub.requests == []


def test_local_force_redownload(hub: HubStub, tmp_path: Path, tiny_hashes) -> None:
    folder = copy_tiny(tmp_path)
    resolve_model_root("local", custom_path=str(folder), force_redownload=True)
    assert hub.fetched() == sorted(REQUIRED_FILES)


def assert_verifies(root: Path) -> None:
    assert resolve_model_root("custom", custom_path=str(root), verify=True) == str(root)


# -- source="custom" and verification -----------------------------------------------------------


def test_custom_missing_file_is_named(tmp_path: Path) -> None:
    folder = copy_tiny(tmp_path)
    (folder / "asset/Vocos.safetensors").unlink()
    with pytest.raises(AssetNotFoundError, match="asset/Vocos.safetensors") as info:
        resolve_model_root("custom", custom_path=str(folder), verify=False)
    assert isinstance(info.value, FileNotFoundError)


def test_custom_wrong_hash_names_file_and_both_hashes(tmp_path: Path, tiny_hashes) -> None:
    folder = copy_tiny(tmp_path)
    corrupt(folder / "asset/Decoder.safetensors")
    found = sha256_file(str(folder / "asset/Decoder.safetensors"))
    with pytest.raises(ChecksumMismatchError) as info:
        resolve_model_root("custom", custom_path=str(folder))
    msg = str(info.value)
    assert "asset/Decoder.safetensors" in msg
    assert tiny_hashes["asset/Decoder.safetensors"] in msg and found in msg


def test_official_hashes_reject_the_tiny_model(tmp_path: Path) -> None:
    folder = copy_tiny(tmp_path)
    with pytest.raises(AssetNotFoundError, match="special_tokens_map.json"):
        resolve_model_root("custom", custom_path=str(folder))  # official layout: it is listed
    (folder / "asset/tokenizer/special_tokens_map.json").write_text("{}")
    with pytest.raises(ChecksumMismatchError) as info:
        resolve_model_root("custom", custom_path=str(folder))
    rel = os.path.relpath(info.value.path, folder)
    assert info.value.expected == SHA256_MAP[rel]
    assert info.value.found == sha256_file(info.value.path)


def test_verify_false_accepts_the_tiny_model() -> None:
    assert resolve_model_root("custom", custom_path=str(TINY), verify=False) == str(TINY)


def test_sha256_map_argument(hub: HubStub, tmp_path: Path) -> None:
    # what Chat(…).sha256_map can pass instead of the module's table
    dvae = "asset/DVAE.safetensors"
    table = {dvae: sha256_file(str(TINY / dvae))}
    assert resolve_model_root("custom", custom_path=str(TINY), sha256_map=table) == str(TINY)
    with pytest.raises(ChecksumMismatchError, match=dvae):
        resolve_model_root("custom", custom_path=str(TINY), sha256_map={dvae: "0" * 64})
    folder = copy_tiny(tmp_path)
    corrupt(folder / dvae)
    resolve_model_root("local", custom_path=str(folder), sha256_map=table)
    assert hub.fetched() == [dvae]


def test_custom_and_source_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="custom_path"):
        resolve_model_root("custom")
    with pytest.raises(AssetNotFoundError, match="nowhere"):
        resolve_model_root("custom", custom_path=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="unknown source"):
        resolve_model_root("s3", custom_path=str(TINY))


# -- a Hub that cannot be used -------------------------------------------------------------------


@pytest.mark.parametrize("source", ["huggingface", "local"])
def test_unreachable_hub_fails_fast(source: str, tmp_path: Path, point_hub) -> None:
    point_hub(f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="127.0.0.1") as info:
        resolve_model_root(source, custom_path=str(tmp_path / "m"))
    assert time.monotonic() - start < 30  # no hang (not a benchmark)
    assert isinstance(info.value, ConnectionError)


@pytest.mark.parametrize("source", ["huggingface", "local"])
def test_silent_hub_times_out(
    source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point_hub
) -> None:
    from huggingface_hub import constants

    with silent_server() as endpoint:
        point_hub(endpoint)
        monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)  # env HF_HUB_ETAG_TIMEOUT=1
        start = time.monotonic()
        with pytest.raises(DownloadError, match="Timeout"):
            resolve_model_root(source, custom_path=str(tmp_path / "m"))
        assert time.monotonic() - start < 30  # no hang (not a benchmark)


@pytest.mark.parametrize("source", ["huggingface", "local"])
def test_offline_without_files_is_a_clear_error(
    source: str, hub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE") as info:
        resolve_model_root(source, custom_path=str(tmp_path / "m"))
    # says what was needed: the snapshot, or the files of the local folder
    assert ("snapshot" if source == "huggingface" else "asset/gpt/config.json") in str(info.value)
    assert hub.requests == []


def test_offline_reuses_a_cached_snapshot(
    hub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_hashes
) -> None:
    from huggingface_hub import constants

    cache = str(tmp_path / "cache")
    root = resolve_model_root("huggingface", custom_path=cache)
    hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_model_root("huggingface", custom_path=cache) == root
    assert hub.requests == []
