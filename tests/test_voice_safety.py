"""The one voice resolver, bounded and finite mixes, and a voice library that survives races
and bad files (chattts/voices/)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import finishes

from chattts import cli
from chattts.errors import SpeakerError, UnknownVoiceError, VoicesError
from chattts.voices import (
    MAX_MIX_TERMS,
    MAX_VOICE_CHARS,
    Voice,
    VoiceLibrary,
    VoiceResolver,
    mix_speakers,
    parse_mix,
    read_voices,
)
from chattts.voices.speaker import (
    MAX_SAMPLE_DIM,
    SpeakerStats,
    decode_sample,
    decode_speaker,
    encode_sample,
    encode_speaker,
)

TINY = Path(__file__).parent / "fixtures" / "tiny"
STATS = SpeakerStats.from_file(str(TINY / "asset" / "spk_stat.pt"))
A, B = encode_speaker(STATS.sample(1)), encode_speaker(STATS.sample(2))


class CountingDraw:
    """Draws a seed's speaker as the model does, counting the draws."""

    def __init__(self) -> None:
        self.seeds: list = []

    def __call__(self, seed):
        self.seeds.append(seed)
        return encode_speaker(STATS.sample(seed))


@pytest.fixture()
def lib(tmp_path: Path) -> VoiceLibrary:
    lib = VoiceLibrary(tmp_path / "voices")
    lib.add("alice", speaker=A)
    lib.add("bob", speaker=B)
    return lib


# ---- 1: bounded mixes, resolved once ----------------------------------------------------------


def test_a_mix_is_bounded_in_terms_and_length_before_any_work(lib: VoiceLibrary) -> None:
    draw = CountingDraw()
    resolver = VoiceResolver(lib, draw=draw)
    with pytest.raises(VoicesError, match=f"at most {MAX_VOICE_CHARS} characters"):
        resolver.voice("+".join(["alloy"] * 1000))  # the probe's 6 KB body: 27 s before
    with pytest.raises(VoicesError, match=f"at most {MAX_MIX_TERMS} terms"):
        resolver.voice("+".join([f"seed_{i}" for i in range(299)] + ["zed"]))
    with pytest.raises(VoicesError, match=f"at most {MAX_VOICE_CHARS} characters"):
        resolver.voice("alice*" + "1" * MAX_VOICE_CHARS)
    with pytest.raises(VoicesError, match="at most"):
        parse_mix("+".join(["alice"] * (MAX_MIX_TERMS + 1)))
    assert draw.seeds == []  # refused before drawing anything
    widest = "+".join(f"seed_{i}" for i in range(MAX_MIX_TERMS))  # the bound itself is fine
    assert decode_speaker(resolver.voice(widest).speaker).numel() == STATS.hidden_size


def test_an_unknown_name_in_a_mix_fails_before_any_draw(lib: VoiceLibrary) -> None:
    draw = CountingDraw()
    with pytest.raises(UnknownVoiceError, match="'zed'") as info:
        VoiceResolver(lib, draw=draw).voice("seed_1+seed_2+seed_3+zed")
    assert info.value.name == "zed" and draw.seeds == []


def test_seed_draws_and_mixes_are_cached(lib: VoiceLibrary, monkeypatch) -> None:
    draw = CountingDraw()
    resolver = VoiceResolver(lib, draw=draw)
    spec = "alice*0.5+seed_7+seed_8"
    first = resolver.voice(spec)
    import chattts.voices.resolve as resolve

    mixes = []
    monkeypatch.setattr(resolve, "mix_speakers", lambda *a: mixes.append(a) or "mixed")
    assert resolver.voice(spec) == first and resolver.fields("seed_7") == {"spk_emb": draw(7)}
    assert draw.seeds.count(7) == 2 and draw.seeds.count(8) == 1  # (one of the 7s is ours)
    assert mixes == []


def test_one_grammar_for_every_form(lib: VoiceLibrary) -> None:
    draw = CountingDraw()
    r = VoiceResolver(lib, draw=draw, hidden_size=STATS.hidden_size)
    assert r.fields("alice") == {"spk_emb": A}
    assert r.fields("seed_2") == r.fields("seed2") == r.fields(2) == {"spk_emb": B}
    assert r.fields(A) == {"spk_emb": A}  # a speaker string
    assert r.fields(" alice+bob ") == {"spk_emb": mix_speakers([(A, 1), (B, 1)])}
    assert r.fields(Voice(name="alice*0.5+seed_2*2")) == r.fields("alice+bob*4")
    with pytest.raises(UnknownVoiceError, match=r"known: alice, bob, or seed_N"):
        r.fields("carol")
    with pytest.raises(VoicesError, match="speaker string"):
        VoiceResolver(hidden_size=10).fields(A)
    with pytest.raises(VoicesError, match="a model is needed"):
        VoiceResolver(lib).fields("alice+seed_3")
    VoiceResolver(lib).check("alice+seed_3")  # the CLI's check before loading: no model
    with pytest.raises(UnknownVoiceError):
        VoiceResolver(lib).check("alice+carol")


def test_a_sample_voice_speaks_by_its_sample_and_is_refused_in_a_mix(lib: VoiceLibrary) -> None:
    smp = encode_sample(torch.randint(0, 626, (4, 50)))
    lib.add("dan", sample=smp, text="the words")
    r = VoiceResolver(lib, draw=CountingDraw(), num_vq=4)
    assert r.fields("dan") == {"spk_smp": smp, "txt_smp": "the words"}
    with pytest.raises(VoicesError, match="'dan' was made from a recording"):
        r.fields("dan+alice")
    with pytest.raises(VoicesError, match="codebooks"):
        VoiceResolver(lib, num_vq=8).fields("dan")


# ---- 6: finite mixes --------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [("1e308", "1e308"), ("1.7e308", "1e-300"), ("5e-324", "1")])
def test_huge_or_tiny_weights_mix_as_their_ratio(lib: VoiceLibrary, weights) -> None:
    mixed = decode_speaker(lib.resolve(f"alice*{weights[0]}+bob*{weights[1]}").speaker)
    wa, wb = map(float, weights)
    top = max(wa, wb)
    ra, rb = wa / top, wb / top
    expected = (ra / (ra + rb)) * decode_speaker(A).float() + (rb / (ra + rb)) * decode_speaker(
        B
    ).float()
    assert torch.isfinite(mixed).all() and mixed.abs().sum() > 0
    assert torch.equal(mixed, expected.to(torch.float16))


# ---- 3: the sample header holds any allowed length --------------------------------------------


def test_a_sample_longer_than_its_header_holds_is_a_clear_error() -> None:
    fits = torch.zeros(4, MAX_SAMPLE_DIM, dtype=torch.long)
    assert decode_sample(encode_sample(fits), 4).shape == (4, MAX_SAMPLE_DIM)
    with pytest.raises(SpeakerError, match="shorter recording"):  # OverflowError before
        encode_sample(torch.zeros(4, MAX_SAMPLE_DIM + 1, dtype=torch.long))


# ---- 4: writes that race ----------------------------------------------------------------------


def _slow(method: str, seconds: float) -> None:
    """Make ``VoiceLibrary.<method>`` wait ``seconds`` after doing its work: two processes
    then overlap between checking and writing."""
    original = getattr(VoiceLibrary, method)

    def slow(self, *a, **kw):
        out = original(self, *a, **kw)
        time.sleep(seconds)
        return out

    setattr(VoiceLibrary, method, slow)


def _add(folder: str, speaker: str, go, results) -> None:
    _slow("lookup", 0.3)
    go.wait()
    try:
        VoiceLibrary(folder).add("same", speaker=speaker)
        results.put(("ok", speaker))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put((type(e).__name__, str(e)))


def _rename(folder: str, new: str, go, results) -> None:
    _slow("lookup", 0.3)
    go.wait()
    try:
        VoiceLibrary(folder).rename("alice", new)
        results.put(("ok", new))
    except Exception as e:  # noqa: BLE001 - reported to the parent
        results.put((type(e).__name__, str(e)))


def race(target, folder: str, values: list[str]) -> list[tuple[str, str]]:
    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(folder, v, go, results)) for v in values]
    for p in procs:
        p.start()
    go.set()
    out = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    return out


def test_two_processes_adding_the_same_name_one_fails(lib: VoiceLibrary) -> None:
    outcomes = race(_add, lib.path, [A, B])
    assert sorted(kind for kind, _ in outcomes) == ["VoicesError", "ok"], outcomes
    winner = next(v for kind, v in outcomes if kind == "ok")
    loser = next(v for kind, v in outcomes if kind != "ok")
    assert "already exists" in loser and lib.get("same").voice.speaker == winner


def test_two_processes_renaming_one_voice_one_wins_whole(lib: VoiceLibrary) -> None:
    outcomes = race(_rename, lib.path, ["carol", "dave"])
    assert sorted(kind for kind, _ in outcomes) == ["UnknownVoiceError", "ok"], outcomes
    winner = next(v for kind, v in outcomes if kind == "ok")
    assert lib.names() == sorted(["bob", winner]) and lib.get(winner).voice.speaker == A
    assert not [f for f in os.listdir(lib.path) if f.endswith(".tmp")]


def test_a_txt_voice_renames_into_a_json_one(lib: VoiceLibrary) -> None:
    Path(lib.path, "old.txt").write_text(A + "\n", encoding="utf-8")
    lib.rename("old", "new")
    assert sorted(os.listdir(lib.path)) == [".lock", "alice.json", "bob.json", "new.json"]
    assert lib.get("new").voice.speaker == A


# ---- 5: one bad file never breaks the library --------------------------------------------------


@pytest.fixture()
def damaged(lib: VoiceLibrary) -> VoiceLibrary:
    folder = Path(lib.path)
    (folder / "broken.json").write_text("{not json", encoding="utf-8")
    (folder / "latin.json").write_bytes(b'{"spk": "caf\xe9"}')
    (folder / "empty.txt").write_text("", encoding="utf-8")
    os.mkfifo(folder / "pipe.json")
    (folder / "dir.json").mkdir()
    return lib


def test_bad_files_are_skipped_with_a_warning_that_names_each(damaged, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="chattts"):
        names = finishes(damaged.names)
    assert names == ["alice", "bob"]
    for bad in ("broken.json", "latin.json", "empty.txt", "pipe.json", "dir.json"):
        assert bad in caplog.text, bad
    assert "not UTF-8" in caplog.text and "not a regular file" in caplog.text
    assert finishes(lambda: damaged.get("alice")).voice.speaker == A
    with pytest.raises(VoicesError, match="pipe.json: not a regular file"):
        finishes(lambda: damaged.get("pipe"))
    with pytest.raises(VoicesError, match="already exists"):  # a broken file holds its name
        damaged.add("broken", speaker=A)
    for name in ("broken", "latin", "pipe", "empty"):
        damaged.remove(name)
    assert sorted(os.listdir(damaged.path)) == [".lock", "alice.json", "bob.json", "dir.json"]


def test_a_bad_utf8_voices_file_is_named(tmp_path: Path) -> None:
    f = tmp_path / "voices.json"
    f.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(VoicesError, match=r"voices.json: not UTF-8"):
        read_voices(f)
    f.unlink()
    os.mkfifo(f)
    with pytest.raises(VoicesError, match="not a voices file or folder"):
        finishes(lambda: read_voices(f))


def test_the_voice_commands_work_around_a_bad_file(damaged, capsys) -> None:
    lib = ["--voices", damaged.path]
    assert finishes(lambda: cli.main(["voice", "list", *lib])) == 0
    out, err = capsys.readouterr()
    assert out.split() == ["alice", "speaker", "bob", "speaker"] and "broken.json" in err
    assert cli.main(["voice", "rm", "broken", *lib]) == 0
    assert cli.main(["voice", "show", "alice", *lib]) == 0
    assert json.loads(capsys.readouterr().out)["spk"] == A
    model = ["--model-dir", str(TINY), "--no-verify"]
    assert cli.main(["voice", "mix", "alice+seed_5", *lib, *model]) == 0
    mixed = capsys.readouterr().out.strip()
    assert mixed == mix_speakers([(A, 1), (encode_speaker(STATS.sample(5)), 1)])
    out = Path(damaged.path).parent / "out.wav"
    say = ["say", "hi", "--voice", "alice", "-o", str(out), "--no-refine", "--max-new-token", "8"]
    assert cli.main([*say, *lib, *model]) == 0 and out.stat().st_size > 44


def test_the_server_starts_over_a_damaged_library(chat, damaged, monkeypatch, caplog) -> None:
    from fastapi.testclient import TestClient

    from chattts.server import create_app

    monkeypatch.setattr(chat, "voices", damaged)
    with caplog.at_level(logging.WARNING, logger="chattts"):
        app = create_app(chat)
    assert "broken.json" in caplog.text
    with TestClient(app, base_url="http://localhost") as client:
        names = {v["id"] for v in client.get("/v1/audio/voices").json()["data"]}
    assert {"alice", "bob", "alloy"} <= names and "broken" not in names
