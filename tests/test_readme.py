"""Every Python block of README.md runs, twice in a row, unchanged but for where the model
and the server are: ``X.load(...)`` becomes a load of the tiny test model,
``Chat.from_pretrained("2Noise/ChatTTS")`` opens the tiny model, and the OpenAI client's
``base_url`` points at a test server (whose API key is the README's ``"KEY"``). Each block
runs on its own (its own imports) in a temporary folder, as a reader would paste it.

The tiny model is given 160 positions (``max_position_embeddings``): random weights rarely
draw an end, and the defaults (2,048 code steps) are then lowered to what fits, as on any
checkpoint (docs/compat.md), which keeps the runs to seconds."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest
from test_server import Server

import chattts
from chattts.server import create_app

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
LOAD = re.compile(r"\b(\w+)\.load\([^()]*\)")
PRETRAINED = re.compile(r"Chat\.from_pretrained\([^()]*\)")
SERVER_URL = "http://127.0.0.1:8000/v1"


def readme_blocks() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return BLOCK.findall(f.read())


def for_tests(code: str, tiny: str, url: str) -> str:
    """``code`` pointed at the tiny model and the test server (comments left alone)."""
    load = f'load(source="custom", custom_path={tiny!r}, verify=False, device="cpu", '
    load += "raise_on_error=True)"
    lines = []
    for line in code.splitlines():
        if not line.lstrip().startswith("#"):
            line = LOAD.sub(lambda m: f"{m.group(1)}.{load}", line)
            line = PRETRAINED.sub(
                f'Chat.from_pretrained({tiny!r}, verify=False, device="cpu")', line
            )
            line = line.replace(SERVER_URL, url)
        lines.append(line)
    return "\n".join(lines)


def test_the_readme_has_the_blocks_this_test_rewrites():
    blocks = readme_blocks()
    assert len(blocks) >= 3
    assert any(LOAD.search(b) for b in blocks)
    assert any(PRETRAINED.search(b) for b in blocks)
    assert any(SERVER_URL in b for b in blocks)


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_root) -> str:
    """A copy of the tiny model with 160 positions."""
    root = tmp_path_factory.mktemp("readme-model")
    shutil.copytree(os.path.join(tiny_root, "asset"), root / "asset")
    path = root / "asset" / "gpt" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    path.write_text(json.dumps({**config, "max_position_embeddings": 160}), encoding="utf-8")
    return str(root)


@pytest.fixture(scope="module")
def server(model):
    chat = chattts.Chat()
    chat.load(source="custom", custom_path=model, verify=False, device="cpu", raise_on_error=True)
    srv = Server(create_app(chat, api_key="KEY"))
    yield srv
    srv.stop()


@pytest.mark.parametrize("index", range(len(readme_blocks())))
def test_readme_block_runs_twice(index, model, server, tmp_path, monkeypatch):
    code = for_tests(readme_blocks()[index], model, f"{server.url}/v1")
    assert "2Noise/ChatTTS" not in code.split("#")[0]  # nothing reaches the Hub
    monkeypatch.chdir(tmp_path)
    for run in range(2):
        namespace: dict = {"__name__": f"readme_block_{index}"}
        exec(compile(code, f"README.md block {index} (run {run + 1})", "exec"), namespace)
    written = sorted(p.name for p in tmp_path.iterdir())
    for name in re.findall(r"""["']([\w.-]+\.(?:wav|mp3|flac|opus))["']""", code):
        assert name in written, f"{name} was not written"
        assert (tmp_path / name).stat().st_size > 100
