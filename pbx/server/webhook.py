"""The inbound-call webhook: one JSON POST to the operator's URL per incoming INVITE.

The URL comes from the operator's configuration (``[webhook] url``), not from a client, so it may be
on loopback or a private network (no address policy). The whole POST, connect included, is bounded by
``timeout_secs``; any failure, or a status outside 2xx, is a :class:`WebhookError` and the INVITE is
answered 503. The body of the answer is read (bounded) and ignored: the application answers the
call by connecting to ``/call/sip?id=<dialogId>``, not in the webhook's response.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import h11

from pbx.errors import PbxError
from pbx.media.http import USER_AGENT, Url

MAX_RESPONSE_BYTES = 65536


class WebhookError(PbxError):
    """The webhook could not be delivered or did not answer 2xx."""


async def post_json(url: str, payload: dict[str, Any], timeout_s: float) -> int:
    """POST ``payload`` to ``url``; returns the 2xx status, else raises :class:`WebhookError`."""
    try:
        target = Url.parse(url)
    except PbxError as exc:
        raise WebhookError(f"webhook {url}: {exc}") from None
    body = json.dumps(payload).encode()
    try:
        async with asyncio.timeout(timeout_s):
            return await _post(target, body)
    except TimeoutError:
        raise WebhookError(f"webhook {url}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise WebhookError(f"webhook {url}: {exc.strerror or exc}") from None


async def _post(url: Url, body: bytes) -> int:
    tls = ssl.create_default_context() if url.scheme == "https" else None
    reader, writer = await asyncio.open_connection(url.host, url.port, ssl=tls,
                                                   server_hostname=url.host if tls else None)
    conn = h11.Connection(h11.CLIENT)
    try:
        writer.write(conn.send(h11.Request(method="POST", target=url.target.encode("ascii"), headers=[
            (b"Host", url.authority.encode("idna")), (b"User-Agent", USER_AGENT),
            (b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode()),
            (b"Connection", b"close")])) or b"")
        writer.write(conn.send(h11.Data(data=body)) or b"")
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        status: int | None = None
        received = 0
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise WebhookError(f"webhook {url.text}: bad HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                received += len(data)
                if received > MAX_RESPONSE_BYTES:
                    raise WebhookError(f"webhook {url.text}: response over {MAX_RESPONSE_BYTES} bytes")
                conn.receive_data(data)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if status is None:
            raise WebhookError(f"webhook {url.text}: closed without a response")
        if not 200 <= status < 300:
            raise WebhookError(f"webhook {url.text}: HTTP {status}")
        return status
    finally:
        writer.transport.abort()
