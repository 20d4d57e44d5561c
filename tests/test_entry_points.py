"""Every entry point answers a user's mistake with one line, never a traceback:
``python -m chattts.server``, ``python -m chattts.webui`` and ``chattts serve``, run in a
subprocess as users run them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import ENV, MODEL, ROOT, one_error_line


def module(name: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", name, *args],
        cwd=ROOT,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("name", ["chattts.server", "chattts.webui"])
def test_a_missing_model_folder_is_one_line(name: str) -> None:
    line = one_error_line(module(name, "--model-dir", "/nonexistent"))
    assert line.endswith("model folder not found: /nonexistent")


def test_the_web_ui_without_a_reachable_hub_is_one_line(tmp_path: Path) -> None:
    offline = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}
    offline["HF_HUB_CACHE"] = str(tmp_path / "hf" / "hub")
    line = one_error_line(module("chattts.webui", env=offline))
    assert "2Noise/ChatTTS" in line


@pytest.mark.parametrize("entry", [("chattts.server",), ("chattts", "serve")])
def test_a_corrupt_voices_file_at_serve_is_one_line(tmp_path: Path, entry) -> None:
    bad = tmp_path / "voices.json"
    bad.write_text("{not json", encoding="utf-8")
    line = one_error_line(module(*entry, *MODEL, "--voices", str(bad), "--port", "0"))
    assert f"{bad}: not valid JSON" in line
