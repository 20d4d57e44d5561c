"""Requests of the OpenAI-compatible server: validation, voices and the ``speed`` mapping.

Nothing here imports FastAPI: the rules are plain functions and a pydantic model, so they can
be tested (and reused) without a web server.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import EmptyInputError, RequestError, SpeakerError, VoicesError
from ..validation import MAX_SEED, MIN_TEMPERATURE, check_int

if TYPE_CHECKING:
    from ..voices import VoiceLibrary

logger = logging.getLogger("chattts.server")

#: Longest ``input`` accepted, in characters (OpenAI's limit).
MAX_INPUT_CHARS = 4096
#: Deepest nesting of arrays and objects accepted in a request body (a valid request has 2).
MAX_JSON_DEPTH = 16
#: Most digits of a JSON integer (Python's own limit is 4300; a valid request needs 19).
MAX_INT_DIGITS = 100
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


def speed_to_prompt(speed: float) -> str:
    """OpenAI's ``speed`` (0.25–4.0, 1.0 normal) -> ChatTTS's ``[speed_N]`` prompt (N = 0–9).

    N = 5 + 2·log2(speed), rounded half up and clipped to 1–9: 0.25 → 1, 0.5 → 3, 1 → 5,
    2 → 7, 4 → 9 (each doubling of the speed is two steps). ``[speed_N]`` asks the model for a
    speaking rate; it does not time-stretch the audio, so the real rate is only roughly
    proportional.
    """
    n = math.floor(5 + 2 * math.log2(speed) + 0.5)
    return f"[speed_{min(9, max(1, n))}]"


def _integral(value: Any) -> Any:
    """JSON Schema's integers include 10.0: an integral float becomes an int, nothing else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class VoiceId(BaseModel):
    """OpenAI's custom voice object, ``{"id": "..."}``."""

    model_config = ConfigDict(extra="forbid")
    id: str


class SpeechRequest(BaseModel):
    """The body of ``POST /v1/audio/speech`` (OpenAI's fields and ChatTTS's extras)."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str = Field(json_schema_extra={"enum": list(MODEL_NAMES)})
    input: str = Field(
        max_length=MAX_INPUT_CHARS, json_schema_extra={"minLength": 1, "pattern": r"\S"}
    )
    voice: Union[str, VoiceId] = Field(
        description="a named voice (GET /v1/audio/voices), seed_N, {'id': ...}, or a speaker "
        "string (chattts speaker)"
    )
    instructions: Optional[str] = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    # ChatTTS extras
    seed: Optional[Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(_integral)]] = None
    temperature: Optional[float] = Field(None, ge=MIN_TEMPERATURE, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[Annotated[int, Field(ge=1, le=1000), BeforeValidator(_integral)]] = None
    refine: bool = False
    max_new_token: Optional[Annotated[int, Field(ge=1), BeforeValidator(_integral)]] = None


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


_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = bytes.maketrans(b"", b"")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``body`` nests arrays/objects deeper than ``limit`` (strings skipped).

    Checked before parsing, so a body of 100,000 ``[`` never reaches the recursive parser.
    """
    brackets = _STRING.sub(b"", body).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    for c in brackets:
        depth += 1 if c in b"[{" else -1
        if depth > limit:
            return True
    return False


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (at most {MAX_INT_DIGITS})")
    return int(text)


def parse_request(body: bytes) -> SpeechRequest:
    """Parse and validate a request body (JSON) or raise :class:`RequestError`.

    Refused with 400: an empty body, invalid UTF-8 or JSON, ``NaN``/``Infinity``, integers of
    more than :data:`MAX_INT_DIGITS` digits, nesting deeper than :data:`MAX_JSON_DEPTH`, and
    whatever :class:`SpeechRequest` does not accept; an unknown model is 404.
    """
    if not body.strip():
        raise RequestError("the request body is empty: send a JSON object", code="invalid_json")
    if json_depth_exceeds(body):
        raise RequestError(
            f"the request body nests deeper than {MAX_JSON_DEPTH} levels", code="invalid_json"
        )
    try:
        data = json.loads(body, parse_constant=_no_constant, parse_int=_int)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError too
        raise RequestError(f"the request body is not valid JSON: {e}", code="invalid_json") from e
    if not isinstance(data, dict):
        raise RequestError("the request body must be a JSON object", code="invalid_json")
    try:
        req = SpeechRequest.model_validate(data)
    except ValidationError as e:
        raise _first_error(e) from e
    if not req.input.strip():
        raise RequestError(f"'input': {EmptyInputError(req.input)}", "input", "empty_input")
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

    A request's ``voice`` is, in order: a named voice; ``seed_N`` (the voice of seed N); a mix
    of those (``"alloy+nova"``, ``"alice*0.7+bob*0.3"``, see :mod:`chattts.voices.library`); or a
    speaker string (from ``chattts speaker`` or ``Chat.sample_random_speaker``). ``draw``
    gives a seed's speaker string (``Chat.sample_random_speaker``), for mixes of seed voices.
    """

    def __init__(
        self,
        named: Optional[dict[str, Voice]] = None,
        hidden_size: int = 768,
        draw: Optional[Callable[[int], str]] = None,
    ) -> None:
        table: dict[str, Voice] = dict(OPENAI_VOICES)
        table.update(named or {})
        self.table = table
        self.hidden_size = hidden_size
        self.draw = draw
        for name, value in (named or {}).items():
            self._check(name, value)

    def _check(self, name: Any, value: Any) -> None:
        """A voices-file entry is a seed in [0, 2**63 − 1] or a valid speaker string."""
        if not isinstance(name, str) or not name.strip():
            raise VoicesError(f"voice names must be non-empty strings, not {name!r}")
        if isinstance(value, str):
            try:
                from ..voices.speaker import decode_speaker

                decode_speaker(value, self.hidden_size)
            except SpeakerError as e:
                raise VoicesError(f"voice {name!r}: {e}") from e
            return
        try:
            check_int(f"voice {name!r}: the seed", value, 0, MAX_SEED)
        except (TypeError, ValueError) as e:
            raise VoicesError(f"{e} (or give a speaker string)") from e

    @classmethod
    def load(
        cls,
        source: Any,
        hidden_size: int,
        draw: Optional[Callable[[int], str]] = None,
        library: Optional[VoiceLibrary] = None,
    ) -> Voices:
        """From a dict (name -> seed or speaker string), a path (JSON file or folder), or None:
        then the voices of ``library`` (:meth:`from_library`), if given."""
        if source is None:
            if library is not None:
                return cls.from_library(library, hidden_size, draw)
            return cls(None, hidden_size, draw)
        if isinstance(source, dict):
            return cls(dict(source), hidden_size, draw)
        from ..voices import load_voices  # the voices format is shared with ``chattts say``

        return cls(load_voices(source), hidden_size, draw)

    @classmethod
    def from_library(
        cls, library: VoiceLibrary, hidden_size: int, draw: Optional[Callable[[int], str]] = None
    ) -> Voices:
        """OpenAI's voices and those of a voice library (what ``chattts voice add`` saves).

        A library voice this model cannot speak with (one made from a recording, or a speaker
        of a model of another size) is left out, with a warning; a missing folder holds none.

        Raises:
            VoicesError: a library file that cannot be read (bad JSON or a bad entry).
        """
        from ..voices import load_voices

        found = load_voices(library.path) if os.path.exists(library.path) else {}
        probe, named = cls(None, hidden_size), {}
        for name, value in found.items():
            try:
                probe._check(name, value)
            except VoicesError as e:
                logger.warning("voice library %s: %s: left out", library.path, e)
                continue
            named[name] = value
        return cls(named, hidden_size, draw)

    def list(self) -> list[VoiceInfo]:
        return [VoiceInfo(n, v) for n, v in sorted(self.table.items())]

    def resolve(self, voice: Union[str, VoiceId]) -> Voice:
        """A request's voice -> a seed or a speaker string; RequestError when unknown."""
        name = voice.id if isinstance(voice, VoiceId) else voice
        name = name.strip()
        if name in self.table:
            value = self.table[name]
        elif ("+" in name or "*" in name) and name.isascii():
            value = self._mix(name)
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
                from ..voices.speaker import decode_speaker

                decode_speaker(value, self.hidden_size)
            except SpeakerError as e:
                raise RequestError(f"invalid voice: {e}", "voice", "invalid_voice") from e
        return value

    def _mix(self, spec: str) -> str:
        """The speaker string of a mix of named or ``seed_N`` voices; RequestError naming the
        unknown voice or what is malformed."""
        from ..voices import mix_speakers, parse_mix

        try:
            parts = parse_mix(spec)
        except VoicesError as e:
            raise RequestError(f"invalid voice: {e}", "voice", "invalid_voice") from e
        speakers = []
        for name, weight in parts:
            seed = _SEED_VOICE.match(name)
            value = self.table.get(name, int(seed.group(1)) if seed else None)
            if value is None:
                known = ", ".join(sorted(self.table))
                raise RequestError(
                    f"unknown voice {name!r} in the mix {spec!r}: use named voices ({known}) "
                    "or seed_N",
                    "voice",
                    "voice_not_found",
                )
            if isinstance(value, int):
                if self.draw is None:
                    raise RequestError("mixes of seed voices need the model", "voice")
                value = self.draw(value)
            speakers.append((value, weight))
        try:
            return mix_speakers(speakers, [n for n, _ in parts])
        except VoicesError as e:
            raise RequestError(f"invalid voice: {e}", "voice", "invalid_voice") from e


# ---- the OpenAPI document ------------------------------------------------------------------

_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
#: One server-sent event: its ``data`` is JSON, ``speech.audio.delta`` (base64 audio in the
#: response format), then ``speech.audio.done`` (with usage) or ``error``.
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "event": {"type": "string"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["speech.audio.delta", "speech.audio.done", "error"]},
                    "audio": {"type": "string", "contentEncoding": "base64"},
                    "usage": {
                        "type": "object",
                        "properties": {
                            "input_tokens": {"type": "integer"},
                            "output_tokens": {"type": "integer"},
                            "total_tokens": {"type": "integer"},
                        },
                    },
                    "error": _ERROR_SCHEMA["properties"]["error"],
                },
            },
        },
    },
}
_ERRORS = {
    "400": "the request is malformed or a value is out of range",
    "401": "missing or wrong API key (when the server has one)",
    "403": "the Host header is not allowed (DNS-rebinding protection, no API key)",
    "404": "no such model",
    "413": "the body is larger than the server's limit",
    "415": "the body is not sent as application/json",
    "431": "the request headers are larger than the server's limit",
    "429": "the queue is full: retry after Retry-After seconds",
    "500": "synthesis failed (the message names the cause)",
}


def error_response(description: str, retry_after: bool = False) -> dict[str, Any]:
    """An OpenAPI response object of the OpenAI-shaped error body."""
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    if retry_after:
        out["headers"] = {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}}
    return out


def speech_openapi(
    media_types: dict[str, str], voice_names: list[str], max_new_token: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``POST /v1/audio/speech`` operation fields and the component schemas it uses.

    The request body is :class:`SpeechRequest`'s own JSON schema, with ``voice`` narrowed to
    the named voices and ``seed_N`` (speaker strings are accepted too but have no pattern) and
    ``max_new_token`` bounded by the server's limit. Responses: the audio of each
    ``response_format`` (its media type), ``text/event-stream`` for ``stream_format: sse``,
    and the error body for each 4xx/5xx status.
    """
    schema = SpeechRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(schema.pop("$defs", {}))
    props = schema["properties"]
    names = {"type": "string", "enum": sorted(voice_names)}
    seed_voice = {"type": "string", "pattern": r"^seed_[0-9]{1,18}$"}
    voice_id = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "properties": {"id": {"anyOf": [names, seed_voice]}},
    }
    props["voice"] = {"anyOf": [names, seed_voice, voice_id], **_doc(props["voice"])}
    props["max_new_token"] = {
        "anyOf": [{"type": "integer", "minimum": 1, "maximum": max_new_token}, {"type": "null"}],
        "default": None,
    }
    components.pop("VoiceId", None)
    components["SpeechRequest"] = schema
    components["Error"] = _ERROR_SCHEMA
    audio_types = sorted({media_types[f] for f in RESPONSE_FORMATS})
    content = {t: {"schema": {"type": "string", "format": "binary"}} for t in audio_types}
    content["text/event-stream"] = {"schema": _SSE_EVENT}
    responses: dict[str, Any] = {
        "200": {"description": "the audio (or its SSE events)", "content": content}
    }
    for status, text in _ERRORS.items():
        responses[status] = error_response(text, retry_after=status == "429")
    operation = {
        "summary": "Create speech (OpenAI-compatible)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/SpeechRequest"}}
            },
        },
        "responses": responses,
    }
    return operation, components


def _doc(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k in ("description", "title")}
