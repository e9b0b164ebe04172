"""API keys, checked before anything else: no route and no body parsing for anonymous clients.

Each key has a role (``keys.Role``); the guard finds the key's holder and leaves it in the request's scope,
where ``deps.require`` checks the role each route needs.
"""

from __future__ import annotations

import hmac
import json

from facefit.serve.keys import Client
from facefit.serve.limits import App, Receive, Scope, Send

# Open without a key: liveness probes, the web page (it asks for the key itself) and the API's description,
# so that /docs can load and offer its Authorize button. None of them reads or changes the gallery.
OPEN_PATHS = frozenset({"/health", "/", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
OPEN_PREFIXES = ("/ui/",)  # the page's scripts and style
CLIENT = "facefit.client"  # the scope key the key's holder is left under


class ApiKeyGuard:
    """ASGI middleware: 401 unless the request carries ``Authorization: Bearer <key>`` of a known key.

    A middleware rather than a dependency: FastAPI reads and parses the body before any dependency runs, so
    an anonymous client could make the server spool uploads.
    """

    def __init__(self, app: App, clients: dict[str, Client]) -> None:
        self.app = app
        # The token is compared stripped, so the keys are too.
        self.clients = [(key.strip().encode(), client) for key, client in clients.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = self._route_path(scope)
        client = self._holder(scope)
        if client is not None:
            scope[CLIENT] = client
        if client is not None or path in OPEN_PATHS or (path.startswith(OPEN_PREFIXES) and ".." not in path):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong API key (Authorization: Bearer <key>)"}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})

    def _holder(self, scope: Scope) -> Client | None:
        given = next((v for k, v in scope.get("headers") or [] if k.lower() == b"authorization"), b"")
        scheme, _, token = given.partition(b" ")
        token = token.strip()
        found = None
        # Every key is compared, in constant time each, so the time taken says nothing about which one nearly
        # matched, or whether any did.
        for key, client in self.clients:
            if hmac.compare_digest(token, key) and scheme.lower() == b"bearer":
                found = client
        return found

    @staticmethod
    def _route_path(scope: Scope) -> str:
        # Behind a proxy prefix (--root-path) the path may carry the prefix; the routes do not.
        path, root = scope.get("path", ""), scope.get("root_path", "")
        return path[len(root):] if root and path.startswith(root) else path
