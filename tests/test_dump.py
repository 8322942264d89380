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
    assert dump.path is not None and dump.path.name.startswith("a_b-") and dump.path.suffix == ".jsonl"
    path = dump.path
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


def test_an_event_is_redacted_wherever_its_secret_is_and_kept_as_sent_otherwise(tmp_path: Path) -> None:
    dump = CallDump(tmp_path, "c")
    deep = HangupEvent(track_id="c", timestamp=9, start_time=1, hangup_time=9,
                       extra={"legs": [{"sip": {"api_key": "S5"}}, {"password": None}]})
    dump.event(serialize_event(deep), to_dict(deep))
    named = HangupEvent(track_id="c", timestamp=9, start_time=1, hangup_time=9,
                        extra={"note": "apiKey", "password": None})   # a key's name as a value, a None secret
    sent = serialize_event(named)
    dump.event(sent, to_dict(named))
    dump.close()
    assert dump.path is not None
    raw = dump.path.read_text(encoding="utf-8")
    got = lines(dump.path)
    assert "S5" not in raw and got[0]["event"]["extra"]["legs"][0] == {"sip": {"api_key": "***"}}
    assert f'"event":{sent}}}' in raw                     # nothing to mask: the text as it was sent


def test_a_dump_that_cannot_be_written_stops_without_an_error(tmp_path: Path) -> None:
    blocker = tmp_path / "dumps"
    blocker.write_text("a file where the folder should be")
    dump = CallDump(blocker / "sub", "x")
    dump.command({"command": "hangup"})
    dump.close()
    assert blocker.read_text() == "a file where the folder should be"


def test_every_call_gets_a_dump_of_its_own(tmp_path: Path) -> None:
    folder = tmp_path / "dumps"
    ids = ["p/q", "p_q", "x" * 128 + "a", "x" * 128 + "b", "same", "same", "..", ".hidden"]
    paths = []
    for call_id in ids:
        dump = CallDump(folder, call_id)
        dump.command({"command": "hangup", "reason": call_id})
        dump.close()
        assert dump.path is not None and dump.path.parent == folder
        paths.append(dump.path)
    assert len(set(paths)) == len(ids)
    assert [p.name for p in paths][4:6] == ["same.jsonl", "same-2.jsonl"]
    assert paths[1].name == "p_q.jsonl" and paths[0].name != "p_q.jsonl"
    assert all(not p.name.startswith(".") for p in paths)
    for path, call_id in zip(paths, ids, strict=True):
        assert lines(path)[0]["command"]["reason"] == call_id


def test_a_dump_has_a_size_cap_and_no_line_is_huge(tmp_path: Path) -> None:
    dump = CallDump(tmp_path, "big", max_bytes=4000)
    dump.command({"command": "tts", "text": "A" * 1_000_000, "base64": True})
    for i in range(100):
        dump.command({"command": "interrupt", "n": i})
    dump.close()
    assert dump.path is not None
    raw = dump.path.read_text()
    got = lines(dump.path)
    assert got[0]["command"] == {"command": "tts", "omitted": 1_000_041}   # the JSON it would have taken
    assert len(raw) <= 4000 + 100
    assert "truncated" in got[-1] and got[-1]["truncated"] > 0
    assert [g["command"]["n"] for g in got[1:-1]] == list(range(len(got) - 2))


def test_old_dumps_are_pruned(tmp_path: Path) -> None:
    import os
    import time

    from pbx.server.dump import prune_dumps
    old, new, other = tmp_path / "old.jsonl", tmp_path / "new.jsonl", tmp_path / "notes.txt"
    for path in (old, new, other):
        path.write_text("{}\n")
    eight_days_ago = time.time() - 8 * 86400
    os.utime(old, (eight_days_ago, eight_days_ago))
    os.utime(other, (eight_days_ago, eight_days_ago))
    assert prune_dumps(tmp_path, 7 * 86400) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jsonl", "notes.txt"]
