"""Caption files: SubRip (``.srt``), WebVTT (``.vtt``) and JSON (``.json``), written and read.

SRT and WebVTT go through webvtt-py (docs/captions.md, "Libraries"); JSON is
``{"captions": [{"start", "end", "text"[, "voice"]}], "marks": [{"name", "time"}]}`` with times
in seconds, through the standard library. SRT and WebVTT keep times to the millisecond and
cannot hold marks; WebVTT writes a cue's voice as a ``<v name>`` span and escapes ``& < >``.
SubRip has no escaping and its players read ``<...>`` as markup, so ``<`` and ``>`` in the
text are written as ``‹`` and ``›`` there.
"""

from __future__ import annotations

import html
import io
import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from typing import IO, Any, Optional, Protocol, Union

from ..errors import CaptionError
from .cues import Cue

#: Caption formats by name, and the suffixes that select them.
FORMATS: tuple[str, ...] = ("srt", "vtt", "json")
SUFFIXES: dict[str, str] = {".srt": "srt", ".vtt": "vtt", ".json": "json"}
#: HTTP media types of the formats.
MEDIA_TYPES: dict[str, str] = {
    "srt": "application/x-subrip",
    "vtt": "text/vtt",
    "json": "application/json",
}

PathOrTextFile = Union[str, "os.PathLike[str]", IO[str], IO[bytes]]


class Named(Protocol):
    """A named point in time (:class:`chattts.audio.Mark`)."""

    name: str
    time: float


def _webvtt() -> Any:
    try:
        import webvtt
    except ImportError as e:  # pragma: no cover - a default dependency
        from ..errors import MissingDependencyError

        raise MissingDependencyError(
            "SRT and WebVTT captions need webvtt-py: pip install 'webvtt-py==0.6.*'"
        ) from e
    return webvtt


def caption_format(format: Optional[str] = None, path: Optional[str] = None) -> str:
    """The format named (``"vtt"``, ``".srt"``...) or, without one, the path's suffix."""
    if format is not None:
        name = str(format).strip().lower().lstrip(".")
        if name == "webvtt":
            name = "vtt"
        if name not in FORMATS:
            raise CaptionError(f"unknown caption format {format!r}: use one of srt, vtt, json")
        return name
    if path is None:
        raise CaptionError("give the caption format (srt, vtt or json) for a file without a name")
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in SUFFIXES:
        raise CaptionError(
            f"cannot tell the caption format of {os.fspath(path)!r} from its suffix: "
            f"use {', '.join(SUFFIXES)}"
        )
    return SUFFIXES[suffix]


def _timestamp(seconds: float, sep: str) -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _vtt_lines(cue: Cue) -> str:
    lines = [html.escape(line, quote=False) for line in cue.lines]
    if cue.voice and lines:
        name = " ".join(cue.voice.replace(">", " ").split())
        lines[0] = f"<v {name}>{lines[0]}</v>" if len(lines) == 1 else f"<v {name}>{lines[0]}"
        if len(lines) > 1:
            lines[-1] += "</v>"
    return "\n".join(lines)


def _srt_lines(cue: Cue) -> str:
    return "\n".join(line.replace("<", "‹").replace(">", "›") for line in cue.lines)


def captions_text(cues: Iterable[Cue], format: str, marks: Iterable[Named] = ()) -> str:
    """The captions as the text of a ``format`` file (``srt``, ``vtt`` or ``json``)."""
    fmt = caption_format(format)
    cues = list(cues)
    if fmt == "json":
        body = {
            "captions": [
                {"start": round(c.start, 6), "end": round(c.end, 6), "text": c.text}
                | ({"voice": c.voice} if c.voice else {})
                for c in cues
            ],
            "marks": [{"name": m.name, "time": round(m.time, 6)} for m in marks],
        }
        return json.dumps(body, ensure_ascii=False, indent=2) + "\n"
    webvtt = _webvtt()
    text = _srt_lines if fmt == "srt" else _vtt_lines
    doc = webvtt.WebVTT(
        captions=[
            webvtt.Caption(_timestamp(c.start, "."), _timestamp(c.end, "."), text(c)) for c in cues
        ]
    )
    buf = io.StringIO()
    doc.write(buf, format=fmt)
    out = buf.getvalue()
    return out if out.endswith("\n") or not out else out + "\n"


def write_captions(
    path_or_file: PathOrTextFile,
    cues: Iterable[Cue],
    format: Optional[str] = None,
    *,
    marks: Iterable[Named] = (),
) -> None:
    """Write captions to a path (atomically: a temporary file, then ``os.replace``) or to a
    text or binary file object (UTF-8). ``format`` defaults to the suffix of the path (or of
    the file object's ``name``): ``.srt``, ``.vtt`` or ``.json``; another is a CaptionError.
    """
    is_path = isinstance(path_or_file, (str, os.PathLike))
    name = path_or_file if is_path else getattr(path_or_file, "name", None)
    fmt = caption_format(format, name if isinstance(name, (str, os.PathLike)) else None)
    text = captions_text(cues, fmt, marks)
    if not is_path:
        if isinstance(path_or_file, io.TextIOBase):
            path_or_file.write(text)
        else:
            path_or_file.write(text.encode("utf-8"))  # type: ignore[arg-type]
        return
    path = os.fspath(path_or_file)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".captions-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def parse_captions(text: str, format: str) -> tuple[list[Cue], list[tuple[str, float]]]:
    """Read caption text back: (cues, marks as (name, time) pairs; none for SRT and VTT)."""
    fmt = caption_format(format)
    if fmt == "json":
        return _parse_json(text)
    if not text.strip() or (fmt == "vtt" and text.strip() == "WEBVTT"):
        return [], []
    webvtt = _webvtt()
    try:
        doc = webvtt.WebVTT.from_buffer(io.StringIO(text), format=fmt)
    except (webvtt.errors.MalformedFileError, webvtt.errors.MalformedCaptionError) as e:
        raise CaptionError(f"not a valid {fmt} file: {e}") from e
    cues = []
    for c in doc.captions:
        lines = tuple(c.text.split("\n"))
        if fmt == "vtt":
            lines = tuple(html.unescape(line) for line in lines)
        else:
            lines = tuple(line.replace("‹", "<").replace("›", ">") for line in lines)
        start = c.start_time.in_milliseconds() / 1000
        end = c.end_time.in_milliseconds() / 1000
        cues.append(Cue(start, end, lines, c.voice if fmt == "vtt" else None))
    return cues, []


def _parse_json(text: str) -> tuple[list[Cue], list[tuple[str, float]]]:
    try:
        body = json.loads(text)
        cues = [
            Cue(float(c["start"]), float(c["end"]), tuple(c["text"].split("\n")), c.get("voice"))
            for c in body["captions"]
        ]
        marks = [(str(m["name"]), float(m["time"])) for m in body.get("marks", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CaptionError(f"not a valid caption JSON file: {e}") from e
    return cues, marks


def read_captions(
    path_or_file: PathOrTextFile, format: Optional[str] = None
) -> tuple[list[Cue], list[tuple[str, float]]]:
    """Read a caption file (path or file object): (cues, marks); see :func:`parse_captions`."""
    is_path = isinstance(path_or_file, (str, os.PathLike))
    name = path_or_file if is_path else getattr(path_or_file, "name", None)
    fmt = caption_format(format, name if isinstance(name, (str, os.PathLike)) else None)
    if is_path:
        with open(path_or_file, encoding="utf-8") as f:
            data: Union[str, bytes] = f.read()
    else:
        data = path_or_file.read()
    text = data.decode("utf-8") if isinstance(data, bytes) else data
    return parse_captions(text, fmt)


__all__: Sequence[str] = [
    "FORMATS",
    "MEDIA_TYPES",
    "SUFFIXES",
    "caption_format",
    "captions_text",
    "parse_captions",
    "read_captions",
    "write_captions",
]
