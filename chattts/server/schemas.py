"""Requests of the OpenAI-compatible server: validation, voices and the ``speed`` mapping.

Nothing here imports FastAPI: the rules are plain functions and a pydantic model, so they can
be tested (and reused) without a web server.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ChatTTSError, SpeakerError

#: Longest ``input`` accepted, in characters (OpenAI's limit).
MAX_INPUT_CHARS = 4096
#: Formats of ``response_format``.
RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
#: The model names accepted (``chattts`` and OpenAI's TTS names, so clients work unchanged).
MODEL_NAMES = ("chattts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: OpenAI's built-in voice names, each mapped to the voice of a fixed seed unless the voices
#: file defines it.
OPENAI_VOICES: dict[str, int] = {
    name: 1000 + i
    for i, name in enumerate(
        (
            "alloy",
            "ash",
            "ballad",
            "coral",
            "echo",
            "fable",
            "nova",
            "onyx",
            "sage",
            "shimmer",
            "verse",
            "marin",
            "cedar",
        )
    )
}
_SEED_VOICE = re.compile(r"^seed[_:-]?(\d{1,18})$")

#: A voice: a seed (int) or a speaker string (str).
Voice = Union[int, str]


class RequestError(ChatTTSError, ValueError):
    """A bad request, answered with an OpenAI-shaped error (``status`` 4xx)."""

    def __init__(
        self,
        message: str,
        param: Optional[str] = None,
        code: Optional[str] = None,
        status: int = 400,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.type = (
            message,
            param,
            code,
            status,
            type,
        )

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def speed_to_prompt(speed: float) -> str:
    """OpenAI's ``speed`` (0.25–4.0, 1.0 normal) -> ChatTTS's ``[speed_N]`` prompt (N = 0–9).

    N = 5 + 2·log2(speed), rounded half up and clipped to 1–9: 0.25 → 1, 0.5 → 3, 1 → 5,
    2 → 7, 4 → 9 (each doubling of the speed is two steps). ``[speed_N]`` asks the model for a
    speaking rate; it does not time-stretch the audio, so the real rate is only roughly
    proportional.
    """
    n = math.floor(5 + 2 * math.log2(speed) + 0.5)
    return f"[speed_{min(9, max(1, n))}]"


class VoiceId(BaseModel):
    """OpenAI's custom voice object, ``{"id": "..."}``."""

    model_config = ConfigDict(extra="forbid")
    id: str


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech`` (OpenAI's fields and ChatTTS's extras)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str
    input: str = Field(max_length=MAX_INPUT_CHARS)
    voice: Union[str, VoiceId]
    instructions: Optional[str] = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    # ChatTTS extras
    seed: Optional[int] = Field(None, ge=0, le=2**63 - 1)
    temperature: Optional[float] = Field(None, gt=0.0, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[int] = Field(None, ge=1, le=1000)
    refine: bool = False
    max_new_token: Optional[int] = Field(None, ge=1)


def _first_error(e: ValidationError) -> RequestError:
    err = e.errors()[0]
    loc = [str(x) for x in err.get("loc", ()) if not isinstance(x, int)]
    # a union reports the member it tried ('str', 'VoiceId'): keep the field's own name
    param = loc[0] if loc else None
    kind = err.get("type", "")
    if kind == "missing":
        return RequestError(f"missing required parameter: {param!r}", param, "missing_required")
    if kind == "extra_forbidden":
        return RequestError(
            f"unrecognized request argument supplied: {param!r}", param, "unknown_parameter"
        )
    if kind == "string_too_long" and param == "input":
        return RequestError(
            f"'input' is longer than {MAX_INPUT_CHARS} characters",
            "input",
            "string_above_max_length",
        )
    msg = err.get("msg", "invalid value")
    return RequestError(f"invalid value for {param!r}: {msg}", param, "invalid_value")


def parse_request(body: bytes) -> SpeechRequest:
    """Parse and validate a request body (JSON) or raise :class:`RequestError`."""
    if not body.strip():
        raise RequestError("the request body is empty: send a JSON object", code="invalid_json")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(f"the request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    try:
        req = SpeechRequest.model_validate(data)
    except ValidationError as e:
        raise _first_error(e) from e
    if not req.input.strip():
        raise RequestError("'input' is empty: give the text to speak", "input", "empty_input")
    if req.model not in MODEL_NAMES:
        raise RequestError(
            f"the model {req.model!r} does not exist: use one of {', '.join(MODEL_NAMES)}",
            "model",
            "model_not_found",
            status=404,
        )
    return req


@dataclass(frozen=True)
class VoiceInfo:
    """A named voice as ``GET /v1/audio/voices`` lists it."""

    name: str
    voice: Voice

    def describe(self) -> dict[str, Any]:
        kind = "seed" if isinstance(self.voice, int) else "speaker"
        out: dict[str, Any] = {"id": self.name, "object": "voice", "name": self.name, "kind": kind}
        if isinstance(self.voice, int):
            out["seed"] = self.voice
        return out


class Voices:
    """Named voices (OpenAI's names by default, then those of the voices file or folder).

    A request's ``voice`` is, in order: a named voice; ``seed_N`` (the voice of seed N); or a
    speaker string (from ``chattts speaker`` or ``Chat.sample_random_speaker``).
    """

    def __init__(self, named: Optional[dict[str, Voice]] = None, hidden_size: int = 768) -> None:
        table: dict[str, Voice] = dict(OPENAI_VOICES)
        table.update(named or {})
        self.table = table
        self.hidden_size = hidden_size

    @classmethod
    def load(cls, source: Any, hidden_size: int) -> Voices:
        """From None, a dict (name -> seed or speaker string) or a path (JSON file or folder)."""
        if source is None:
            return cls(None, hidden_size)
        if isinstance(source, dict):
            return cls(dict(source), hidden_size)
        from ..cli import load_voices  # the voices format is shared with ``chattts say``

        return cls(load_voices(source), hidden_size)

    def list(self) -> list[VoiceInfo]:
        return [VoiceInfo(n, v) for n, v in sorted(self.table.items())]

    def resolve(self, voice: Union[str, VoiceId]) -> Voice:
        """A request's voice -> a seed or a speaker string; RequestError when unknown."""
        name = voice.id if isinstance(voice, VoiceId) else voice
        name = name.strip()
        if name in self.table:
            value = self.table[name]
        elif _SEED_VOICE.match(name):
            value = int(_SEED_VOICE.match(name).group(1))
        elif len(name) > 32:  # speaker strings are long; voice names are not
            value = name
        else:
            known = ", ".join(sorted(self.table))
            raise RequestError(
                f"unknown voice {name!r}: use a named voice ({known}), seed_N, or a speaker string",
                "voice",
                "voice_not_found",
            )
        if isinstance(value, str):
            try:
                from ..speaker import decode_speaker

                decode_speaker(value, self.hidden_size)
            except SpeakerError as e:
                raise RequestError(f"invalid voice: {e}", "voice", "invalid_voice") from e
        return value
