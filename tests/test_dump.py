"""A call's dump: commands from the value decoded once, events from the text sent once, secrets masked."""

from __future__ import annotations

import json
from pathlib import Path

from pbx.protocol import (
    HangupEvent,
    SpeakingEvent,
    decode_json,
    serialize_event,
    to_dict,
)
from pbx.server.dump import CallDump


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_the_dump_masks_secrets_and_reuses_the_sent_text(tmp_path: Path) -> None:
    dump = CallDump(tmp_path / "dumps", "a/b")
    assert not (tmp_path / "dumps").exists()              # opened with its first line
    text = '{"command": "invite", "option": {"asr": {"secretKey": "S1"}, "sip": {"password": "S2"}}}'
    dump.command(decode_json(text))
    speaking = SpeakingEvent(track_id="a/b", timestamp=5, start_time=4)
    sent = serialize_event(speaking)
    dump.event(sent, to_dict(speaking))
    hangup = HangupEvent(track_id="a/b", timestamp=9, start_time=1, hangup_time=9, extra={"apiKey": "S3"})
    dump.event(serialize_event(hangup), to_dict(hangup))
    dump.unparsed('{"secretKey": "S4", "oops"' + "x" * 5000)
    dump.close()
    path = tmp_path / "dumps" / "a_b.jsonl"
    raw = path.read_text(encoding="utf-8")
    assert "S1" not in raw and "S2" not in raw and "S3" not in raw and "S4" not in raw
    assert f'"event":{sent}}}' in raw                     # the event's text as it was sent
    got = lines(path)
    assert got[0]["command"] == {"command": "invite", "option": {"asr": {"secretKey": "***"},
                                                                  "sip": {"password": "***"}}}
    assert got[2]["event"]["extra"] == {"apiKey": "***"}
    assert isinstance(got[3]["command"], str) and len(got[3]["command"]) == 1000
    assert all(isinstance(line["ts"], int) for line in got)
    dump.command({"command": "hangup"})                    # closed: nothing more is written
    assert len(lines(path)) == 4


def test_a_dump_that_cannot_be_written_stops_without_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "dumps"
    blocker.write_text("a file where the folder should be")
    dump = CallDump(blocker, "x")
    dump.command({"command": "hangup"})
    dump.close()
    assert blocker.read_text() == "a file where the folder should be"
