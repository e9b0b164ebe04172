"""The API key, checked before anything else: no route, no body parsing and no docs for anonymous clients."""

from __future__ import annotations

import hmac
import json

from facefit.serve.limits import App, Receive, Scope, Send

OPEN_PATHS = frozenset({"/health"})  # liveness probes carry no key


class ApiKeyGuard:
    """ASGI middleware: 401 unless the request carries ``Authorization: Bearer <key>`` (``/health`` excepted).

    A middleware rather than a dependency: FastAPI reads and parses the body before any dependency runs, so
    an anonymous client could make the server spool uploads; and ``/docs`` and ``/openapi.json`` have none.
    """

    def __init__(self, app: App, key: str) -> None:
        self.app = app
        self.key = key.strip().encode()  # the token is compared stripped, so the key is too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._route_path(scope) in OPEN_PATHS or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong API key (Authorization: Bearer <key>)"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, scope: Scope) -> bool:
        given = next((v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.key)

    @staticmethod
    def _route_path(scope: Scope) -> str:
        # Behind a proxy prefix (--root-path) the path may carry the prefix; the routes do not.
        path, root = scope.get("path", ""), scope.get("root_path", "")
        return path[len(root):] if root and path.startswith(root) else path
