"""Shared fixtures: the tiny conformance model, its expected outputs, a loaded Chat."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading

import numpy as np
import pytest
from safetensors.torch import load_file

import chattts
import chattts.chat.facade
from chattts.voices import VoiceLibrary

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = os.path.join(HERE, "fixtures", "tiny")
# ONNX Runtime conversions of the test models go to a folder of this run, never the user's
# cache (subprocesses such as the CLI's inherit it)
os.environ.setdefault("CHATTTS_ONNX_CACHE", tempfile.mkdtemp(prefix="chattts-onnx-"))
# and the servers' narration jobs go to a folder of this run, never the user's (a server built
# without --data-dir would resume the jobs it finds there)
os.environ.setdefault("CHATTTS_DATA_DIR", tempfile.mkdtemp(prefix="chattts-jobs-"))


#: Test modules that run end to end: the command in subprocesses, the web UI in a browser, the
#: real NeMo / WeTextProcessing grammars.
E2E_MODULES = {"test_cli", "test_webui", "test_text_real", "test_entry_points"}
#: Fixtures that start a server on a socket (uvicorn) or a browser.
E2E_FIXTURES = {"server", "client", "page", "browser"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the end-to-end tests ``e2e`` (``pytest -m "not e2e"`` skips them)."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module else ""
        if module in E2E_MODULES or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def voice_library(tmp_path_factory) -> str:
    """The folder of every Chat's voice library (``Chat.voices``, the server's voices without
    ``--voices``): an empty temporary folder, never the user's own library."""
    folder = str(tmp_path_factory.mktemp("voice-library"))

    def library(path=None) -> VoiceLibrary:  # Chat(voices=PATH) still gets PATH
        return VoiceLibrary(folder if path is None else path)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(chattts.chat.facade, "VoiceLibrary", library)
        assert chattts.Chat().voices.path == folder
        yield folder


@pytest.fixture(scope="session")
def tiny_root() -> str:
    """The conformance model root (read-only: copy it before changing files)."""
    return TINY


@pytest.fixture(scope="session")
def cases() -> dict:
    with open(os.path.join(TINY, "expected", "cases.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def expected() -> dict:
    return load_file(os.path.join(TINY, "expected", "tensors.safetensors"))


@pytest.fixture()
def restore_logger():
    """cli.main() configures the "chattts" logger for a process: undo it afterwards."""
    log = logging.getLogger("chattts")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


def cli_main(capsys, *args: str) -> tuple[int, list[str]]:
    """``chattts ARGS`` run by cli.main() in this process: (exit status, stderr lines)."""
    from chattts import cli

    try:
        code = cli.main(list(args))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err.splitlines()


def finishes(call, seconds: float = 60.0):
    """``call()``'s result (or exception), run in a thread; fails if it is still blocked after
    ``seconds`` (a FIFO opened for reading blocks until a writer comes: for ever)."""
    out: list = []

    def run() -> None:
        try:
            out.append((True, call()))
        except BaseException as e:  # noqa: BLE001 - raised again below
            out.append((False, e))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), "blocked (a FIFO was opened)"
    ok, value = out[0]
    if not ok:
        raise value
    return value


def tiny_chat(**engine) -> chattts.Chat:
    """A Chat with the tiny model loaded on the CPU with the engine options ``engine``."""
    c = chattts.Chat()
    c.load(
        source="custom", custom_path=TINY, verify=False, device="cpu", raise_on_error=True, **engine
    )
    return c


@pytest.fixture(scope="session")
def chat() -> chattts.Chat:
    """A Chat with the tiny model loaded on the CPU (shared: tests must not unload it)."""
    return tiny_chat()


@pytest.fixture(scope="session")
def ort_chat() -> chattts.Chat:
    """The tiny model with its GPT on ONNX Runtime, float32 weights (shared)."""
    return tiny_chat(backend="onnxruntime")


@pytest.fixture(scope="session")
def ort_int8_chat() -> chattts.Chat:
    """The tiny model loaded with ``quantize="int8"`` on the CPU: ONNX Runtime, int8 (shared)."""
    return tiny_chat(quantize="int8")


@pytest.fixture(scope="session")
def spk(cases) -> str:
    return cases["speaker"]["spk_emb"]


@pytest.fixture()
def tiny_copy(tmp_path) -> str:
    """A writable copy of the tiny model root."""
    dst = tmp_path / "tiny"
    shutil.copytree(os.path.join(TINY, "asset"), dst / "asset")
    return str(dst)


def assert_close(actual, reference, name: str = "") -> None:
    """The conformance tolerance: max|a − b| ≤ 1e-4 · max|b| + 1e-6, shapes equal."""
    a = np.asarray(actual, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    err = float(np.abs(a - b).max()) if a.size else 0.0
    tol = 1e-4 * float(np.abs(b).max()) + 1e-6 if b.size else 1e-6
    assert err <= tol, f"{name}: max error {err} > {tol}"


def trim(wav) -> np.ndarray:
    """Trim leading and trailing samples with |x| ≤ 1e-5 (the fixture's comparison rule)."""
    wav = np.asarray(wav)
    loud = np.flatnonzero(np.abs(wav) > 1e-5)
    return wav[loud[0] : loud[-1] + 1] if loud.size else wav[:0]
