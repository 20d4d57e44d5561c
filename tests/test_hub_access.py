"""The Hub beyond the official snapshot: ``assets.snapshot_repo`` (any model repo, as
``Chat.from_pretrained`` needs) and ``assets.fetch_file`` (one file, as ``chattts speaker``
needs), with the real ``huggingface_hub`` code against the local Hub stub (tests/hub_stub.py)."""

from __future__ import annotations

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

from chattts import cli
from chattts.assets import fetch_file, snapshot_repo
from chattts.config import SPK_STAT
from chattts.errors import DownloadError
from chattts.voices.speaker import SpeakerStats, encode_speaker

OTHER = "someone/tts-finetune"
ASSET_FILES = sorted(
    p.relative_to(TINY).as_posix() for p in (TINY / "asset").rglob("*") if p.is_file()
)


@pytest.fixture
def other_hub(tmp_path: Path, point_hub) -> HubStub:
    """The tiny model served as another repo than the official one, plus a README."""
    stub = HubStub.from_folder(TINY, repo_id=OTHER)
    stub.files["README.md"] = b"# a fine-tune\n"
    with stub:
        point_hub(stub.url)
        yield stub


def same_files(root: str | Path) -> bool:
    return all((Path(root) / f).read_bytes() == (TINY / f).read_bytes() for f in ASSET_FILES)


# -- snapshot_repo -------------------------------------------------------------------------------


def test_snapshot_of_another_repo_then_reused_offline_then_forced(
    other_hub: HubStub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    cache = tmp_path / "cache"
    root = snapshot_repo(OTHER, None, str(cache), False)
    storage = cache / "models--someone--tts-finetune"
    assert Path(root) == storage / "snapshots" / other_hub.commit
    assert same_files(root) and not (Path(root) / "README.md").exists()
    assert other_hub.fetched() == ASSET_FILES
    assert (storage / "refs" / "main").read_text() == other_hub.commit
    # found again without any request, even offline
    other_hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert snapshot_repo(OTHER, None, str(cache), False) == root
    assert other_hub.requests == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    assert snapshot_repo(OTHER, None, str(cache), True) == root
    assert other_hub.fetched() == ASSET_FILES  # force: every file again


def test_snapshot_at_a_commit_and_at_an_unknown_revision(
    other_hub: HubStub, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    root = snapshot_repo(OTHER, other_hub.commit, str(cache), False)
    assert Path(root).name == other_hub.commit and same_files(root)
    assert not (cache / "models--someone--tts-finetune" / "refs").exists()  # a commit needs none
    other_hub.reset()
    assert snapshot_repo(OTHER, other_hub.commit, str(cache), False) == root
    assert other_hub.requests == []
    with pytest.raises(DownloadError, match=f"{OTHER}: needed a snapshot of v9"):
        snapshot_repo(OTHER, "v9", str(cache), False)


def test_snapshot_of_a_missing_repo_or_an_empty_one(tmp_path: Path, point_hub) -> None:
    stub = HubStub({"README.md": b"nothing to load\n"}, repo_id="someone/empty")
    with stub:
        point_hub(stub.url)
        with pytest.raises(DownloadError, match="nobody/nothing") as info:
            snapshot_repo("nobody/nothing", None, str(tmp_path / "c"), False)
        assert "local model folder" in str(info.value)
        with pytest.raises(DownloadError, match="no file matching"):
            snapshot_repo("someone/empty", None, str(tmp_path / "c"), False)


def test_snapshot_from_an_unreachable_or_silent_hub(
    tmp_path: Path, point_hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    point_hub(f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="127.0.0.1") as info:
        snapshot_repo(OTHER, None, str(tmp_path / "c"), False)
    assert isinstance(info.value, ConnectionError)
    assert time.monotonic() - start < 30  # no hang (not a benchmark)
    with silent_server() as endpoint:
        point_hub(endpoint)
        monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
        start = time.monotonic()
        with pytest.raises(DownloadError, match="Timeout"):
            snapshot_repo(OTHER, "main", str(tmp_path / "c"), False)
        assert time.monotonic() - start < 30


# -- fetch_file ----------------------------------------------------------------------------------


def test_fetch_file_gets_only_that_file_once(hub: HubStub, tmp_path: Path) -> None:
    cache = str(tmp_path / "cache")
    path = fetch_file(SPK_STAT, cache)
    assert Path(path).read_bytes() == (TINY / SPK_STAT).read_bytes()
    assert Path(path).is_relative_to(tmp_path / "cache" / "models--2Noise--ChatTTS")
    assert hub.fetched() == [SPK_STAT]
    hub.reset()
    assert fetch_file(SPK_STAT, cache) == path
    assert hub.requests == []  # cached: no request at all


def test_fetch_file_errors(
    hub: HubStub, tmp_path: Path, point_hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    with pytest.raises(DownloadError, match="asset/nothing.pt"):
        fetch_file("asset/nothing.pt", str(tmp_path / "c"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.reset()
    with pytest.raises(DownloadError, match="HF_HUB_OFFLINE"):
        fetch_file(SPK_STAT, str(tmp_path / "c"))
    assert hub.requests == []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    point_hub(f"http://127.0.0.1:{closed_port()}")
    start = time.monotonic()
    with pytest.raises(DownloadError, match="127.0.0.1"):
        fetch_file(SPK_STAT, str(tmp_path / "c"))
    assert time.monotonic() - start < 30
    with silent_server() as endpoint:
        point_hub(endpoint)
        monkeypatch.setattr(constants, "HF_HUB_ETAG_TIMEOUT", 1)
        start = time.monotonic()
        with pytest.raises(DownloadError, match=SPK_STAT):
            fetch_file(SPK_STAT, str(tmp_path / "c"))
        assert time.monotonic() - start < 30


@pytest.mark.usefixtures("restore_logger")
def test_speaker_from_the_hub_fetches_spk_stat_only(hub: HubStub, tmp_path: Path, capsys) -> None:
    cache = str(tmp_path / "cache")
    args = ["speaker", "--seed", "7", "--model-dir", cache, "--source", "huggingface"]
    assert cli.main(args) == 0
    expected = encode_speaker(SpeakerStats.from_file(str(TINY / SPK_STAT)).sample(7))
    assert capsys.readouterr().out.strip() == expected
    assert hub.fetched() == [SPK_STAT]
