"""The ``from``/``to`` of a hangup event, from the caller and callee the client named."""

from __future__ import annotations

from pbx.protocol import Attendee


def attendee(uri: str | None) -> Attendee | None:
    """``sip:alice@example.com`` -> Attendee(alice, example.com, uri); a bare number -> username only."""
    if not uri:
        return None
    rest = uri.split(":", 1)[1] if uri.lower().startswith(("sip:", "sips:", "tel:")) else uri
    user, _, host = rest.partition("@")
    if not host:
        user, host = ("", user) if "." in user or ":" in user else (user, "")
    return Attendee(username=user, realm=host.split(";", 1)[0].split(":", 1)[0], source=uri)
