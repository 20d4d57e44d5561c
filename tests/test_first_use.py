"""What a new user meets first: a failed load that explains itself without any logging set up,
warnings that name content only, defaults that fit the model, and the command line's wording
(``--version``, ``-o DIR/``, ``--model-dir`` offline, a short speaker string with ``-v``)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest

import chattts
from chattts import cli
from chattts.errors import LoadFailedWarning, NotLoadedError, ParameterError
from chattts.text import Normalizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---- a load that explains itself ---------------------------------------------------------


def test_failed_load_explains_itself_with_logging_unconfigured(tmp_path):
    """A fresh interpreter, no logging set up: the reason reaches stderr, load() still returns
    False, and the next call's NotLoadedError repeats the reason."""
    script = textwrap.dedent(
        f"""
        import chattts
        chat = chattts.Chat()
        ok = chat.load(source="custom", custom_path={str(tmp_path / "nowhere")!r}, verify=False)
        print("returned", ok)
        try:
            chat.infer("Hello.")
        except chattts.errors.NotLoadedError as e:
            print("then:", e)
        """
    )
    env = {**os.environ, "PYTHONPATH": ROOT}
    r = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert r.returncode == 0, r.stderr
    assert "returned False" in r.stdout
    assert "LoadFailedWarning: Chat.load() failed and returned False" in r.stderr
    assert "nowhere" in r.stderr  # the reason itself
    then = [line for line in r.stdout.splitlines() if line.startswith("then:")]
    assert len(then) == 1 and "the last Chat.load() failed" in then[0] and "nowhere" in then[0]


def test_failed_load_warning_points_at_the_callers_line(tmp_path):
    chat = chattts.Chat()
    with pytest.warns(LoadFailedWarning, match="unknown source") as record:
        assert chat.load(source="nowhere") is False
    assert record[0].filename == __file__
    with pytest.raises(NotLoadedError, match="unknown source"):
        chat.sample_random_speaker()
    with pytest.warns(LoadFailedWarning) as record:
        chat.load_options(chattts.LoadOptions("custom", str(tmp_path)), raise_on_error=False)
    assert record[0].filename == __file__
    chat.unload()  # forgotten: the plain message again
    with pytest.raises(NotLoadedError, match=r"call Chat.load\(\) first"):
        chat.sample_random_speaker()


def test_successful_load_forgets_an_earlier_failure(tiny_root):
    chat = chattts.Chat()
    with pytest.warns(LoadFailedWarning):
        chat.load(source="custom", custom_path="/nonexistent/model", verify=False)
    assert chat.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
    assert isinstance(chat.sample_random_speaker(seed=1), str)


def test_chat_takes_its_voice_library(tmp_path):
    chat = chattts.Chat(voices=str(tmp_path / "voices"))
    assert chat.voices.path == str(tmp_path / "voices")
    lib = chattts.VoiceLibrary(str(tmp_path / "other"))
    assert chattts.Chat(voices=lib).voices is lib


# ---- warnings that mean something --------------------------------------------------------


def removed_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("removed")]


@pytest.mark.parametrize(
    "text",
    [
        "It's Tom's book, isn't it?",
        'He said "hello" — and left… (quietly) [sic] «oui» ¿qué?',
        "‘Single’ and “double” quotes; a/b is content, ' is not",
        "👍🏽 thumbs",  # the skin tone is a modifier, the thumb is content
    ],
)
def test_punctuation_is_dropped_quietly_content_is_named(caplog, text):
    n = Normalizer(builtin_normalizers=False)
    with caplog.at_level(logging.DEBUG, logger="chattts"):
        out = n(text)
    assert "'" not in out and '"' not in out
    named = " ".join(removed_warnings(caplog))
    for c in text:
        shown = f"{c!r} (U+{ord(c):04X})"
        if c in "/👍":
            assert shown in named
        elif c in "'\"—…()«»¿?‘’“”[]\U0001f3fd":
            assert shown not in named


def test_apostrophes_with_the_real_english_normaliser_warn_nothing(chat, caplog):
    with caplog.at_level(logging.WARNING, logger="chattts"):
        chat.pipeline.prepare("It's a dog's life, isn't it? Don't worry.")
    assert removed_warnings(caplog) == []


def test_cli_logs_a_short_speaker_string(tiny_root, tmp_path, capsys, restore_logger):
    out = tmp_path / "a.wav"
    args = ["-v", "say", "Hi.", "--seed", "4", "-o", str(out), "--model-dir", tiny_root]
    assert cli.main([*args, "--no-verify", "--no-refine", "--max-new-token", "8"]) == 0
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "speaker (seed 4" in x)
    assert len(line) < 120 and line.endswith("…"), line
    assert out.stat().st_size > 44


# ---- defaults that fit the model ---------------------------------------------------------


@pytest.fixture()
def short_model(tiny_copy) -> str:
    """The tiny model with 48 positions (the default max_new_token 2048 cannot fit)."""
    path = os.path.join(tiny_copy, "asset", "gpt", "config.json")
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    config["max_position_embeddings"] = 48
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    return tiny_copy


@pytest.mark.parametrize("engine", [{}, {"quantize": "int8"}])
def test_max_new_token_fits_the_models_positions(short_model, caplog, engine):
    chat = chattts.Chat()
    chat.load(
        source="custom",
        custom_path=short_model,
        verify=False,
        device="cpu",
        raise_on_error=True,
        **engine,
    )
    assert chat.config.gpt.max_position_embeddings == 48
    params = chattts.InferCodeParams(manual_seed=1, show_tqdm=False, min_new_token=40)
    refine = chattts.RefineTextParams(manual_seed=1, show_tqdm=False)
    with caplog.at_level(logging.INFO, logger="chattts"):
        (wav,) = chat.infer(["Hi there."], params_infer_code=params, params_refine_text=refine)
    notes = [r.getMessage() for r in caplog.records if "lowered to" in r.getMessage()]
    assert any(n.startswith("code pass: max_new_token 2048 lowered to") for n in notes), notes
    assert any(n.startswith("refine pass: max_new_token 384 lowered to") for n in notes), notes
    # min_new_token 40 forbids an early end: the code pass ran to the lowered limit
    steps = int(notes[-1].split("lowered to ")[1].split(",")[0])
    assert 0 < steps < 48
    assert wav.size <= (2 * steps - 1) * 256


def test_a_prompt_longer_than_the_model_is_a_clear_error(short_model):
    chat = chattts.Chat()
    chat.load(source="custom", custom_path=short_model, verify=False, raise_on_error=True)
    text = "word " * 60
    with pytest.raises(ParameterError, match="max_position_embeddings.*shorten the text"):
        chat.infer([text], skip_refine_text=True, params_infer_code=chattts.InferCodeParams())


# ---- the command line's wording ----------------------------------------------------------


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"chattts {chattts.__version__}"


@pytest.mark.parametrize("suffix", ["/", ""])
def test_output_folder_is_a_directory(tmp_path, capsys, suffix, restore_logger):
    folder = str(tmp_path) + suffix
    assert cli.main(["say", "Hello.", "-o", folder, "--model-dir", "/nonexistent"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"chattts: error: {folder} is a directory: give a file name, e.g. -o "
        f"{os.path.join(str(tmp_path), 'output.wav')}"
    ]


def test_offline_hint_speaks_the_command_lines_words(tmp_path, capsys, monkeypatch, restore_logger):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    args = ["say", "Hi.", "-o", str(tmp_path / "a.wav"), "--source", "huggingface"]
    assert cli.main([*args, "--model-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chattts: error: ")
    assert "--model-dir DIR" in err[0] and "source='custom'" not in err[0]
    assert "HF_HUB_OFFLINE" in err[0]


def test_converted_graphs_are_cached_per_configuration(short_model, tiny_root, tmp_path):
    """The same weights with fewer positions are another ONNX graph (its rotary table is
    shorter): a shared cache must not hand one's graph to the other."""
    from chattts.generation.ort_convert import converted_gpt

    tiny = converted_gpt(os.path.join(tiny_root, "asset", "gpt"), "fp32", str(tmp_path))
    short = converted_gpt(os.path.join(short_model, "asset", "gpt"), "fp32", str(tmp_path))
    assert tiny.path != short.path and tiny.source_sha256 == short.source_sha256
