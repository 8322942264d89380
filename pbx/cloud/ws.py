"""Opening a provider's WebSocket under the server's address policy and limits.

The URL may come from a client (``endpoint``, ``mediaPass.url``), so it is treated like a ``play``
URL: the host is resolved once, every address checked against the policy (public addresses, and the
networks ``endpoint_allow_networks`` names), and the connection made to the checked address (TLS still
verifies the host name). No proxy from the environment is used: it would bypass the check. Every
failure is a ProviderError whose message names the host; a refused handshake keeps its HTTP status
as ``code`` (401/403: the credentials were refused).
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

from pbx.errors import ProviderError
from pbx.media.netpolicy import AddressPolicy, AddressRefused, allowed_addresses

MAX_FRAME_BYTES = 4 << 20        # largest frame a provider may send us


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What every provider instance gets from the server: where it may connect and how long to wait."""

    policy: AddressPolicy = field(default_factory=AddressPolicy)
    timeout_s: float = 10.0      # connect; and a stall: no frame this long when one is due
    ssl_context: ssl.SSLContext | None = None


async def open_websocket(url: str, *, sender: str, provider: str, context: ProviderContext,
                         headers: Mapping[str, str] | None = None) -> ClientConnection:
    """A connection to ``url`` (ws or wss) or a ProviderError that says why there is none."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ProviderError(sender, f"{provider}: bad endpoint {url!r} (expected ws:// or wss://host/...)")
    host = parts.hostname
    try:
        port = parts.port or (443 if parts.scheme == "wss" else 80)
    except ValueError:
        raise ProviderError(sender, f"{provider}: bad port in endpoint {url!r}") from None
    try:
        addresses = await allowed_addresses(host, port, context.policy)
    except AddressRefused as exc:
        if exc.reason.startswith("cannot reach"):
            raise ProviderError(sender, f"{provider}: {exc.reason}") from None
        raise ProviderError(sender, f"{provider}: not connecting to {host}: {exc.reason}, which providers may not "
                                    "reach (config endpoint_allow_networks allows networks)") from None
    tls: dict[str, object] = {}
    if parts.scheme == "wss":
        tls = {"ssl": context.ssl_context or ssl.create_default_context(), "server_hostname": host}
    failure: BaseException | None = None
    for address in addresses:
        try:
            return await connect(url, additional_headers=dict(headers or {}), open_timeout=context.timeout_s,
                                 max_size=MAX_FRAME_BYTES, proxy=None, host=address, port=port,
                                 ping_interval=None, **tls)   # type: ignore[arg-type]
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", "replace")[:200].strip() if exc.response.body else ""
            what = "refused the credentials" if status in (401, 403) else "refused the connection"
            raise ProviderError(sender, f"{provider} {what}: HTTP {status}{': ' + body if body else ''}",
                                code=status) from None
        except (InvalidHandshake, InvalidURI) as exc:
            raise ProviderError(sender, f"{provider}: WebSocket handshake with {host} failed: {exc}") from None
        except TimeoutError:
            raise ProviderError(sender, f"{provider}: no WebSocket connection to {host} within "
                                        f"{context.timeout_s:g} s") from None
        except (ConnectionRefusedError, ssl.SSLError) as exc:
            raise ProviderError(sender, f"{provider}: cannot connect to {host}:{port}: {exc}") from None
        except OSError as exc:   # unreachable: the next address may do
            failure = exc
    raise ProviderError(sender, f"{provider}: cannot connect to {host}:{port}: {failure}")


async def close_quietly(connection: ClientConnection, timeout_s: float = 2.0) -> None:
    """Close without waiting long for a peer that no longer answers."""
    try:
        async with asyncio.timeout(timeout_s):
            await connection.close()
    except (TimeoutError, OSError):
        connection.transport.abort()
