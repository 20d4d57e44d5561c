"""What the server's routes share: the model, its worker, the voices, the limits, and the checks
of who may call (the Host header, the API key)."""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Optional, Union

from fastapi import Request

from ..errors import EmptyInputError, MissingDependencyError, RequestError, SsmlError
from ..pipeline.speech import PlanItem, SpeechRequest, plan_speech
from ..validation import MAX_NEW_TOKEN
from .batcher import Worker
from .schemas import SpeechBody, VoiceId, speech_request
from .voices import Voices

if TYPE_CHECKING:
    from ..chat import Chat

logger = logging.getLogger("chattts.server")

#: Hosts always accepted in the Host header when the server has no API key.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")
#: Extra hosts accepted in the Host header (comma-separated; ``*``: any), for a server
#: reached under another name without an API key.
ALLOWED_HOSTS_ENV = "CHATTTS_ALLOWED_HOSTS"
WILDCARD_BINDS = ("0.0.0.0", "::", "[::]", "")
#: The header Google's clients send an API key in (accepted as well as ``Authorization``).
GOOGLE_KEY_HEADER = "x-goog-api-key"


class SpeechService:
    """What the routes need: the model, its worker, the voices and the limits.

    Args:
        chat: the loaded model (its pipeline plans requests; the worker generates them).
        voices: the server's named voices and their resolver.
        worker: the scheduler of requests.
        max_new_token_limit: the most code steps a segment may ask for (and its default).
        api_key: required as ``Authorization: Bearer KEY`` when set.
        allowed_hosts: Host header names accepted besides localhost without an API key.
    """

    def __init__(
        self,
        chat: Chat,
        voices: Voices,
        worker: Worker,
        max_new_token_limit: int = 2048,
        api_key: Optional[str] = None,
        allowed_hosts: Sequence[str] = (),
    ) -> None:
        self.chat = chat
        self.voices = voices
        self.worker = worker
        self.api_key = api_key
        if max_new_token_limit > MAX_NEW_TOKEN:
            logger.warning(
                "max_new_token %d is over the cap: %d", max_new_token_limit, MAX_NEW_TOKEN
            )
        self.max_new_token_limit = min(max_new_token_limit, MAX_NEW_TOKEN)
        self.rate = int(chat.config.sample_rate)
        self.per_step = int(chat.config.samples_per_step)
        extra = [h for h in os.environ.get(ALLOWED_HOSTS_ENV, "").split(",") if h.strip()]
        hosts = [h.strip().lower() for h in [*LOCAL_HOSTS, *allowed_hosts, *extra]]
        self.allowed_hosts = {h for h in hosts if h not in WILDCARD_BINDS}

    def plan(self, body: SpeechBody, *, captions: bool) -> tuple[SpeechRequest, list[PlanItem]]:
        """A validated body's planned speech (:func:`speech_request`): it resolves voices
        (draws, mixes) and normalises text, so the routes call it in a thread, never on the
        event loop.

        Raises:
            RequestError: 400 naming the field: nothing to speak or bad SSML (``input``), an
            unknown or bad voice (``voice``), ``max_new_token`` over the limit; a ``speed``
            or ``pitch`` other than 1 and 0 on a server without ``chattts[stretch]``.
        """
        if body.max_new_token is not None and body.max_new_token > self.max_new_token_limit:
            raise RequestError(
                f"'max_new_token' must be at most {self.max_new_token_limit}",
                "max_new_token",
                "invalid_value",
            )
        request = speech_request(body, captions, self.max_new_token_limit)
        return request, self.plan_request(request, body.voice)

    def plan_request(
        self,
        request: SpeechRequest,
        voice: Union[str, VoiceId],
        field: str = "input",
        names: tuple[str, str] = ("speed", "pitch"),
    ) -> list[PlanItem]:
        """A request's planned speech in the server's voices: ``voice`` (a request's voice
        value, :meth:`Voices.fields`) speaks what has no SSML ``<voice>``; ``field`` names the
        text and ``names`` the tempo and pitch fields in error messages. Called in a thread
        (it draws voices and normalises text).

        Raises:
            RequestError: 400: nothing to speak or bad SSML (``field``), an unknown or bad
            voice (``voice``); a tempo or pitch change on a server without
            ``chattts[stretch]`` (naming the field, or ``field`` for SSML prosody).
        """
        default = self.voices.fields(voice)

        def fields(spec: Optional[str]) -> dict[str, Any]:  # SSML <voice name=...> as well
            return default if spec is None else self.voices.fields(spec)

        try:
            return plan_speech(self.chat.pipeline, request, fields)
        except EmptyInputError as e:
            raise RequestError(f"'{field}': {e}", field, "empty_input") from e
        except SsmlError as e:
            raise RequestError(f"'{field}' is not valid SSML: {e}", field, "invalid_ssml") from e
        except MissingDependencyError as e:  # tempo or pitch without pedalboard
            asked = names[0] if request.finish.tempo != 1.0 else names[1]
            if not request.finish.stretches:
                asked = field  # SSML prosody asked for it
            msg = f"'{asked}': this server cannot change tempo or pitch ({e})"
            raise RequestError(msg, asked, "unsupported_value") from e

    def check_host(self, request: Request) -> None:
        """Without an API key, only local hosts (and the configured ones) may be named in
        the Host header, so that a web page cannot reach the server by DNS rebinding."""
        if self.api_key or "*" in self.allowed_hosts:
            return
        host = request.headers.get("host", "").strip().lower()
        name = host[: host.index("]") + 1] if host.startswith("[") and "]" in host else host
        name = name.split(":", 1)[0] if not name.startswith("[") else name
        if host and name not in self.allowed_hosts:
            raise RequestError(
                f"the Host header {host!r} is not allowed: use localhost, or set an API key "
                f"or {ALLOWED_HOSTS_ENV}",
                "host",
                "host_not_allowed",
                status=403,
            )

    def needs_key(self, path: str) -> bool:
        """Whether ``path`` is behind the API key: ``/v1/*``. (The OpenAPI document is open,
        but without a valid key it does not list the voice names; the documentation pages
        are static files.)"""
        return path.startswith("/v1/")

    def authorized(self, request: Request) -> bool:
        """The request carries the API key (or the server has none): as ``Authorization:
        Bearer KEY``, or as ``X-Goog-Api-Key: KEY`` (how Google's clients send an API key)."""
        if not self.api_key:
            return True
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        tokens = [
            bearer if scheme.lower() == "bearer" else "",
            request.headers.get(GOOGLE_KEY_HEADER, ""),
        ]
        key = self.api_key.encode()
        return any(t.strip() and hmac.compare_digest(t.strip().encode(), key) for t in tokens)

    def check_auth(self, request: Request) -> None:
        if not self.authorized(request):
            raise RequestError(
                "invalid or missing API key: send 'Authorization: Bearer KEY' "
                "(or 'X-Goog-Api-Key: KEY')",
                code="invalid_api_key",
                status=401,
            )


__all__ = ["ALLOWED_HOSTS_ENV", "GOOGLE_KEY_HEADER", "LOCAL_HOSTS", "SpeechService"]
