"""Log records carry the call id: set where a call's connection and driver run, added by a filter, written
as text or JSON lines (``log_format``), in process and through the command line (``python -m pbx serve``)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import sys
from pathlib import Path

import pytest

from pbx.server.logcontext import CALL_ID, CallIdFilter, JsonFormatter, configure, text_format
from tests.support.calls import Call, running_server


class Captured(logging.Handler):
    """Records as the server's handlers see them: through the call-id filter."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.addFilter(CallIdFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def record(message: str, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("pbx.test", logging.ERROR, __file__, 1, message, (), info)


def test_the_filter_takes_the_id_of_the_context_it_runs_in() -> None:
    async def in_call(call_id: str) -> tuple[str | None, str | None]:
        CALL_ID.set(call_id)
        await asyncio.sleep(0)

        async def child() -> str | None:         # a task started by the call copies its context
            rec = record("child")
            CallIdFilter().filter(rec)
            return getattr(rec, "call_id", None)
        rec = record("parent")
        CallIdFilter().filter(rec)
        return getattr(rec, "call_id", None), await asyncio.create_task(child())

    async def run() -> list[tuple[str | None, str | None]]:
        return list(await asyncio.gather(in_call("a"), in_call("b")))

    assert asyncio.run(run()) == [("a", "a"), ("b", "b")]
    outside = record("outside")
    CallIdFilter().filter(outside)
    assert getattr(outside, "call_id", "unset") is None and getattr(outside, "call_prefix", None) == ""


def test_json_lines_have_the_fields_and_the_traceback() -> None:
    token = CALL_ID.set('id with "quotes"\n')
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError as exc:
            rec = record("it failed: %s", exc)
            rec.args = ("badly",)
            CallIdFilter().filter(rec)     # as a handler does: where the record is made
    finally:
        CALL_ID.reset(token)
    line = JsonFormatter().format(rec)
    assert "\n" not in line
    value = json.loads(line)
    assert value["message"] == "it failed: badly" and value["level"] == "ERROR" and value["logger"] == "pbx.test"
    assert value["call_id"] == 'id with "quotes"\n'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value["ts"])
    assert "RuntimeError: boom" in value["exception"] and "Traceback" in value["exception"]
    text = logging.Formatter(text_format("worker 7 ")).format(rec)
    # the id is a client's string: in a text line its newline is escaped, not a forged line
    assert 'ERROR worker 7 pbx.test: [call id with "quotes"\\x0a] it failed: badly\nTraceback' in text


def test_configure_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="log_format must be text or json"):
        configure("info", "xml")


def test_records_of_two_concurrent_calls_carry_their_own_ids(tmp_path: Path) -> None:
    """Each call's record is written by a task its driver starts from the media tick's flush: the
    debug line about it must name that call, not the other, nor none."""
    captured = Captured()
    logger = logging.getLogger("pbx")
    old_level = logger.level
    logger.addHandler(captured)
    logger.setLevel(logging.DEBUG)

    async def one(address: str, call_id: str) -> None:
        async with Call.open(address, f"id={call_id}&pingInterval=0") as call:
            await call.send({"command": "invite", "option": {"codec": "pcm"}})
            await call.wait_event("answer")
            await call.send({"command": "hangup", "reason": "done"})
            await call.wait_event("hangup")
            await call.wait_closed()

    async def run() -> None:
        async with running_server(tmp_path) as (server, address):
            await asyncio.gather(one(address, "first"), one(address, "second"))
            assert server.cdr is not None
            await server.cdr.wait()

    try:
        asyncio.run(run())
    finally:
        logger.removeHandler(captured)
        logger.setLevel(old_level)
    written = {Path(r.getMessage().split(": ", 1)[1]).name: r.call_id  # type: ignore[attr-defined]
               for r in captured.records if r.getMessage().startswith("call record written")}
    assert written == {"first.cdr.json": "first", "second.cdr.json": "second"}
    outside = [r for r in captured.records if "listening" in r.getMessage() or "SIP" in r.getMessage()]
    assert all(r.call_id is None for r in outside)  # type: ignore[attr-defined]


def test_the_command_line_writes_json_lines_with_the_call_id(tmp_path: Path) -> None:
    config = tmp_path / "pypbx.toml"
    config.write_text(f'http_addr = "127.0.0.1:0"\nworkers = 1\ndata_dir = "{tmp_path / "data"}"\n'
                      'log_format = "json"\nlog_level = "debug"\n'
                      '[sip]\naddr = "127.0.0.1:0"\nrtp_ports = [42200, 42300]\n')

    async def run() -> list[str]:
        process = await asyncio.create_subprocess_exec(sys.executable, "-m", "pbx", "serve", "--config", str(config),
                                                       stderr=asyncio.subprocess.PIPE)
        assert process.stderr is not None
        lines: list[str] = []
        address = ""
        rest = b""
        try:
            while not address:
                line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
                assert line, "the server exited: " + "".join(lines)
                lines.append(line)
                if found := re.search(r"listening on (\S+:\d+)", line):
                    address = found.group(1)
            async with Call.open(address, "id=cli-1&pingInterval=0") as call:
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
                await call.wait_closed()
            await asyncio.sleep(0.5)      # the record is written on a worker thread after the hangup
        finally:
            process.send_signal(signal.SIGINT)
            _, rest = await asyncio.wait_for(process.communicate(), 30)
        return lines + rest.decode().splitlines()

    lines = [line for line in asyncio.run(run()) if line.strip()]
    values = [json.loads(line) for line in lines]      # every line is one JSON object
    assert all({"ts", "level", "logger", "message", "call_id", "pid"} <= set(v) for v in values)
    listening = next(v for v in values if "listening on" in v["message"])
    assert listening["call_id"] is None and listening["level"] == "INFO"
    written = [v for v in values if v["message"].startswith("call record written")]
    assert len(written) == 1 and written[0]["call_id"] == "cli-1" and written[0]["logger"] == "pbx.server.cdr"
