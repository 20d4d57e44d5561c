"""One way to open a model: the model options every command parses, the LoadOptions they give,
and open_chat; the one vocabulary of errors."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

import pytest

from chattts import errors
from chattts.cli.args import (
    ServerOptions,
    add_load_arguments,
    add_server_arguments,
    load_options,
    open_chat,
    server_options,
)
from chattts.errors import ChatTTSError, UsageError
from chattts.options import EngineOptions, LoadOptions

TINY = Path(__file__).parent / "fixtures" / "tiny"


def parse(*argv: str, engine: bool = True) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_load_arguments(p, engine=engine)
    return p.parse_args(list(argv))


def test_default_source_rule_and_flags() -> None:
    assert load_options(parse()) == LoadOptions(source="huggingface")
    opts = load_options(parse("--model-dir", str(TINY), "--no-verify", "--device", "cpu"))
    assert (opts.source, opts.custom_path, opts.verify, opts.device) == (
        "custom",
        str(TINY),
        False,
        "cpu",
    )
    # --source wins; a local folder need not exist yet (it is filled from the Hub)
    opts = load_options(parse("--source", "local", "--model-dir", "not/yet"))
    assert (opts.source, opts.custom_path) == ("local", "not/yet")


def test_engine_options_and_their_defaults() -> None:
    args = parse("--dtype", "bfloat16", "--compile", "--backend", "torch")
    assert load_options(args).engine == EngineOptions(
        dtype="bfloat16", compile=True, backend="torch"
    )
    assert load_options(parse("--quantize", "int8")).engine.quantize == "int8"
    # commands without engine options (speaker, download) get the engine's defaults
    assert load_options(parse(engine=False)).engine == EngineOptions()
    with pytest.raises(SystemExit):
        parse("--backend", "vllm")


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--source", "custom"], "--model-dir"),
        (["--model-dir", "no/such/folder"], "model folder not found"),
        (["--quantize", "int8", "--dtype", "float16"], "--dtype float32"),
    ],
)
def test_mistakes_are_usage_errors(argv: list[str], needle: str) -> None:
    with pytest.raises(UsageError, match=needle) as info:
        load_options(parse(*argv))
    assert isinstance(info.value, ValueError)


def test_options_round_trip_through_load_keywords() -> None:
    opts = load_options(parse("--model-dir", str(TINY), "--no-verify", "--quantize", "int8"))
    assert LoadOptions.from_kwargs(**opts.as_kwargs()) == opts


def test_server_arguments_bound_their_numbers() -> None:
    p = argparse.ArgumentParser()
    add_server_arguments(p)
    args = p.parse_args(["--max-queue", "3", "--port", "9"])
    assert (args.max_queue, args.port, args.max_batch) == (3, 9, 8)
    assert p.parse_args([]).max_queue == 256
    for bad in (["--max-queue", "0"], ["--port", "70000"], ["--max-batch", "x"]):
        with pytest.raises(SystemExit):
            p.parse_args(bad)


def test_server_options_have_one_set_of_defaults_and_one_check(monkeypatch) -> None:
    monkeypatch.delenv("CHATTTS_API_KEY", raising=False)
    monkeypatch.delenv("CHATTTS_VOICES", raising=False)
    monkeypatch.delenv("CHATTTS_DATA_DIR", raising=False)
    p = argparse.ArgumentParser()
    add_server_arguments(p)
    defaults = ServerOptions()
    assert server_options(p.parse_args([])) == defaults == server_options(argparse.Namespace())
    got = server_options(p.parse_args(["--max-batch", "3", "--host", "0.0.0.0", "--voices", "v"]))
    assert (got.max_batch, got.host, got.voices, got.port) == (3, "0.0.0.0", "v", defaults.port)
    assert got.scheduling == "continuous" and got.max_queue == defaults.max_queue
    assert server_options(p.parse_args(["--scheduling", "static"])).scheduling == "static"
    with pytest.raises(UsageError, match="--scheduling"):
        ServerOptions(scheduling="eventually")
    for bad in ("max_batch", "max_queue"):  # a Namespace made by hand skips argparse's bounds
        with pytest.raises(UsageError, match=f"--{bad.replace('_', '-')} must be at least 1"):
            server_options(argparse.Namespace(**{bad: 0}))


def test_open_chat_loads_the_tiny_model() -> None:
    opts = load_options(parse("--model-dir", str(TINY), "--no-verify", "--device", "cpu"))
    chat = open_chat(opts)
    assert chat.has_loaded()
    with pytest.raises(errors.AssetError):  # verified: the tiny model is not the official one
        open_chat(LoadOptions(source="custom", custom_path=str(TINY), device="cpu"))


# ---- one vocabulary of errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "module, name",
    [
        ("chattts.cli", "UsageError"),
        ("chattts.audio", "AudioError"),
        ("chattts.audio", "AudioFileNotFoundError"),
        ("chattts.dia.script", "ScriptError"),
        ("chattts.dia.script", "ScriptWarning"),
        ("chattts.server", "MissingDependencyError"),
        ("chattts.webui", "MissingDependencyError"),
        ("chattts.text", "TextError"),
    ],
)
def test_old_import_paths_give_the_errors_module_classes(module: str, name: str) -> None:
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_every_error_is_a_chattts_error_with_its_builtin_base() -> None:
    bases = {
        "UsageError": ValueError,
        "VoicesError": ValueError,
        "MissingDependencyError": ImportError,
        "AudioFileNotFoundError": FileNotFoundError,
        "JobFailed": RuntimeError,
        "QueueFullError": RuntimeError,
        "BackendUnavailable": RuntimeError,
        "RequestError": ValueError,
        "UnsupportedOptionError": ValueError,
        "DownloadError": ConnectionError,
        "SsmlError": ValueError,
    }
    for name in errors.__all__:
        cls = getattr(errors, name)
        if issubclass(cls, Warning):
            assert issubclass(cls, UserWarning), name
            continue
        assert issubclass(cls, ChatTTSError), name
        assert issubclass(cls, bases.get(name, Exception)), name
    e = errors.RequestError("bad voice", "voice", "voice_not_found", status=404)
    assert e.status == 404 and e.body()["error"]["param"] == "voice"
