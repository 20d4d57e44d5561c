"""The OpenAPI document of the speech routes: their real bodies and responses (FastAPI cannot
see them: the routes read the body themselves, to bound it before parsing)."""

from __future__ import annotations

from typing import Any, Optional

from .google import SynthesizeSpeechRequest
from .schemas import RESPONSE_FORMATS, SpeechBody

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
#: response format; with captions, ``speech.caption`` and ``speech.mark`` events as segments
#: end), then ``speech.audio.done`` (with usage) or ``error``.
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
                    "type": {
                        "enum": [
                            "speech.audio.delta",
                            "speech.caption",
                            "speech.mark",
                            "speech.audio.done",
                            "error",
                        ]
                    },
                    "start": {"type": "number"},
                    "end": {"type": "number"},
                    "text": {"type": "string"},
                    "name": {"type": "string"},
                    "time": {"type": "number"},
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
    media_types: dict[str, str], voice_names: Optional[list[str]], max_new_token: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``POST /v1/audio/speech`` operation fields and the component schemas it uses.

    The request body is :class:`SpeechBody`'s own JSON schema, with ``voice`` narrowed to
    the named voices and ``seed_N`` (speaker strings are accepted too but have no pattern;
    ``voice_names`` None: the names are not shown, any string) and ``max_new_token`` bounded
    by the server's limit. Responses: the audio of each ``response_format`` (its media type),
    ``text/event-stream`` for ``stream_format: sse``, and the error body for each 4xx/5xx
    status.
    """
    schema = SpeechBody.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(schema.pop("$defs", {}))
    props = schema["properties"]
    names: dict[str, Any] = {"type": "string"}
    if voice_names is not None:
        names["enum"] = sorted(voice_names)
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
    components["SpeechBody"] = schema
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
                "application/json": {"schema": {"$ref": "#/components/schemas/SpeechBody"}}
            },
        },
        "responses": responses,
    }
    return operation, components


#: The JSON answer of ``POST /v1/audio/captioned_speech``.
_CAPTIONED: dict[str, Any] = {
    "type": "object",
    "required": ["audio", "format", "duration", "captions", "marks"],
    "properties": {
        "audio": {"type": "string", "contentEncoding": "base64"},
        "format": {"enum": list(RESPONSE_FORMATS)},
        "duration": {"type": "number"},
        "captions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "end", "text"],
                "properties": {
                    "start": {"type": "number"},
                    "end": {"type": "number"},
                    "text": {"type": "string"},
                },
            },
        },
        "marks": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "time"],
                "properties": {"name": {"type": "string"}, "time": {"type": "number"}},
            },
        },
    },
}


def captioned_openapi(speech: dict[str, Any]) -> dict[str, Any]:
    """The ``POST /v1/audio/captioned_speech`` operation: the speech operation's body, and a
    JSON answer (the encoded audio and its captions) or its SSE events."""
    content = {
        "application/json": {"schema": _CAPTIONED},
        "text/event-stream": speech["responses"]["200"]["content"]["text/event-stream"],
    }
    ok = {"description": "the audio and its captions (or their SSE events)", "content": content}
    return {
        **speech,
        "summary": "Create speech with its captions",
        "responses": {**speech["responses"], "200": ok},
    }


#: Google's error body (``google.rpc.Status`` in JSON), with our ``ErrorInfo`` detail.
_GOOGLE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "integer"},
                "message": {"type": "string"},
                "status": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["@type", "reason", "domain"],
                        "properties": {
                            "@type": {"type": "string"},
                            "reason": {"type": "string"},
                            "domain": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        }
    },
}
_GOOGLE_ERRORS = {
    "400": "INVALID_ARGUMENT: a field missing, unknown or out of range, bad SSML, an unknown "
    "voice, nothing to speak",
    "401": "UNAUTHENTICATED: missing or wrong API key (when the server has one)",
    "403": "PERMISSION_DENIED: the Host header is not allowed (no API key)",
    "413": "the body is larger than the server's limit",
    "415": "the body is not sent as application/json",
    "431": "the request headers are larger than the server's limit",
    "429": "RESOURCE_EXHAUSTED: the queue is full: retry after Retry-After seconds",
    "500": "INTERNAL: synthesis failed (the message names the cause)",
}


def google_openapi(voice_names: Optional[list[str]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``POST /v1/text:synthesize`` operation (Google Cloud Text-to-Speech's shape) and
    its component schemas: :class:`~.google.SynthesizeSpeechRequest`'s own JSON schema, with
    ``voice.name`` narrowed to the named voices and ``seed_N`` as in :func:`speech_openapi`
    (``voice_names`` None: any string); the answer ``{"audioContent"}``; Google's error body
    for each 4xx/5xx."""
    schema = SynthesizeSpeechRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(schema.pop("$defs", {}))
    components["SynthesizeSpeechRequest"] = schema
    names: dict[str, Any] = {"type": "string"}
    if voice_names is not None:
        names["enum"] = sorted(voice_names)
    seed_voice = {"type": "string", "pattern": r"^seed_[0-9]{1,18}$"}
    props = components["VoiceSelectionParams"]["properties"]
    props["name"] = {"anyOf": [names, seed_voice, {"type": "null"}], "default": None}
    components["SynthesizeSpeechResponse"] = {
        "type": "object",
        "required": ["audioContent"],
        "properties": {"audioContent": {"type": "string", "contentEncoding": "base64"}},
    }
    components["GoogleError"] = _GOOGLE_ERROR
    ref = {"$ref": "#/components/schemas/GoogleError"}
    responses: dict[str, Any] = {
        "200": {
            "description": "the audio file, base64 (LINEAR16: a WAV file, header included)",
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/SynthesizeSpeechResponse"}
                }
            },
        }
    }
    for status, text in _GOOGLE_ERRORS.items():
        responses[status] = {"description": text, "content": {"application/json": {"schema": ref}}}
    responses["429"]["headers"] = {
        "Retry-After": {"description": "seconds", "schema": {"type": "string"}}
    }
    operation = {
        "summary": "Synthesize speech (Google Cloud Text-to-Speech's REST shape)",
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"$ref": "#/components/schemas/SynthesizeSpeechRequest"}
                }
            },
        },
        "responses": responses,
    }
    return operation, components


def _doc(prop: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in prop.items() if k in ("description", "title")}


__all__ = ["captioned_openapi", "error_response", "google_openapi", "speech_openapi"]
