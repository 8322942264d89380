"""REST endpoints served on the WebSocket port: /call/lists, /call/kill/{id}, /iceservers, /health, /metrics
(Prometheus text, :mod:`pbx.server.metrics`; with ``metrics_public`` a loopback peer needs no token), and the
web console (/console: a page that calls the server over WebRTC and drives the call).

Answered from ``websockets``' ``process_request`` hook, before any WebSocket handshake: the access
policy first (:mod:`pbx.server.auth`), then requests to the WebSocket paths fall through (``None``) to
the handshake, everything else gets a JSON response.
"""

from __future__ import annotations

import email.utils
import functools
import http
import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any, Protocol
from urllib.parse import unquote

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers, MultipleValuesError
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

from pbx.server.admission import RETRY_AFTER_S
from pbx.server.auth import AccessPolicy, is_loopback
from pbx.server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE

WEBSOCKET_PATHS = {"/call": "websocket", "/call/sip": "sip", "/call/webrtc": "webrtc"}


class CallRegistry(Protocol):
    def refuse_connection(self, path: str) -> str | None: ...
    async def all_calls(self) -> list[dict[str, Any]]: ...
    def kill(self, call_id: str) -> bool: ...
    def ice_servers(self) -> list[dict[str, Any]]: ...
    async def all_health(self) -> dict[str, Any]: ...
    async def metrics_text(self) -> str: ...


def json_response(status: http.HTTPStatus, body: Any, extra: list[tuple[str, str]] | None = None) -> Response:
    data = json.dumps(body).encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data))),
                       ("Connection", "close"), *(extra or [])])
    return Response(status.value, status.phrase, headers, data)


@functools.cache
def console_page() -> bytes:
    """The web console (pbx/server/console.html, shipped in the package)."""
    return resources.files("pbx.server").joinpath("console.html").read_bytes()


def html_response(body: bytes) -> Response:
    # the page runs only its own script: no inline handlers from elsewhere, no framing by other sites
    headers = Headers([("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))),
                       ("Connection", "close"), ("X-Frame-Options", "DENY"),
                       ("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; "
                                                   "style-src 'unsafe-inline'; media-src * blob:; "
                                                   "connect-src 'self' ws: wss:; frame-ancestors 'none'")])
    return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, body)


def error(status: http.HTTPStatus, message: str, extra: list[tuple[str, str]] | None = None) -> Response:
    return json_response(status, {"error": message}, extra)


def json_reject(status: http.HTTPStatus, text: str) -> Response:
    """websockets' own refusals (a request line or headers too long, a handshake failure) in JSON
    like every other error of the server, instead of plain text."""
    response = error(status, text.strip())
    response.headers["Date"] = email.utils.formatdate(usegmt=True)
    return response


class JsonErrorConnection(ServerConnection):
    """A server connection whose protocol answers its own refusals with :func:`json_reject`."""

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        protocol.reject = json_reject  # type: ignore[method-assign,assignment]
        super().__init__(protocol, *args, **kwargs)


def text_response(body: str, content_type: str) -> Response:
    data = body.encode()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Connection", "close")])
    return Response(http.HTTPStatus.OK.value, http.HTTPStatus.OK.phrase, headers, data)


def from_loopback(connection: ServerConnection) -> bool:
    try:
        peer = connection.remote_address
    except OSError:
        return False
    return isinstance(peer, tuple) and bool(peer) and is_loopback(str(peer[0]))


def make_router(registry: CallRegistry, policy: AccessPolicy, metrics_public: bool = False
                ) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    async def route(connection: ServerConnection, request: Request) -> Response | None:
        try:
            return await answer(connection, request)
        except MultipleValuesError as exc:   # e.g. two Authorization or Origin headers
            return error(http.HTTPStatus.BAD_REQUEST, f"the {exc.args[0]} header is given more than once")

    async def answer(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        method = request.method
        refusal = policy.refuse(request.path, request.headers)
        if refusal is not None and refusal.status == 401 and path == "/metrics" and metrics_public \
                and from_loopback(connection):
            refusal = None      # a local Prometheus agent scrapes without the token (metrics_public)
        # A handshake without the token is completed and then closed with 1008 (pbx.server.app), so a
        # browser can read why; everything else refused is answered here.
        if refusal is not None and not (refusal.status == 401 and path in WEBSOCKET_PATHS):
            return error(http.HTTPStatus(refusal.status), refusal.message,
                         [("WWW-Authenticate", 'Bearer realm="pypbx"')] if refusal.status == 401 else [])
        if path in WEBSOCKET_PATHS:
            if method != "GET":
                return error(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
            if "upgrade" not in request.headers.get("Connection", "").lower():
                return error(http.HTTPStatus.UPGRADE_REQUIRED, f"{path} is a WebSocket endpoint")
            full = registry.refuse_connection(request.path)
            if full is not None:
                return error(http.HTTPStatus.SERVICE_UNAVAILABLE, full, [("Retry-After", str(RETRY_AFTER_S))])
            return None
        if path == "/call/lists" and method == "GET":
            return json_response(http.HTTPStatus.OK, {"calls": await registry.all_calls()})
        if path.startswith("/call/kill/") and method == "POST":
            call_id = unquote(path[len("/call/kill/"):])
            if not registry.kill(call_id):
                return error(http.HTTPStatus.NOT_FOUND, f"no call with id {call_id!r}")
            return json_response(http.HTTPStatus.OK, True)
        if path == "/iceservers" and method == "GET":
            return json_response(http.HTTPStatus.OK, registry.ice_servers())
        if path == "/health" and method == "GET":
            return json_response(http.HTTPStatus.OK, await registry.all_health())
        if path == "/metrics" and method == "GET":
            return text_response(await registry.metrics_text(), METRICS_CONTENT_TYPE)
        if path == "/console" and method == "GET":
            return html_response(console_page())
        known = {"/call/lists", "/iceservers", "/health", "/metrics", "/console"}
        if path in known or path.startswith("/call/kill/"):
            return error(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{method} not allowed on {path}")
        return error(http.HTTPStatus.NOT_FOUND, f"no such endpoint: {path}")

    return route
