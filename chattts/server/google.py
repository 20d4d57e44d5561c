"""Google Cloud Text-to-Speech's REST shape: ``POST /v1/text:synthesize`` (docs/server.md,
"Google Cloud Text-to-Speech").

A body of Google's JSON (``input``, ``voice``, ``audioConfig``) is validated
(:class:`SynthesizeSpeechRequest`, the schema the OpenAPI document shows), mapped onto the
speech path's request (:func:`speech_request`), planned and run by the server's worker as a
:class:`~chattts.server.batcher.SpeechJob` like every other route, and answered whole:
``{"audioContent": base64 of the file}`` (:func:`encode`). Every error answered on this path,
the guard's (API key, Host) included, has Google's shape (:class:`GoogleErrors`).
"""

from __future__ import annotations

import base64
import json
import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, Optional, Union

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import SkipJsonSchema
from starlette.concurrency import run_in_threadpool

from .. import audio
from ..audio.finish import RANGES
from ..audio.speech import Speech
from ..errors import EmptyInputError, RequestError
from ..pipeline.speech import SpeechRequest
from ..voices.mix import MAX_VOICE_CHARS
from .routes import CLIENT_CLOSED, busy_response, check_json, queue_job, read_body, whole_speech
from .schemas import integral, load_json

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from .service import SpeechService

#: The route, as Google's REST API names it.
GOOGLE_PATH = "/v1/text:synthesize"
#: ``audioEncoding`` -> our format (LINEAR16 is a WAV file, header included, as Google sends it).
ENCODINGS: dict[str, str] = {"LINEAR16": "wav", "MP3": "mp3", "OGG_OPUS": "opus"}
#: The enum numbers of Google's proto, which clients may send instead of the names.
_ENCODING_NUMBERS = {1: "LINEAR16", 2: "MP3", 3: "OGG_OPUS"}
#: ``ssmlGender`` values (names and enum numbers): accepted and not used (our voices have none).
GENDERS = ("SSML_VOICE_GENDER_UNSPECIFIED", "MALE", "FEMALE", "NEUTRAL")
#: Google's device profiles (``effectsProfileId``): accepted and not applied.
EFFECTS_PROFILES = (
    "wearable-class-device",
    "handset-class-device",
    "headphone-class-device",
    "small-bluetooth-speaker-class-device",
    "medium-bluetooth-speaker-class-device",
    "large-home-entertainment-class-device",
    "large-automotive-class-device",
    "telephony-class-application",
)
#: Longest ``input.text`` / ``input.ssml``, in characters (Google's limit is 5,000 bytes).
MAX_INPUT_CHARS = 5000
#: ``sampleRateHertz`` accepted (0: the model's own, 24 kHz).
SAMPLE_RATES = (8000, 48000)
#: ``volumeGainDb`` range, Google's (below -60 dB, finishing's lowest gain, the rest is a
#: plain scale applied after it).
VOLUME_RANGE = (-96.0, 16.0)
#: ``languageCode``: English (``en``, ``en-US``...) or Chinese (``zh-CN``, ``cmn-Hans-CN``...).
LANGUAGE_PATTERN = r"^([Ee][Nn]|[Zz][Hh]|[Cc][Mm][Nn])(-[A-Za-z0-9]{1,8})*$"
#: The voice without ``voice.name`` (Google picks one by language and gender; ours have none).
DEFAULT_VOICE = "alloy"
#: Every request is sampled with this seed (segment i: seed + i), so that the same request
#: gives the same audio, as Google's voices do.
SEED = 0
#: Google's canonical status name of each HTTP status this path answers.
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    431: "INVALID_ARGUMENT",
    499: "CANCELLED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
ERROR_DOMAIN = "chattts"


def _speaking_rate(value: float) -> float:
    if value != 0 and not 0.25 <= value <= 4.0:
        raise ValueError("speakingRate must be 0 (the default, 1.0) or within [0.25, 4.0]")
    return value


def _sample_rate(value: int) -> int:
    low, high = SAMPLE_RATES
    if value != 0 and not low <= value <= high:
        raise ValueError(f"sampleRateHertz must be 0 (24000) or within [{low}, {high}]")
    return value


def _either(low: float, high: float, kind: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"anyOf": [{"type": kind, "const": 0}, {"type": kind, "minimum": low, "maximum": high}]}
    )


SpeakingRate = Annotated[float, AfterValidator(_speaking_rate), _either(0.25, 4.0, "number")]
SampleRate = Annotated[
    int, BeforeValidator(integral), AfterValidator(_sample_rate), _either(*SAMPLE_RATES, "integer")
]
Encoding = Union[Literal["LINEAR16", "MP3", "OGG_OPUS"], Literal[1, 2, 3]]
Gender = Union[Literal[GENDERS], Literal[0, 1, 2, 3]]  # type: ignore[valid-type]
InputText = Annotated[
    Union[str, SkipJsonSchema[None]],
    Field(max_length=MAX_INPUT_CHARS, json_schema_extra={"minLength": 1, "pattern": r"\S"}),
]


class _Message(BaseModel):
    """Google's JSON: camelCase names, unknown fields refused."""

    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, alias_generator=to_camel
    )


class SynthesisInput(_Message):
    """What to say: ``text`` (plain text, never read as SSML) or ``ssml``, exactly one."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["text"]}, {"required": ["ssml"]}]}
    )
    text: InputText = None
    ssml: InputText = None

    @field_validator("text", "ssml", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("give a string, or leave the field out")
        return value

    @model_validator(mode="after")
    def _one(self) -> SynthesisInput:
        if (self.text is None) == (self.ssml is None):
            raise ValueError("give exactly one of input.text and input.ssml")
        return self


class VoiceSelectionParams(_Message):
    """The voice: ``languageCode`` (the normaliser's language) and ``name`` (one of the
    server's voices, ``seed_N``, a mix or a speaker string; default :data:`DEFAULT_VOICE`)."""

    language_code: str = Field(pattern=LANGUAGE_PATTERN, max_length=35)
    name: Optional[str] = Field(None, max_length=MAX_VOICE_CHARS)
    ssml_gender: Optional[Gender] = None


class AudioConfig(_Message):
    """The answer's audio: encoding, speaking rate (exact tempo), pitch (semitones), gain
    (dB), sample rate (Hz) and device profiles (accepted, not applied)."""

    audio_encoding: Encoding
    speaking_rate: Optional[SpeakingRate] = None
    pitch: Optional[float] = Field(None, ge=RANGES["pitch"][0], le=RANGES["pitch"][1])
    volume_gain_db: Optional[float] = Field(None, ge=VOLUME_RANGE[0], le=VOLUME_RANGE[1])
    sample_rate_hertz: Optional[SampleRate] = None
    effects_profile_id: Optional[
        Annotated[list[Literal[EFFECTS_PROFILES]], Field(max_length=8)]  # type: ignore[valid-type]
    ] = None

    @property
    def format(self) -> str:
        """Our format name of ``audioEncoding``."""
        name = self.audio_encoding
        return ENCODINGS[_ENCODING_NUMBERS.get(name, name)]  # type: ignore[arg-type]


class SynthesizeSpeechRequest(_Message):
    """The body of ``POST /v1/text:synthesize``."""

    input: SynthesisInput
    voice: VoiceSelectionParams
    audio_config: AudioConfig


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(x) for x in loc if not isinstance(x, int) and "[" not in str(x))


def _first_error(e: ValidationError) -> RequestError:
    errors = e.errors()  # an unknown name first: it is likely the misspelling of a missing one
    err = next((x for x in errors if x.get("type") == "extra_forbidden"), errors[0])
    path, kind = _path(err.get("loc", ())), err.get("type", "")
    if kind == "extra_forbidden":
        parent, _, name = path.rpartition(".")
        return RequestError(
            f'Invalid JSON payload received. Unknown name "{name}" at '
            f"'{parent or 'the request'}': Cannot find field.",
            path,
            "unknown_parameter",
        )
    if kind == "missing":
        return RequestError(f"Missing required field: {path}", path, "missing_required")
    if path == "audioConfig.pitch" and kind in ("greater_than_equal", "less_than_equal"):
        low, high = RANGES["pitch"]
        return RequestError(
            f"Invalid value at 'audioConfig.pitch' ({err.get('input')}): this server shifts "
            f"pitch by {low:g} to {high:g} semitones (Google's range is -20 to 20); refused, "
            "not clamped",
            path,
            "invalid_value",
        )
    if path == "voice.languageCode" and kind == "string_pattern_mismatch":
        return RequestError(
            f"Invalid value at 'voice.languageCode' ({err.get('input')!r}): this server speaks "
            "English (en, en-US...) and Chinese (zh-CN, cmn-Hans-CN...)",
            path,
            "unsupported_language",
        )
    if path == "audioConfig.audioEncoding":
        return RequestError(
            f"Invalid value at 'audioConfig.audioEncoding' ({err.get('input')!r}): this server "
            f"encodes {', '.join(ENCODINGS)}",
            path,
            "unsupported_encoding",
        )
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return RequestError(f"Invalid value at '{path or 'input'}': {msg}", path, "invalid_value")


def parse_body(raw: bytes) -> SynthesizeSpeechRequest:
    """A request body, validated, or :class:`RequestError` (400 naming the field)."""
    data = load_json(raw)
    try:
        body = SynthesizeSpeechRequest.model_validate(data)
    except ValidationError as e:
        raise _first_error(e) from e
    if body.input.text is not None and not body.input.text.strip():
        raise RequestError(
            f"'input.text': {EmptyInputError(body.input.text)}", "input.text", "empty_input"
        )
    return body


def language(code: str) -> str:
    """``languageCode`` -> the normaliser's language: ``en-*`` -> ``"en"``, ``zh-*`` and
    ``cmn-*`` -> ``"zh"``."""
    return "en" if code.split("-", 1)[0].lower() == "en" else "zh"


def speech_request(body: SynthesizeSpeechRequest, max_new_token: int) -> SpeechRequest:
    """The one mapping of a Google body onto the speech path's request: ``input.ssml`` is
    SSML, ``input.text`` plain text; ``languageCode`` the normaliser's language;
    ``speakingRate`` exact tempo (0: 1.0); ``pitch`` semitones; ``volumeGainDb`` gain (the
    part below finishing's -60 dB is applied by :func:`encode`); sampled with :data:`SEED`."""
    config = body.audio_config
    gain = config.volume_gain_db or 0.0
    return SpeechRequest.of(
        body.input.ssml if body.input.ssml is not None else body.input.text or "",
        ssml=body.input.ssml is not None,
        lang=language(body.voice.language_code),
        seed=SEED,
        max_new_token=max_new_token,
        tempo=config.speaking_rate or 1.0,
        pitch=config.pitch or 0.0,
        gain=max(gain, RANGES["gain"][0]),
        captions=False,
    )


def encode(speech: Speech, config: AudioConfig) -> bytes:
    """The answer's file: the finished speech with the rest of a gain below -60 dB applied,
    resampled to ``sampleRateHertz`` and encoded (MP3 and Opus at that rate when the codec
    has it, else at the next higher rate it has)."""
    wav = speech.audio
    rest = (config.volume_gain_db or 0.0) - RANGES["gain"][0]
    if rest < 0:
        wav = (wav * np.float32(math.pow(10.0, rest / 20.0))).astype(np.float32)
    rate = config.sample_rate_hertz or speech.sample_rate
    wav = audio.resample(wav, speech.sample_rate, rate)
    return audio.encode_audio(wav, config.format, rate)


def error_body(
    status: int, message: str, reason: Optional[str] = None, field: Optional[str] = None
) -> dict[str, Any]:
    """Google's error body: ``{"error": {"code", "message", "status"[, "details"]}}``; with a
    ``reason`` (our machine-readable code), a ``google.rpc.ErrorInfo`` detail that carries it
    (upper case) and the ``field`` at fault."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT"),
    }
    if reason:
        info: dict[str, Any] = {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": reason.upper(),
            "domain": ERROR_DOMAIN,
        }
        if field:
            info["metadata"] = {"field": field}
        error["details"] = [info]
    return {"error": error}


def _google_error(status: int, body: bytes) -> bytes:
    """An error answer's body (OpenAI's shape, as the app's other layers write it) in
    Google's shape."""
    try:
        err = json.loads(body)["error"]
        message, reason, field = str(err["message"]), err.get("code"), err.get("param")
    except (ValueError, KeyError, TypeError):
        message, reason, field = body.decode("utf-8", "replace").strip() or "error", None, None
    if not isinstance(reason, str):
        reason = None
    return json.dumps(error_body(status, message, reason, field)).encode()


class GoogleErrors:
    """ASGI middleware: every error answer (status ≥ 400) on :data:`GOOGLE_PATH` gets
    Google's error shape, whichever layer answered it (the guard's 401 and 403, the body
    limits, the route's 400s, 429 with its ``Retry-After``, 500)."""

    def __init__(self, app: ASGIApp, path: str = GOOGLE_PATH) -> None:
        self.app, self.path = app, path

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        body = bytearray()

        async def send_google(message: dict) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                held.update(message)
                return
            if not held or message["type"] != "http.response.body":
                await send(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            data = _google_error(held["status"], bytes(body))
            keep = [(k, v) for k, v in held.get("headers", ()) if k.lower() not in _REPLACED]
            headers = [*keep, (b"content-type", b"application/json"), _length(data)]
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        await self.app(scope, receive, send_google)


_REPLACED = (b"content-type", b"content-length")


def _length(data: bytes) -> tuple[bytes, bytes]:
    return b"content-length", str(len(data)).encode()


def install_google(app: FastAPI, service: SpeechService) -> None:
    """``POST /v1/text:synthesize`` and its error shape (:class:`GoogleErrors`)."""

    @app.post(GOOGLE_PATH)
    async def synthesize(request: Request) -> Response:
        try:
            raw = await read_body(request)
            check_json(request)
            body = parse_body(raw)
            req = speech_request(body, service.max_new_token_limit)
            name = body.voice.name or DEFAULT_VOICE
            field = "input.ssml" if body.input.ssml is not None else "input.text"
            names = ("audioConfig.speakingRate", "audioConfig.pitch")
            items = await run_in_threadpool(service.plan_request, req, name, field, names)
            job, first = await queue_job(service, request, req, items)
        except RequestError as e:
            return busy_response(_voice_named(e))
        if first is None:
            return Response(status_code=CLIENT_CLOSED)
        speech = await whole_speech(request, job, first, service.rate)
        if speech is None:
            return Response(status_code=CLIENT_CLOSED)
        data = await run_in_threadpool(encode, speech, body.audio_config)
        return JSONResponse({"audioContent": base64.b64encode(data).decode()})

    app.add_middleware(GoogleErrors)


def _voice_named(e: RequestError) -> RequestError:
    """The server's voice errors name ``voice``; here the field is ``voice.name``."""
    if e.param == "voice":
        e.param = "voice.name"
    return e


__all__ = [
    "DEFAULT_VOICE",
    "ENCODINGS",
    "GOOGLE_PATH",
    "SEED",
    "AudioConfig",
    "GoogleErrors",
    "SynthesisInput",
    "SynthesizeSpeechRequest",
    "VoiceSelectionParams",
    "encode",
    "error_body",
    "install_google",
    "language",
    "parse_body",
    "speech_request",
]
