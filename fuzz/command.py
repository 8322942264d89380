"""Fuzz target: a WebSocket text frame from the client of ``/call``, decoded as the server does it.

The path (pbx/server/control.py ``ControlSocket._decode``): :func:`pbx.protocol.decode_json` on the frame's
text, then :func:`~pbx.protocol.command_from_dict`; the dump and ``/call/lists`` then see the command through
:func:`~pbx.protocol.redact` and :func:`~pbx.protocol.to_dict`. The client library's side
(:func:`~pbx.protocol.parse_event`, pbx/client.py) reads the same bytes as an event.

Documented errors (pbx/protocol.py, pbx/errors.py): "Errors raise :class:`pbx.errors.ProtocolError`" (a
ValueError) "... so nothing a client sends can raise another exception". This target catches exactly
ProtocolError; anything else a frame can raise is a crash.

A text frame is UTF-8 (websockets checks it), but ``parse_command`` also takes bytes, so the target gives it
the raw bytes and, when they decode, the text.

Invariants checked besides "no other exception":
- ``parse_command(serialize_command(x)) == x`` and the same for events (the module docstring's promise);
- ``command_from_dict(decode_json(t))`` is ``parse_command(t)``;
- ``redact`` and ``to_dict`` take every command and event that parses.

Run: ``.venv/bin/python fuzz/command.py -max_total_time=60 <work dir> fuzz/corpus/command``
"""

from __future__ import annotations

import atheris

with atheris.instrument_imports(include=["pbx"]):
    from pbx.errors import ProtocolError
    from pbx.protocol import (
        command_from_dict,
        decode_json,
        parse_command,
        parse_event,
        redact,
        serialize_command,
        serialize_event,
        to_dict,
    )

from harness import main


def _command(text: str | bytes) -> None:
    try:
        value = decode_json(text)
    except ProtocolError:
        return
    try:
        command = command_from_dict(value)
    except ProtocolError as exc:
        try:
            parse_command(text)
        except ProtocolError as again:
            assert str(again) == str(exc), (again, exc)
        else:
            raise AssertionError("parse_command took what command_from_dict refused") from exc
        return
    assert parse_command(text) == command
    assert parse_command(serialize_command(command)) == command, command
    to_dict(redact(command))


def _event(text: str | bytes) -> None:
    try:
        event = parse_event(text)
    except ProtocolError:
        return
    assert parse_event(serialize_event(event)) == event, event
    to_dict(redact(event))


def test_one_input(data: bytes) -> None:
    _command(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _command(text)
    _event(text)


if __name__ == "__main__":
    main(test_one_input)
