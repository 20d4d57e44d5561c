"""The voice library and voice mixes: the folder, the mix rules, and every front end that takes
a voice name (Chat's spk_emb, generate's speakers, chattts voice / say, the server)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

import chattts
from chattts import cli
from chattts.errors import AudioError, MissingDependencyError, UsageError, VoicesError
from chattts.server.voices import Voices
from chattts.text import Normalizer
from chattts.voices import VoiceLibrary, default_voices_dir, mix_speakers, parse_mix
from chattts.voices.speaker import SpeakerStats, decode_speaker, encode_speaker

TINY = Path(__file__).parent / "fixtures" / "tiny"
STATS = SpeakerStats.from_file(str(TINY / "asset" / "spk_stat.pt"))
A, B = encode_speaker(STATS.sample(1)), encode_speaker(STATS.sample(2))
MODEL = ["--model-dir", str(TINY), "--no-verify"]


def quick(**kw) -> chattts.InferCodeParams:
    return chattts.InferCodeParams(max_new_token=12, show_tqdm=False, manual_seed=3, **kw)


@pytest.fixture()
def lib(tmp_path: Path) -> VoiceLibrary:
    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("alice", speaker=A, lang="en", gender="female", notes="warm")
    lib.add("bob", seed=2, draw=lambda s: encode_speaker(STATS.sample(s)))
    return lib


def test_default_folder_is_the_user_cache(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_voices_dir() == str(tmp_path / "chattts" / "voices")
    assert VoiceLibrary().path == default_voices_dir() and VoiceLibrary().records() == {}


def test_add_list_show_rename_remove(lib: VoiceLibrary) -> None:
    assert lib.names() == ["alice", "bob"]
    alice = lib.get("alice")
    assert (alice.kind, alice.lang, alice.gender, alice.notes) == (
        "speaker",
        "en",
        "female",
        "warm",
    )
    bob = lib.get("bob")  # a seed voice stores its speaker string, the seed as information
    assert bob.voice.speaker == B and bob.from_seed == 2 and bob.describe()["seed"] == 2
    on_disk = json.loads((Path(lib.path) / "bob.json").read_text(encoding="utf-8"))
    assert on_disk == {"spk": B, "from_seed": 2}
    lib.rename("bob", "carol")
    assert lib.names() == ["alice", "carol"] and lib.get("carol").voice.speaker == B
    lib.remove("carol")
    assert lib.names() == ["alice"]
    for bad in ("", "a b", "x.wav", "a+b"):
        with pytest.raises(VoicesError, match="bad voice name"):
            lib.add(bad, speaker=A)
    with pytest.raises(VoicesError, match="already exists"):
        lib.add("alice", speaker=B)
    with pytest.raises(VoicesError, match="unknown voice 'zed'.*known: alice"):
        lib.remove("zed")


def test_a_sample_voice_is_spk_smp_and_txt_smp(chat, lib: VoiceLibrary, monkeypatch) -> None:
    wav = chat.infer(["hello"], skip_refine_text=True, params_infer_code=quick(spk_emb=A))[0]
    smp = chat.sample_audio_speaker(wav)
    lib.add("rec", sample=smp, text="hello")
    assert lib.get("rec").kind == "sample" and lib.resolve("rec").sample == smp
    with pytest.raises(VoicesError, match="recording"):
        lib.resolve("rec+alice")
    monkeypatch.setattr(chat, "voices", lib)
    by_name = chat.infer(["hi"], skip_refine_text=True, params_infer_code=quick(spk_emb="rec"))
    direct = quick(spk_smp=smp, txt_smp="hello")
    by_hand = chat.infer(["hi"], skip_refine_text=True, params_infer_code=direct)
    np.testing.assert_array_equal(by_name[0], by_hand[0])


def test_a_mix_is_the_weighted_float16_vectors_with_weights_summing_to_one(lib) -> None:
    va, vb = decode_speaker(A).float(), decode_speaker(B).float()
    mixed = decode_speaker(lib.resolve("alice*0.7+bob*0.3").speaker)
    assert torch.equal(mixed, (0.7 * va + 0.3 * vb).to(torch.float16))
    assert lib.resolve("alice*7+bob*3").speaker == lib.resolve("alice*0.7+bob*0.3").speaker
    assert lib.resolve("alice+bob").speaker == mix_speakers([(A, 1), (B, 1)])
    assert parse_mix(" alice * 2 + bob ") == [("alice", 2.0), ("bob", 1.0)]


@pytest.mark.parametrize(
    "spec, needle",
    [
        ("alice+", "empty term"),
        ("+bob", "empty term"),
        ("alice*-1+bob", "finite number ≥ 0"),
        ("alice*nan+bob", "finite number ≥ 0"),
        ("alice*inf+bob", "finite number ≥ 0"),
        ("alice*x+bob", "must be a number"),
        ("alice*0+bob*0", "sum to 0"),
        ("alice+zed", "unknown voice 'zed'"),
        ("al ice+bob", "not a voice name"),
    ],
)
def test_malformed_mixes(lib: VoiceLibrary, spec: str, needle: str) -> None:
    with pytest.raises(VoicesError, match=needle) as info:
        lib.resolve(spec)
    assert isinstance(info.value, ValueError) and isinstance(
        info.value, chattts.errors.ChatTTSError
    )


def test_voices_of_models_of_different_sizes_do_not_mix(lib: VoiceLibrary) -> None:
    lib.add("small", speaker=encode_speaker(torch.ones(10)))
    with pytest.raises(VoicesError, match="different sizes.*small has 10"):
        lib.resolve("alice+small")
    with pytest.raises(VoicesError, match="hidden size"):
        lib.resolve("small", hidden_size=STATS.hidden_size)


def test_names_and_mixes_in_spk_emb_and_generate(chat, lib: VoiceLibrary, monkeypatch) -> None:
    monkeypatch.setattr(chat, "voices", lib)
    params = quick(spk_emb="alice*0.7+bob*0.3")
    by_name = chat.infer(["hi"], skip_refine_text=True, params_infer_code=params)[0]
    assert params.spk_emb == "alice*0.7+bob*0.3"  # the caller's params are not changed
    spk = lib.resolve("alice*0.7+bob*0.3").speaker
    by_hand = chat.infer(["hi"], skip_refine_text=True, params_infer_code=quick(spk_emb=spk))
    np.testing.assert_array_equal(by_name, by_hand[0])
    g1 = chat.generate("[S1] hi", seed=3, speakers={"S1": "alice+bob"}, max_new_tokens=12)
    g2 = chat.generate("[S1] hi", seed=3, speakers={"S1": lib.resolve("alice+bob").speaker},
                       max_new_tokens=12)  # fmt: skip
    np.testing.assert_array_equal(g1, g2)
    with pytest.raises(VoicesError, match="unknown voice 'zed'"):
        chat.infer(["hi"], skip_refine_text=True, params_infer_code=quick(spk_emb="zed"))


def test_voice_command(tmp_path: Path, capsys) -> None:
    lib = ["--voices", str(tmp_path / "v")]
    assert cli.main(["voice", "add", "alice", "--seed", "1", "--lang", "en", *lib, *MODEL]) == 0
    assert cli.main(["voice", "add", "bob", "--spk", B, *lib]) == 0
    assert cli.main(["voice", "mix", "alice*0.5+bob", "--save", "ab", *lib, *MODEL]) == 0
    capsys.readouterr()
    assert cli.main(["voice", "list", "--json", *lib]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["name"] for v in listed] == ["ab", "alice", "bob"] and listed[1]["seed"] == 1
    assert cli.main(["voice", "show", "alice", *lib]) == 0
    assert json.loads(capsys.readouterr().out)["spk"] == A
    assert cli.main(["voice", "rename", "ab", "mixed", *lib]) == 0
    assert cli.main(["voice", "rm", "mixed", *lib]) == 0
    capsys.readouterr()
    assert cli.main(["voice", "mix", "alice+", *lib, *MODEL]) == 1
    assert "empty term" in capsys.readouterr().err
    out = tmp_path / "o.wav"
    say = ["say", "hi", "--no-refine", "--max-new-token", "8", "-o", str(out), *lib, *MODEL]
    assert cli.main([*say, "--voice", "alice*0.7+bob*0.3"]) == 0 and out.stat().st_size > 44
    assert cli.main([*say, "--voice", "alice+zed"]) == 1
    assert "unknown voice 'zed'" in capsys.readouterr().err


def test_say_play_without_the_package_or_a_device(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    assert cli.main(["say", "hi", "--play", *MODEL]) == 1
    assert "pip install 'chattts[play]'" in capsys.readouterr().err

    def no_device(*a, **k):
        raise ValueError("No output device matching -1")

    fake = types.SimpleNamespace(query_devices=no_device, OutputStream=None)
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    assert cli.main(["say", "hi", "--play", *MODEL]) == 1
    assert "no audio output device" in capsys.readouterr().err
    from chattts.cli.play import Player

    with pytest.raises(AudioError):
        Player(24000)
    monkeypatch.setitem(sys.modules, "sounddevice", None)
    with pytest.raises(MissingDependencyError):
        Player(24000)
    with pytest.raises(UsageError):
        cli.say.cmd_say(cli.build_parser().parse_args(["say", "hi", "--play", "-o", "x.wav"]))


def test_say_play_streams_every_chunk_to_the_device(monkeypatch) -> None:
    written: list[np.ndarray] = []

    class Stream:
        def __init__(self, **kw):
            assert kw["samplerate"] == 24000 and kw["channels"] == 1

        def start(self):
            pass

        def write(self, data):
            written.append(data.copy())

        def stop(self):
            pass

        def close(self):
            written.append(None)

    fake = types.SimpleNamespace(
        query_devices=lambda *a, **k: {"name": "fake"}, OutputStream=Stream
    )
    monkeypatch.setitem(sys.modules, "sounddevice", fake)
    args = ["say", "a", "b", "--play", "--no-refine", "--max-new-token", "8", "--seed", "1"]
    assert cli.main([*args, *MODEL]) == 0
    assert written[-1] is None and all(w.ndim == 2 and w.shape[1] == 1 for w in written[:-1])
    assert sum(w.size for w in written[:-1]) > 0


def test_server_voices_take_mixes_and_name_the_unknown_one() -> None:
    draw = lambda s: encode_speaker(STATS.sample(s))  # noqa: E731
    table = Voices({"alice": A}, STATS.hidden_size, draw)
    spk = lambda spec: table.fields(spec)["spk_emb"]  # noqa: E731
    assert spk("alice*0.7+alloy*0.3") == mix_speakers([(A, 0.7), (draw(1000), 0.3)])
    assert spk("alice+seed_2") == mix_speakers([(A, 1), (B, 1)])
    with pytest.raises(chattts.errors.RequestError) as info:
        table.fields("alice+zed")
    assert info.value.status == 400 and info.value.code == "voice_not_found"
    assert "'zed'" in info.value.message
    with pytest.raises(chattts.errors.RequestError, match="empty term"):
        table.fields("alice+")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    sub = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub[0].choices) if sub else {}


def test_the_cli_docs_name_every_voice_action_and_say_option() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    commands = _subcommands(cli.build_parser())
    parsers = {"say": commands["say"]}
    for action, p in _subcommands(commands["voice"]).items():
        assert f"chattts voice {action} " in doc or f"chattts voice {action}\n" in doc, action
        parsers[f"voice {action}"] = p
    for name, p in parsers.items():
        for opt in p._actions:
            if opt.option_strings and opt.dest not in ("help", "verbose"):
                assert any(f"`{o}" in doc or f" {o}" in doc for o in opt.option_strings), (
                    f"chattts {name} {opt.option_strings[0]} is not in docs/cli.md"
                )


def test_the_server_offers_the_voice_library_without_a_voices_file(chat, lib, monkeypatch, caplog):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from chattts.server import create_app

    lib.add("small", speaker=encode_speaker(torch.ones(10)))  # another model's size: left out
    lib.add("alloy", speaker=B)  # replaces OpenAI's voice of that name
    monkeypatch.setattr(chat, "voices", lib)
    with caplog.at_level(logging.WARNING, logger="chattts.server"):
        app = create_app(chat, batch_wait_ms=0, max_new_token=8)
    assert "'small'" in caplog.text and "left out" in caplog.text
    body = {"model": "tts-1", "input": "hi", "response_format": "pcm", "seed": 3}
    with TestClient(app, base_url="http://localhost") as client:
        listed = {v["id"]: v for v in client.get("/v1/audio/voices").json()["data"]}
        assert {listed[n]["kind"] for n in ("alice", "bob", "alloy")} == {"speaker"}
        assert "small" not in listed and listed["nova"]["kind"] == "seed"

        def speak(voice: str) -> bytes:
            r = client.post("/v1/audio/speech", json={**body, "voice": voice})
            assert r.status_code == 200, r.text
            return r.content

        assert speak("alice") == speak(A) and speak("alloy") == speak(B)
        mix = "alice*0.7+bob*0.3"
        assert speak(mix) == speak(lib.resolve(mix).speaker)
    # a voices file replaces the library
    table = create_app(chat, voices={"carol": 5}).state.service.voices.table
    assert "carol" in table and "alice" not in table


def test_register_with_the_reference_keyword_again_after_a_reload(tiny_root) -> None:
    n = Normalizer(builtin_normalizers=False)
    assert n.register("en", normalizer=str.upper)
    assert not n.register("en", normalizer=str.lower)  # twice in one load: refused
    n.renew()
    assert n.register("en", normalizer=str.lower) and n.normalizers["en"] is str.lower
    chat = chattts.Chat()
    for _ in range(2):  # the reference web UI's reload: unload, load, register again
        chat.unload()
        assert chat.load(source="custom", custom_path=tiny_root, verify=False, device="cpu")
        assert chat.normalizer.register("en", normalizer=str.strip)


def test_module_views_and_devices(chat) -> None:
    fresh = chattts.Chat()
    assert fresh.gpt is None and fresh.device is None and fresh.coef is None
    assert chat.gpt is chat.models.gpt and chat.tokenizer is chat.models.tokenizer
    assert chat.embed is chat.models.embed and chat.vocos is chat.models.vocos
    assert chat.decoder is chat.models.decoder
    assert chat.device == chat.device_gpt == torch.device("cpu")
    with pytest.raises(AttributeError):
        chat.gpt = None
    texts = chat.speaker.decorate_code_prompts(["hi"], "[speed_5]", None, A)
    assert texts == ["[Stts][spk_emb][speed_5]hi[Ptts]"]
    assert chat.speaker.decorate_text_prompts(["hi"], "") == ["[Sbreak]hi[Pbreak]"]
    codes = torch.tensor([[1, 2, 3]] * chat.config.gpt.num_vq)
    assert torch.equal(chat.speaker.decode_prompt(chat.speaker.encode_prompt(codes)), codes)
