"""Requests of the OpenAI-compatible server: validation, the ``speed`` mapping, the OpenAPI
document (voices: :mod:`chattts.server.voices`).

Nothing here imports FastAPI: the rules are plain functions and a pydantic model, so they can
be tested (and reused) without a web server.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from ..errors import EmptyInputError, RequestError
from ..pipeline.speech import SpeechRequest
from ..ssml import is_ssml
from ..validation import MAX_SEED, MIN_TEMPERATURE
from ..voices.mix import MAX_MIX_TERMS, MAX_VOICE_CHARS

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


def integral(value: object) -> object:
    """JSON Schema's integers include 10.0: an integral float becomes an int, nothing else."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: The ``voice`` field: at most MAX_VOICE_CHARS characters (a mix: at most MAX_MIX_TERMS terms).
VoiceText = Annotated[str, Field(max_length=MAX_VOICE_CHARS)]


class VoiceId(BaseModel):
    """OpenAI's custom voice object, ``{"id": "..."}``."""

    model_config = ConfigDict(extra="forbid")
    id: VoiceText


class SpeechBody(BaseModel):
    """The body of ``POST /v1/audio/speech`` and ``/v1/audio/captioned_speech`` (OpenAI's
    fields and ChatTTS's extras). ``input`` that starts with ``<speak`` is SSML
    (docs/ssml.md); ``speed`` is exact tempo (the answer lasts 1/speed of the speed-1
    answer, pitch kept); ChatTTS's ``[speed_N]`` prompt is ``chattts_speed``."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    model: str = Field(json_schema_extra={"enum": list(MODEL_NAMES)})
    input: str = Field(
        max_length=MAX_INPUT_CHARS, json_schema_extra={"minLength": 1, "pattern": r"\S"}
    )
    voice: Union[VoiceText, VoiceId] = Field(
        description="a named voice (GET /v1/audio/voices), seed_N, a mix ('alloy*0.7+nova*0.3', "
        f"at most {MAX_MIX_TERMS} terms), {{'id': ...}}, or a speaker string (chattts speaker); "
        f"at most {MAX_VOICE_CHARS} characters"
    )
    instructions: Optional[str] = None
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(1.0, ge=0.25, le=4.0)
    stream_format: Literal["audio", "sse"] = "audio"
    # ChatTTS extras
    seed: Optional[Annotated[int, Field(ge=0, le=MAX_SEED), BeforeValidator(integral)]] = None
    temperature: Optional[float] = Field(None, ge=MIN_TEMPERATURE, le=2.0)
    top_p: Optional[float] = Field(None, gt=0.0, le=1.0)
    top_k: Optional[Annotated[int, Field(ge=1, le=1000), BeforeValidator(integral)]] = None
    refine: bool = False
    max_new_token: Optional[Annotated[int, Field(ge=1), BeforeValidator(integral)]] = None
    chattts_speed: Optional[Annotated[int, Field(ge=0, le=9), BeforeValidator(integral)]] = None
    # finished audio (docs/captions.md)
    loudness: Optional[float] = Field(None, ge=-70.0, le=0.0)
    pitch: Optional[float] = Field(None, ge=-12.0, le=12.0)
    gain: Optional[float] = Field(None, ge=-60.0, le=40.0)


def speech_request(body: SpeechBody, captions: bool, max_new_token: int) -> SpeechRequest:
    """The one mapping of a request body onto the speech path's request: ``input`` (SSML when
    it starts with ``<speak``), sampling, ``speed`` as exact tempo, ChatTTS's ``[speed_N]``
    from ``chattts_speed``, finishing; ``captions``: cut sentences too long for a cue into
    clauses. The voice is resolved by the caller (the server's voice table)."""
    return SpeechRequest.of(
        body.input,
        ssml=is_ssml(body.input),
        seed=body.seed,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        max_new_token=body.max_new_token or max_new_token,
        speed=body.chattts_speed,
        refine=body.refine,
        tempo=body.speed,
        pitch=body.pitch or 0.0,
        gain=body.gain or 0.0,
        loudness=body.loudness,
        captions=captions,
    )


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


def load_json(body: bytes) -> dict[str, Any]:
    """A request body's JSON object, or :class:`RequestError` (400 ``invalid_json``): an empty
    body, invalid UTF-8 or JSON, ``NaN``/``Infinity``, integers of more than
    :data:`MAX_INT_DIGITS` digits, nesting deeper than :data:`MAX_JSON_DEPTH`, not an object."""
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
    return data


def parse_request(body: bytes) -> SpeechBody:
    """Parse and validate a request body (JSON) or raise :class:`RequestError`.

    Refused with 400: what :func:`load_json` refuses, and whatever :class:`SpeechBody` does
    not accept; an unknown model is 404.
    """
    data = load_json(body)
    try:
        req = SpeechBody.model_validate(data)
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
