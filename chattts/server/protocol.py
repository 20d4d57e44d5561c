"""Connection limits of ``chattts serve``: slow senders and too many connections.

uvicorn bounds the idle time between requests (``timeout_keep_alive``) and, with h11, the size
of an incomplete request head, but not the time a client may take to send a head or a body:
data trickled a byte at a time keeps a connection open for ever (each byte resets the
keep-alive timer). :func:`limited_h11` adds to uvicorn's h11 protocol, in the smallest way:

- a deadline for the request head (from the connection's start, or from the first byte of a
  later request), and one for the body (from the end of the head); past it the server answers
  408 (when no answer was started) and closes the connection;
- a cap on open connections: one more is answered 503 and closed at once.

docs/limits.md ("Server") lists the defaults; ``chattts serve`` sets them with
``--header-timeout``, ``--body-timeout`` and ``--max-connections``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

logger = logging.getLogger("chattts.server")


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take and how many connections may be open.

    Attributes:
        header_timeout_s: seconds to send a whole request head.
        body_timeout_s: seconds to send a whole request body, once the head is in.
        keep_alive_s: seconds an idle connection stays open between requests (uvicorn's).
        max_connections: most open connections; more are answered 503 and closed.
    """

    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    keep_alive_s: float = 5.0
    max_connections: int = 512

    def __post_init__(self) -> None:
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.max_connections < 1:
            raise ValueError("max_connections must be at least 1")


def raw_error(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole HTTP/1.1 error response (OpenAI's error body) that closes the connection."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    body = json.dumps({"error": error}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


def limited_h11(limits: ConnectionLimits) -> type:
    """uvicorn's h11 protocol class with ``limits``' deadlines and connection cap (pass it as
    ``uvicorn.run(..., http=limited_h11(limits))``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class LimitedH11Protocol(H11Protocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._deadline: Optional[asyncio.TimerHandle] = None
            self._phase: Optional[str] = None
            self._started = False
            if len(self.connections) > limits.max_connections:
                logger.warning("more than %d connections: one refused", limits.max_connections)
                msg = f"more than {limits.max_connections} open connections: retry later"
                transport.write(raw_error(503, "Service Unavailable", msg, "too_many_connections"))
                transport.close()
                return
            self._follow()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            self._want(None)
            super().connection_lost(exc)

        def _follow(self) -> None:
            """Arm the deadline of what the client is sending now (kept while it goes on)."""
            state = self.conn.their_state
            if state is not h11.IDLE:
                self._started = True
            pending = bool(self.conn.trailing_data[0])
            if state is h11.SEND_BODY:
                self._want("body")
            elif state is h11.IDLE and (pending or not self._started):
                self._want("head")
            else:
                self._want(None)

        def _want(self, phase: Optional[str]) -> None:
            if phase == self._phase:
                return
            if self._deadline is not None:
                self._deadline.cancel()
            self._phase, self._deadline = phase, None
            if phase is not None and not self.transport.is_closing():
                seconds = limits.header_timeout_s if phase == "head" else limits.body_timeout_s
                self._deadline = self.loop.call_later(seconds, self._expired, phase)

        def _expired(self, phase: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if phase == "head":
                tell = bool(self.conn.trailing_data[0])  # a silent connection is just closed
            else:
                tell = self.cycle is None or not self.cycle.response_started
            if tell:
                seconds = limits.header_timeout_s if phase == "head" else limits.body_timeout_s
                msg = f"the request {phase} was not received within {seconds:g} s"
                self.transport.write(raw_error(408, "Request Timeout", msg, "request_timeout"))
            logger.info("connection closed: its request %s took too long", phase)
            self.transport.close()

    return LimitedH11Protocol


__all__ = ["ConnectionLimits", "limited_h11", "raw_error"]
