"""chattts.voices: the one Voice type, the short forms a voice takes, and voices files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from chattts import cli, dia, dialogue, voices
from chattts.errors import UsageError, VoicesError
from chattts.voices import Voice, as_voice, load_voices, read_voices
from chattts.voices.speaker import SpeakerStats, encode_speaker

TINY = Path(__file__).parent / "fixtures" / "tiny"
SPK = encode_speaker(SpeakerStats.from_file(str(TINY / "asset" / "spk_stat.pt")).sample(1))


def test_one_voice_type_under_every_old_name() -> None:
    assert dialogue.Voice is dia.Voice is Voice
    assert dialogue.as_voice is dia.as_voice is as_voice
    assert cli.load_voices is load_voices
    assert getattr(cli, "Voice", Voice) is Voice  # the CLI's own alias (Union[int, str]) is gone


def test_short_forms() -> None:
    assert as_voice(7) == Voice(seed=7) and as_voice(np.int64(7)) == Voice(seed=7)
    assert as_voice(SPK) == Voice(speaker=SPK)  # not ASCII: a speaker string
    assert as_voice("ref.wav") == Voice(audio="ref.wav")  # ASCII: a path
    assert as_voice({"audio": b"x", "text": "hi"}) == Voice(audio=b"x", text="hi")
    assert as_voice(None) == Voice() and not Voice().chosen
    with pytest.raises(TypeError):
        as_voice(True)
    with pytest.raises(TypeError, match="spk"):
        as_voice({"spk": SPK})


def test_read_voices_gives_records_load_voices_gives_seeds_and_strings(tmp_path: Path) -> None:
    f = tmp_path / "voices.json"
    f.write_text(json.dumps({"b": {"seed": 2}, "a": 1, "c": {"spk": SPK}, "d": f" {SPK}\n"}))
    records = read_voices(f)
    assert list(records) == ["b", "a", "c", "d"]  # the file's order
    assert records["b"] == Voice(seed=2) and records["d"] == Voice(speaker=SPK)
    assert load_voices(str(f)) == {"b": 2, "a": 1, "c": SPK, "d": SPK}
    assert {name: v.spec() for name, v in records.items()} == load_voices(f)


def test_spec_of_what_a_voices_file_cannot_hold() -> None:
    for voice in (Voice(audio="ref.wav"), Voice(), Voice(seed=1, speaker=SPK, audio=b"x")):
        with pytest.raises(VoicesError):
            voice.spec()
    assert Voice(seed=1, speaker=SPK).spec() == SPK  # the speaker string wins, as in synthesis


def test_a_folder_of_voices(tmp_path: Path) -> None:
    (tmp_path / "z.json").write_text('{"seed": 5}')
    (tmp_path / "y.txt").write_text(SPK + "\n")
    (tmp_path / "notes.md").write_text("ignored")
    assert load_voices(tmp_path) == {"y": SPK, "z": 5}


@pytest.mark.parametrize(
    "content, needle",
    [("[1]", "JSON object"), ("{", "not valid JSON"), ('{"a": ""}', "must be a seed")],
)
def test_bad_files_are_voices_errors(tmp_path: Path, content: str, needle: str) -> None:
    f = tmp_path / "v.json"
    f.write_text(content)
    with pytest.raises(VoicesError, match=needle) as info:
        voices.load_voices(f)
    assert isinstance(info.value, UsageError) and isinstance(info.value, ValueError)
    with pytest.raises(VoicesError, match="voices not found"):
        load_voices(tmp_path / "missing.json")
