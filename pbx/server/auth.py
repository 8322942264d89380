"""Who may use the server: an API token for every endpoint, and an Origin allow-list for browsers.

Rules:

- A token is required when the server listens on anything but a loopback address (``auth = "auto"``,
  the default), always (``"token"``), or never (``"none"``: the opt-out for trusted networks).
- The token comes from ``PYPBX_API_TOKEN``, else the config key ``api_token``, else it is generated at
  first start, kept in ``<data_dir>/api-token`` (mode 0600) and printed, so a newcomer's
  ``make serve`` and the examples agree on it.
- A request carries it as ``Authorization: Bearer <token>``, or (browsers cannot set headers on a
  WebSocket) as the ``token`` query parameter. It is compared in constant time and never logged,
  dumped or listed. A REST request without it gets 401; a WebSocket handshake without it is closed
  at once with 1008, before any call exists.
- A request with an ``Origin`` header (a browser) must come from an origin in ``allowed_origins``
  (``"*"`` allows any), or be the server's own page (the console, ``GET /console``): its Origin names
  the Host the request went to, and that host is an IP address or ``localhost`` (a host name could be
  an attacker's, rebound to this address by DNS). Otherwise 403, so a web page elsewhere cannot drive
  the server.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import re
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

TOKEN_FILE = "api-token"
ENV_TOKEN = "PYPBX_API_TOKEN"
AUTH_MODES = ("auto", "token", "none")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    message: str


def is_loopback(host: str) -> bool:
    """Whether a listening host is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` is the server's own (http or https on the Host the request was sent to), with
    that Host an IP address or localhost."""
    if not host or origin not in (f"http://{host}", f"https://{host}"):
        return False
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    token: str | None                      # None: no token required
    allowed_origins: frozenset[str] = frozenset()

    def refuse(self, target: str, headers: Mapping[str, str]) -> Refusal | None:
        """Why a request (its target: path and query, and headers) is refused, or None."""
        origin = headers.get("Origin")
        if origin is not None and "*" not in self.allowed_origins and origin not in self.allowed_origins \
                and not same_origin(origin, headers.get("Host")):
            return Refusal(403, "this origin may not use the server (allowed_origins)")
        if not self.token_ok(target, headers):
            return Refusal(401, "missing or wrong API token")
        return None

    def token_ok(self, target: str, headers: Mapping[str, str]) -> bool:
        if self.token is None:
            return True
        expected = self.token.encode()
        given = _bearer(headers.get("Authorization", ""))
        if given is None:
            query = dict(parse_qsl(urlsplit(target).query))
            given = query.get("token")
        return given is not None and hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected)


def _bearer(value: str) -> str | None:
    scheme, _, credentials = value.strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


@dataclass(frozen=True, slots=True)
class TokenChoice:
    token: str | None
    source: str            # "environment", "config", "file", "generated" or "none"


def choose_token(mode: str, host: str, configured: str, env: Mapping[str, str], data_dir: Path) -> TokenChoice:
    """The token the server requires (see the module's rules)."""
    if mode == "none" or (mode == "auto" and is_loopback(host)):
        return TokenChoice(None, "none")
    if env.get(ENV_TOKEN):
        return TokenChoice(env[ENV_TOKEN], "environment")
    if configured:
        return TokenChoice(configured, "config")
    path = data_dir / TOKEN_FILE
    try:
        kept = path.read_text(encoding="utf-8").strip()
    except OSError:
        kept = ""
    if kept:
        return TokenChoice(kept, "file")
    token = secrets.token_urlsafe(24)
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return TokenChoice(token, "generated")


def announced_token(mode: str, host: str, configured: str, data_dir: Path) -> str | None:
    """:func:`choose_token` with this process's environment, told on the console of whoever started the
    server (printed, never logged): the token itself when it was generated or read from its file."""
    choice = choose_token(mode, host, configured, os.environ, data_dir)
    if choice.token is not None:
        if choice.source in ("generated", "file"):
            print(f"pypbx: API token (kept in {data_dir / TOKEN_FILE}): {choice.token}", file=sys.stderr)
        else:
            print(f"pypbx: API token required (from the {choice.source})", file=sys.stderr)
    return choice.token


_CREDENTIALS = re.compile(r"(?i)(authorization:\s*\S+\s+|[?&]token=)[^\s&]+")


class CredentialFilter(logging.Filter):
    """Masks tokens in log records (websockets logs request lines and headers at debug level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _CREDENTIALS.sub(r"\1***", message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


def websockets_logger() -> logging.Logger:
    """The logger the server's WebSocket connections use, with credentials masked."""
    logger = logging.getLogger("websockets.server")
    if not any(isinstance(f, CredentialFilter) for f in logger.filters):
        logger.addFilter(CredentialFilter())
    return logger
