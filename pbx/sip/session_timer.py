"""Session timers (RFC 4028), the part a UA that never refreshes needs: read a Session-Expires, refuse
one below our Min-SE (422), and know when a session nobody refreshed must end.

We never ask to be the refresher (our INVITEs do not say ``Supported: timer``, so by §7.1 and §9 the
peer refreshes), and we answer an INVITE that asks for timers with ``refresher=uac``: the caller
refreshes with re-INVITE or UPDATE, and a session not refreshed in time is ended with BYE
``min(32, interval / 3)`` seconds before it expires (§10).
"""

from __future__ import annotations

from pbx.sip.message import Request, Response

MIN_SE = 90           # seconds: the smallest interval we accept (§4's recommended minimum)


def session_expires(message: Request | Response) -> tuple[int, str | None] | None:
    """The Session-Expires delta and its ``refresher`` (None when absent or unreadable)."""
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    delta, _, params = value.partition(";")
    if not delta.strip().isdigit():
        return None
    refresher = None
    for param in params.split(";"):
        name, _, arg = param.partition("=")
        if name.strip().lower() == "refresher" and arg.strip().lower() in ("uac", "uas"):
            refresher = arg.strip().lower()
    return int(delta), refresher


def supports_timer(request: Request) -> bool:
    options = request.headers.get_all("Supported") + request.headers.get_all("Require")
    return any(option.strip().lower() == "timer" for option in options)


def end_at(refreshed_at: float, interval: int) -> float:
    """When the non-refresher sends BYE: before expiry by min(32, interval/3) seconds (§10)."""
    return refreshed_at + interval - min(32.0, interval / 3.0)
