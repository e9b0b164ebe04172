"""``facefit serve``'s HTTP server: uvicorn, with read deadlines and a cap on open connections.

uvicorn closes idle keep-alive connections, but it has no deadline for a request's headers or body:
a client sending one byte every few seconds holds its connection, and its slot, for ever. The
protocol below gives each request ``header_timeout_s`` for its headers (counted from its first byte,
or from the connection's opening) and ``body_timeout_s`` for its body; late ones get a 408 and
are closed. ``max_connections`` is uvicorn's ``limit_concurrency``: beyond it, requests get a 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from facefit.serve.settings import ServeSettings


def run(app: Any, settings: ServeSettings, host: str, port: int) -> None:  # an ASGI app
    """Serve ``app`` until interrupted."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, log_level="info", log_config=_log_config(),
                http=timed_protocol(settings.header_timeout_s, settings.body_timeout_s),
                limit_concurrency=settings.max_connections)


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, with facefit's server log beside it: the gallery's location, kept out of the
    answers, is written there with each gallery error."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["facefit.serve"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _timeout_response(phase: str, limit: float) -> bytes:
    body = json.dumps({"detail": f"the request's {phase} did not arrive within {limit:g} s"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def timed_protocol(header_s: float, body_s: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a deadline for each request's headers and one for its body."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    limits = {"headers": header_s, "body": body_s}

    class TimedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None
        _phase: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm("headers")  # a connection that never sends a byte is timed out too

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._arm(None)
            super().connection_lost(exc)

        def _watch(self) -> None:
            """Which part of a request is awaited now: its headers (some bytes of it have come), its body, or
            nothing (between requests uvicorn's keep-alive timeout applies; while the app works, none)."""
            state = self.conn.their_state
            if state is h11.SEND_BODY:
                phase: str | None = "body"
            elif state is h11.IDLE and self.conn.trailing_data[0]:
                phase = "headers" if self._phase is None else self._phase  # the deadline runs from the first byte
            else:
                phase = None
            if phase != self._phase:
                self._arm(phase)

        def _arm(self, phase: str | None) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
            self._phase, self._deadline = phase, None
            if phase is not None:
                self._deadline = self.loop.call_later(limits[phase], self._expired, phase)

        def _expired(self, phase: str) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            who = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            self.logger.warning("%s - closed: the request's %s did not arrive within %g s", who, phase, limits[phase])
            if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
                self.transport.write(_timeout_response(phase, limits[phase]))
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True  # the app's next receive() says so, instead of waiting
                self.cycle.message_event.set()
            self.transport.close()

    return TimedH11Protocol
