"""The ``chattts`` command, run the way users run it: in a subprocess, on the tiny model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import cli_main

from chattts import cli
from chattts.audio import load_audio
from chattts.voices.speaker import SpeakerStats, decode_speaker, encode_speaker

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny"
MODEL = ["--model-dir", str(TINY), "--no-verify"]
FAST = [*MODEL, "--max-new-token", "16", "--manual-seed", "1"]
SCRIPT = Path(sys.executable).parent / "chattts"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("CHATTTS_VOICES", None)


#: cli.main() configures the "chattts" logger: every test here undoes it.
pytestmark = pytest.mark.usefixtures("restore_logger")


def chattts(*args: str, cwd: Path | None = None, script: bool = False) -> subprocess.Popen:
    cmd = [str(SCRIPT)] if script else [sys.executable, "-m", "chattts"]
    return subprocess.Popen(
        [*cmd, *args], cwd=cwd or ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(proc: subprocess.Popen, timeout: float = 600) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err.decode())


def run(*args: str, **kw) -> subprocess.CompletedProcess:
    return finish(chattts(*args, **kw))


def one_error_line(result: subprocess.CompletedProcess, code: int = 1) -> str:
    assert result.returncode == code, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("chattts") and "error:" in lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """The three runs that load the model, started together so that they overlap."""
    d = tmp_path_factory.mktemp("cli")
    (d / "voices.json").write_text(json.dumps({"alice": {"seed": 3}, "bob": 4}))
    procs = {
        # a named voice (seed 3), one text, not streamed, to stdout
        "alone": chattts(
            "say",
            "hello world",
            "-o",
            "-",
            "--format",
            "wav",
            "--voices",
            "voices.json",
            "--voice",
            "alice",
            "--no-refine",
            *FAST,
            cwd=d,
        ),
        # the same text first, streamed and joined with another, same voice by seed
        "joined": chattts(
            "say",
            "hello world",
            "second text",
            "-o",
            "joined.wav",
            "--join",
            "--gap",
            "0.5",
            "--stream",
            "--seed",
            "3",
            "--no-refine",
            *FAST,
            cwd=d,
        ),
        # the console script, one file per text, refine on
        "files": chattts(
            "say",
            "one",
            "two",
            "-o",
            "out.mp3",
            "--refine",
            "--refine-max-new-token",
            "8",
            *FAST,
            cwd=d,
            script=True,
        ),
    }
    results = {name: finish(p) for name, p in procs.items()}
    for name, r in results.items():
        assert r.returncode == 0, (name, r.stderr)
    return d, results


def test_one_file_per_text_through_the_console_script(synth):
    d, results = synth
    assert results["files"].stdout.decode().split() == ["out_0.mp3", "out_1.mp3"]
    assert not (d / "out.mp3").exists()
    for name in ("out_0.mp3", "out_1.mp3"):
        assert (d / name).read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
        wav = load_audio(d / name)  # (the tiny model's refined text can be short)
        assert wav.size > 0 and np.abs(wav).max() > 0


def test_stream_join_voices_and_stdout_give_the_same_audio(synth):
    d, results = synth
    assert results["alone"].stdout[:4] == b"RIFF"
    alone, joined = load_audio(results["alone"].stdout), load_audio(d / "joined.wav")
    n, gap = alone.size, 12000
    assert n > 2000 and joined.size > n + gap
    # the voice named alice is seed 3; streaming writes exactly what the whole file holds
    np.testing.assert_allclose(joined[:n], alone, atol=1e-4)
    assert np.all(joined[n : n + gap] == 0)
    assert np.abs(joined[n + gap :]).max() > 0
    # the streamed WAV's header got its real sizes when the file was finished
    data = (d / "joined.wav").read_bytes()
    assert int.from_bytes(data[40:44], "little") == len(data) - 44
    assert results["joined"].stdout.decode().split() == ["joined.wav"]


def test_quiet_without_verbose(synth):
    _, results = synth
    assert results["files"].stderr == "" and results["joined"].stderr == ""


def test_speaker_is_deterministic_and_is_the_seeds_voice(capsys):
    a = run("speaker", "--seed", "7", "--model-dir", str(TINY))
    assert a.returncode == 0 and a.stderr == "", a.stderr
    spk = a.stdout.decode().strip()
    # the same string again, in this process; another seed, another voice
    assert cli.main(["speaker", "--seed", "7", *MODEL]) == 0
    assert capsys.readouterr().out.strip() == spk
    assert cli.main(["speaker", "--seed", "8", "--model-dir", str(TINY)]) == 0
    other = capsys.readouterr().out.strip()
    stats = SpeakerStats.from_file(str(TINY / "asset" / "spk_stat.pt"))
    assert spk == encode_speaker(stats.sample(7)) and other == encode_speaker(stats.sample(8))
    assert other != spk and decode_speaker(spk).numel() == stats.hidden_size


def test_verbose_flag_logs_info(capsys):
    assert cli.main(["-v", "download", "--source", "custom", *MODEL]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(TINY)
    assert "chattts: INFO:" in err and str(TINY) in err
    assert cli.main(["download", "--source", "custom", *MODEL]) == 0
    assert capsys.readouterr().err == ""


def test_convert_ahead_of_time_then_say_uses_it(tmp_path):
    cache = tmp_path / "onnx"
    first = run("convert", *MODEL, "--cache-dir", str(cache))
    assert first.returncode == 0, first.stderr
    graph = Path(first.stdout.decode().strip())
    assert graph.is_file() and graph.parent.parent == cache
    assert "converting" in first.stderr and "written" in first.stderr
    again = run("convert", *MODEL, "--cache-dir", str(cache))
    assert again.stdout == first.stdout and "converting" not in again.stderr
    out = tmp_path / "a.wav"
    env = {**ENV, "CHATTTS_ONNX_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "chattts", "-v", "say", "hello", "-o", str(out), *MODEL]
    cmd += ["--quantize", "int8", "--no-refine", "--max-new-token", "16", "--manual-seed", "1"]
    said = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert said.returncode == 0, said.stderr
    assert "ONNX Runtime" in said.stderr and "converting" not in said.stderr
    assert out.stat().st_size > 44


def test_mistakes_give_one_line(tmp_path):
    # the tiny model is not the official checkpoint: with verification on, a hash differs
    root = tmp_path / "model"
    for src in TINY.rglob("*"):
        if src.is_file():
            dst = root / src.relative_to(TINY)
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src)
    (root / "asset" / "tokenizer" / "special_tokens_map.json").write_text("{}")
    cases = [
        (["say", "hi", "--bogus"], 2, ["--bogus"]),
        (["say", "hi", "--model-dir", "no/such/folder"], 1, ["model folder not found"]),
        (["say", "hi", "--spk", "not a speaker", *MODEL], 1, ["invalid speaker string"]),
        (["say", "hi", "--model-dir", str(root)], 1, ["SHA256 mismatch", "--no-verify"]),
    ]
    procs = [chattts(*args) for args, _, _ in cases]  # together, so that they overlap
    for proc, (_, code, needles) in zip(procs, cases, strict=True):
        line = one_error_line(finish(proc), code)
        assert all(n in line for n in needles), line


@pytest.mark.parametrize(
    "args, code, needle",
    [
        (["say", "hi", "--bogus"], 2, "--bogus"),
        (["say"], 2, "text"),
        (["frobnicate"], 2, "frobnicate"),
        ([], 2, "COMMAND"),
        (["say", "hi", "--speed", "11"], 2, "--speed"),
        (["say", "hi", "--seed", "1", "--spk", "x"], 2, "not allowed"),
        (["say", "hi", "--gap", "soon"], 2, "--gap"),
        (["speaker", "--seed", "x"], 2, "--seed"),
        (["serve", "--port", "http"], 2, "--port"),
        (["serve", "--max-batch", "0"], 2, "--max-batch"),
        (["say", "hi", "--top-p", "1.5"], 2, "--top-p"),
        (["say", "hi", "--max-new-token", "-3"], 2, "--max-new-token"),
        (["say", "hi", "--model-dir", "no/such/folder"], 1, "model folder not found"),
        (["say", "hi", "--source", "custom"], 1, "--model-dir"),
        (["speaker", "--seed", "1", "--model-dir", "no/such/folder"], 1, "not found"),
        (["speaker", "--seed", "1", "--model-dir", str(TINY / "asset")], 1, "spk_stat.pt"),
        (["serve", "--model-dir", "no/such/folder"], 1, "model folder not found"),
        (["webui", "--model-dir", "no/such/folder"], 1, "model folder not found"),
        (["say", "hi", "-o", "out.xyz", *MODEL], 1, "suffix"),
        (["say", "hi", "--format", "ogg-vorbis", *MODEL], 1, "unknown audio format"),
        (["say", "hi", "-o", "no/such/dir/out.wav", *MODEL], 1, "output folder not found"),
        (["say", "hi", "--spk", "not a speaker", *MODEL], 1, "invalid speaker string"),
        (["say", "hi", "--voice", "alice", *MODEL], 1, "--voices"),
        (["say", "hi", "--voices", "no/voices.json", "--voice", "a", *MODEL], 1, "voices"),
        (["say", "   ", *MODEL], 1, "nothing to speak"),
        (["say", "a", "b", "-o", "-", *MODEL], 1, "--join"),
        (["say", "hi", "--stream", "-o", "x.m4a", *MODEL], 1, "m4a"),
        (["download", "--source", "custom"], 1, "--model-dir"),
    ],
)
def test_mistakes_give_one_line_in_process(capsys, args, code, needle):
    status, err = cli_main(capsys, *args)
    assert status == code and len(err) == 1, err
    assert err[0].startswith("chattts") and "error:" in err[0] and needle in err[0], err


def test_unknown_voice_names_the_known_ones(capsys, tmp_path):
    (tmp_path / "v.json").write_text('{"alice": 1, "bob": 2}')
    status, err = cli_main(
        capsys, "say", "hi", "--voices", str(tmp_path / "v.json"), "--voice", "carol", *MODEL
    )
    assert status == 1 and len(err) == 1 and "alice, bob" in err[0]


# ---- in process: voices files, and serve/webui hand-over -------------------------------------


def test_load_voices_from_a_file_and_a_folder(tmp_path):
    spk = encode_speaker(SpeakerStats.from_file(str(TINY / "asset" / "spk_stat.pt")).sample(1))
    f = tmp_path / "voices.json"
    f.write_text(json.dumps({"a": 1, "b": {"seed": 2}, "c": {"spk": spk}, "d": spk}))
    assert cli.load_voices(f) == {"a": 1, "b": 2, "c": spk, "d": spk}
    folder = tmp_path / "voices"
    folder.mkdir()
    (folder / "x.json").write_text('{"seed": 5}')
    (folder / "y.txt").write_text(spk + "\n")
    (folder / "README.md").write_text("ignored")
    assert cli.load_voices(folder) == {"x": 5, "y": spk}


@pytest.mark.parametrize(
    "content, needle",
    [
        ("[1, 2]", "JSON object"),
        ("{not json", "not valid JSON"),
        ('{"a": {"seed": 1, "spk": "x"}}', "exactly one"),
        ('{"a": 1.5}', "must be a seed"),
        ('{"a": true}', "must be a seed"),
    ],
)
def test_bad_voices_files(tmp_path, content, needle):
    f = tmp_path / "v.json"
    f.write_text(content)
    with pytest.raises(cli.UsageError, match=needle):
        cli.load_voices(f)


def test_serve_and_webui_hand_their_options_to_the_app_modules(monkeypatch):
    seen = {}
    for name in ("server", "webui"):
        mod = types.ModuleType(f"chattts.{name}")
        mod.main = lambda args, name=name: seen.setdefault(name, args) and 0
        monkeypatch.setitem(sys.modules, f"chattts.{name}", mod)
    serve = "--host 0.0.0.0 --port 9000 --api-key k --voices v.json --max-batch 4"
    serve += " --max-new-token 64 --batch-wait-ms 5 --device cpu --dtype bfloat16 --quantize int8"
    assert cli.main(["serve", *MODEL, *serve.split()]) == 0
    expected = dict(
        model_dir=str(TINY),
        source=None,
        verify=False,
        host="0.0.0.0",
        port=9000,
        api_key="k",
        voices="v.json",
        max_batch=4,
        max_new_token=64,
        batch_wait_ms=5.0,
        device="cpu",
        dtype="bfloat16",
        quantize="int8",
    )
    assert {k: getattr(seen["server"], k) for k in expected} == expected
    assert cli.main(["webui", *MODEL, "--port", "7000", "--source", "custom"]) == 0
    expected = dict(
        model_dir=str(TINY), source="custom", verify=False, host="127.0.0.1", port=7000, device=None
    )
    assert {k: getattr(seen["webui"], k) for k in expected} == expected


def test_missing_app_module_is_one_line(monkeypatch, capsys):
    def missing(name, *a, **k):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(cli.apps.importlib, "import_module", missing)
    assert cli.main(["serve", *MODEL]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "chattts.server is missing" in err[0]

    def no_fastapi(name, *a, **k):
        raise ModuleNotFoundError("No module named 'fastapi'", name="fastapi")

    monkeypatch.setattr(cli.apps.importlib, "import_module", no_fastapi)
    assert cli.main(["webui"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "pip install 'chattts[webui]'" in err[0]
