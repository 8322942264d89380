"""The outbound dial allowlist (``[sip] dial_allow``): which callees ``invite`` and ``refer`` may reach.

A pattern is a glob with two wildcards, ``*`` (any run of characters) and ``?`` (one character); everything
else is literal (``[`` too: IPv6 hosts are written in brackets), compared without regard to case, against
one form of the callee:

- a ``sip:``/``sips:`` URI is matched in its canonical form ``scheme:user@host`` or ``scheme:user@host:port``
  (IPv6 hosts in brackets), rebuilt from the parsed URI without parameters or headers, so that a glob
  such as ``sip:*@127.0.0.1`` cannot be satisfied by text hidden in a parameter (``sip:a@evil;x=@127.0.0.1``
  is ``sip:a@evil``). Write ``sip:*@127.0.0.1:*`` to allow every port of a host. A URI that does not parse
  matches nothing.
- anything else (a number for a ``[[sip.trunks]]`` entry, ``tel:`` URIs) is matched as given: ``+1555*``.

An empty list allows every callee (the behaviour before the allowlist; the server warns at start-up when its
SIP port listens beyond loopback with no allowlist). A refused callee never costs a packet or a lookup.
"""

from __future__ import annotations

import re

from pbx.sip.errors import SipParseError
from pbx.sip.headers import SipUri

__all__ = ["canonical_callee", "dial_refusal"]


def canonical_callee(callee: str) -> str | None:
    """The form of ``callee`` the patterns are matched against; None for a SIP URI that does not parse."""
    if not callee.lower().startswith(("sip:", "sips:")):
        return callee.lower()
    try:
        uri = SipUri.parse(callee)
    except SipParseError:
        return None
    host = f"[{uri.host.strip('[]')}]" if ":" in uri.host else uri.host
    user = f"{uri.user}@" if uri.user is not None else ""
    port = f":{uri.port}" if uri.port is not None else ""
    return f"{uri.scheme}:{user}{host}{port}".lower()


def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile(re.escape(pattern.lower()).replace(r"\*", ".*").replace(r"\?", "."), re.DOTALL)


def dial_refusal(patterns: tuple[str, ...], callee: str) -> str | None:
    """Why ``callee`` may not be dialled (the rule, for the caller's ``error``/``reject`` event), or None."""
    if not patterns:
        return None
    form = canonical_callee(callee)
    if form is not None and any(_glob(pattern).fullmatch(form) for pattern in patterns):
        return None
    shown = form if form is not None else "an unreadable URI"
    return (f"callee {callee!r} ({shown}) matches no [sip] dial_allow pattern "
            f"({', '.join(repr(p) for p in patterns)})")
