"""GET /metrics: the Prometheus text format 0.0.4, parsed back by a parser written here from the format's
rules, and numbers that real calls on loopback move (a /call with espeak TTS, a /call/sip call to sipp)."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pbx.protocol import HangupEvent, MetricsEvent
from pbx.server.metrics import (
    MAX_REASON_SERIES,
    Histogram,
    LoopLagProbe,
    MetricFamily,
    ServerMetrics,
    add_histogram,
    render,
    render_many,
)
from tests.support.calls import Call, Event, running_server
from tests.support.sip import sipp_callee

TOKEN = "metrics-test-token"


# -- a parser of the exposition format (independent of pbx.server.metrics) ----------------------------------
@dataclass
class Family:
    help: str | None = None
    type: str | None = None
    samples: list[tuple[str, dict[str, str], float]] = field(default_factory=list)


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
SAMPLE = re.compile(rf"^({NAME})(\{{.*\}})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], value)


def parse_labels(text: str) -> dict[str, str]:
    inner, labels, pos = text[1:-1], {}, 0
    while pos < len(inner):
        match = LABEL.match(inner, pos)
        assert match is not None, f"bad labels {text!r}"
        assert match.group(1) not in labels
        labels[match.group(1)] = unescape(match.group(2))
        pos = match.end()
    return labels


def parse(text: str) -> dict[str, Family]:
    """Families by name; asserts the rules: HELP and TYPE once, before the family's samples, which are
    contiguous; counters end in _total; histogram buckets cumulative up to +Inf = _count."""
    assert text.endswith("\n")
    families: dict[str, Family] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            _, what, name, rest = line.split(" ", 3)
            family = families.setdefault(name, Family())
            assert not family.samples, f"{what} of {name} after its samples"
            if what == "HELP":
                assert family.help is None
                family.help = rest
            else:
                assert family.type is None and rest in ("counter", "gauge", "histogram")
                family.type = rest
            current = name
            continue
        match = SAMPLE.match(line)
        assert match is not None, f"not a sample line: {line!r}"
        name, labels, value = match.group(1), parse_labels(match.group(2) or "{}"), float(match.group(3))
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        owner = name if name in families else base
        assert owner == current, f"{name} outside its family's block"
        families[owner].samples.append((name, labels, value))
    for name, family in families.items():
        assert family.help and family.type, name
        if family.type == "counter":
            assert name.endswith("_total")
            assert all(v >= 0 for _, _, v in family.samples)
        if family.type == "histogram":
            for series in histograms(family).values():
                buckets = series["buckets"]
                assert buckets[-1][0] == math.inf and buckets[-1][1] == series["count"]
                assert [b for b, _ in buckets] == sorted(b for b, _ in buckets)
                assert all(a[1] <= b[1] for a, b in itertools.pairwise(buckets))
    return families


def histograms(family: Family) -> dict[tuple[tuple[str, str], ...], dict[str, Any]]:
    out: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for name, labels, value in family.samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        series = out.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if name.endswith("_bucket"):
            series["buckets"].append((float(labels["le"]), value))
        elif name.endswith("_sum"):
            series["sum"] = value
        else:
            series["count"] = value
    return out


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    found = [v for n, got, v in families[name].samples if n == name and got == labels]
    assert len(found) == 1, (name, labels, families[name].samples)
    return found[0]


def count(families: dict[str, Family], name: str, **labels: str) -> float:
    key = tuple(sorted(labels.items()))
    return float(histograms(families[name]).get(key, {"count": 0})["count"])


async def scrape(address: str, token: str | None = None) -> tuple[int, str, str]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {address}\r\n{auth}Connection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 5.0)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers.get("content-type", ""), body.decode()


# -- the format ------------------------------------------------------------------------------------------------
def test_label_values_are_escaped_and_read_back() -> None:
    family = MetricFamily("x_total", "counter", "a help with \\ and\na newline")
    hostile = 'a "quoted" \\ back\nslash'
    family.add(3, reason=hostile)
    family.add(0.25, reason="plain")
    text = render([family], {"worker": "7"})
    assert '\\"quoted\\"' in text and "\\n" in text and "\n# TYPE x_total counter\n" in text
    parsed = parse(text)["x_total"]
    assert parsed.samples == [("x_total", {"worker": "7", "reason": hostile}, 3.0),
                              ("x_total", {"worker": "7", "reason": "plain"}, 0.25)]
    assert parsed.help == "a help with \\\\ and\\na newline"


def test_workers_families_merge_under_one_help_with_a_worker_label() -> None:
    def part(n: int) -> list[MetricFamily]:
        calls = MetricFamily("pypbx_calls_active", "gauge", "Calls.")
        calls.add(n, type="sip")
        lag = MetricFamily("pypbx_lag_seconds", "histogram", "Lag.")
        h = Histogram((0.01, 0.1))
        for v in (0.005, 0.05 * n, 5.0):
            h.observe(v)
        add_histogram(lag, h.bounds, h.counts, h.sum)
        # families travel between processes as JSON
        return [MetricFamily.from_json(f.to_json()) for f in (calls, lag)]

    families = parse(render_many([({"worker": "1"}, part(1)), ({"worker": "2"}, part(3))]))
    assert value(families, "pypbx_calls_active", worker="1", type="sip") == 1
    assert value(families, "pypbx_calls_active", worker="2", type="sip") == 3
    series = histograms(families["pypbx_lag_seconds"])
    assert series[(("worker", "1"),)]["buckets"] == [(0.01, 1), (0.1, 2), (math.inf, 3)]
    assert series[(("worker", "2"),)]["buckets"] == [(0.01, 1), (0.1, 1), (math.inf, 3)]


def test_server_metrics_from_events() -> None:
    metrics = ServerMetrics()
    metrics.on_event("sip", MetricsEvent(timestamp=1, key="ttfb.tts.espeak", duration=250, data={}),
                     lambda kind: "x")
    metrics.on_event("sip", MetricsEvent(timestamp=1, key="bogus", duration=250, data={}), lambda kind: "x")
    rtp = {"packetsReceived": 100, "packetsLost": 3, "packetsSent": 90, "jitterMs": 12.5, "remoteJitterMs": 4.0,
           "rtcpReceived": 0}
    metrics.on_event("sip", HangupEvent(track_id="c", timestamp=2, start_time=1, hangup_time=2, reason="rtp_timeout",
                                        extra={"rtp": rtp}), lambda kind: "x")
    assert metrics.calls_ended == {("sip", "rtp_timeout"): 1}
    assert metrics.rtp_ended == {"received": 100, "lost": 3, "sent": 90}
    assert metrics.jitter["inbound"].count == 1 and metrics.jitter["inbound"].sum == 0.0125
    assert metrics.jitter["outbound"].count == 0         # no RTCP from the peer: no figure
    assert list(metrics.provider_latency) == [("espeak", "tts", "ttfb")]
    for n in range(200):          # a client's own reasons: bounded series, the rest "other"
        metrics.on_event("websocket", HangupEvent(track_id="c", timestamp=2, start_time=1, hangup_time=2,
                                                  reason=f"r{n}"), lambda kind: "x")
    metrics.on_event("websocket", HangupEvent(track_id="c", timestamp=2, start_time=1, hangup_time=2,
                                              reason="bad\nreason"), lambda kind: "x")
    metrics.on_event("websocket", HangupEvent(track_id="c", timestamp=2, start_time=1, hangup_time=2,
                                              reason="killed"), lambda kind: "x")
    assert len(metrics.calls_ended) == MAX_REASON_SERIES + 2          # + other, + a server reason
    assert metrics.calls_ended[("websocket", "other")] == 200 - (MAX_REASON_SERIES - 1) + 1
    assert metrics.calls_ended[("websocket", "killed")] == 1 and metrics.calls_ended[("websocket", "r0")] == 1
    probe = LoopLagProbe(Histogram((0.001, 0.01)))
    probe.observe(-0.0001)
    probe.observe(0.004)
    assert probe.histogram.counts == [1, 1, 0] and probe.max_s == 0.004


# -- a real server -----------------------------------------------------------------------------------------------
def test_metrics_need_the_token_unless_public_from_loopback(tmp_path: Path) -> None:
    async def run() -> None:
        async with running_server(tmp_path / "a", auth="token", api_token=TOKEN) as (_, address):
            status, _, _ = await scrape(address)
            assert status == 401
            status, content_type, text = await scrape(address, TOKEN)
            assert status == 200 and content_type == "text/plain; version=0.0.4; charset=utf-8"
            parse(text)
        async with running_server(tmp_path / "b", auth="token", api_token=TOKEN, metrics_public=True) as (_, address):
            status, _, text = await scrape(address)                # a loopback peer: no token needed
            assert status == 200 and "pypbx_calls_active" in text
            for path in ("/health", "/call/lists"):                   # only /metrics is public
                reader, writer = await asyncio.open_connection(*address.rsplit(":", 1))
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                assert (await reader.read()).startswith(b"HTTP/1.1 401")
                writer.close()
    asyncio.run(run())


def test_a_websocket_call_with_tts_moves_the_numbers(tmp_path: Path) -> None:
    sent = 0

    async def run() -> tuple[dict[str, Family], dict[str, Family], dict[str, Family]]:
        nonlocal sent
        async with running_server(tmp_path) as (_, address):
            before = parse((await scrape(address))[2])
            async with Call.open(address, "id=m1&pingInterval=0") as call:
                await call.send({"command": "invite", "option": {"codec": "pcm", "vad": {"type": "silero"},
                                                                 "tts": {"provider": "espeak", "speaker": "en-us"}}})
                await call.wait_event("answer")
                await call.send({"command": "tts", "text": "Hello there.", "playId": "p1"})
                await call.wait_event("trackEnd", timeout=10.0, playId="p1")
                during = parse((await scrape(address))[2])
                sent = len(call.frames())
                await call.send({"command": "hangup", "reason": "done"})
                await call.wait_event("hangup")
                await call.wait_closed()
            after = parse((await scrape(address))[2])
        return before, during, after

    before, during, after = asyncio.run(run())
    assert value(before, "pypbx_calls_active", type="websocket") == 0
    assert value(during, "pypbx_calls_active", type="websocket") == 1
    assert value(during, "pypbx_calls_active", type="sip") == 0
    assert value(after, "pypbx_calls_active", type="websocket") == 0
    assert value(after, "pypbx_calls_total", type="websocket", reason="done") == 1
    assert before["pypbx_calls_total"].samples == []
    # every audio frame the client got was made by the engine (a frame is 20 ms of one leg)
    frames = value(during, "pypbx_media_frames_total") - value(before, "pypbx_media_frames_total")
    assert sent >= 30 and frames >= sent
    assert value(after, "pypbx_media_skipped_frames_total") >= 0
    # the client sent no audio: silero inferred its first quiet windows, then the level gate skipped them
    assert value(before, "pypbx_silero_windows_total", kind="inferred") == 0
    assert value(after, "pypbx_silero_windows_total", kind="inferred") >= 8
    assert value(after, "pypbx_silero_windows_total", kind="skipped") >= 1
    assert count(after, "pypbx_provider_latency_seconds", provider="espeak", kind="tts", metric="ttfb") == 1
    assert count(after, "pypbx_provider_latency_seconds", provider="espeak", kind="tts", metric="completed") == 1
    # the probe runs every 100 ms and the tick every 20 ms, from the start
    assert count(after, "pypbx_event_loop_lag_seconds") > count(before, "pypbx_event_loop_lag_seconds") >= 0
    ticks = count(after, "pypbx_engine_tick_seconds") - count(before, "pypbx_engine_tick_seconds")
    assert ticks >= frames / 5      # a late tick catches up several frames, never many more
    assert value(after, "pypbx_cdr_written_total") == 1
    assert value(after, "process_resident_memory_bytes") > 10_000_000


def test_a_provider_error_is_counted_under_the_registry_name(tmp_path: Path) -> None:
    async def run() -> tuple[Event, dict[str, Family]]:
        async with running_server(tmp_path) as (_, address):
            async with Call.open(address, "id=m2&pingInterval=0") as call:
                await call.send({"command": "invite", "option": {
                    "codec": "pcm", "tts": {"provider": "espeak", "speaker": "zz-no-such-voice"}}})
                await call.wait_event("answer")
                await call.send({"command": "tts", "text": "Hello.", "playId": "p"})
                error = await call.wait_event("error", timeout=10.0)
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            return error, parse((await scrape(address))[2])

    error, families = asyncio.run(run())
    assert error["sender"] == "tts" and "zz-no-such-voice" in error["error"]
    assert value(families, "pypbx_provider_errors_total", provider="espeak", kind="tts") == 1
    assert value(families, "pypbx_calls_total", type="websocket", reason="unknown") == 1   # no reason given


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed")
def test_a_sip_call_counts_rtp_packets_and_jitter(tmp_path: Path) -> None:
    async def run() -> tuple[dict[str, Family], dict[str, Family], dict[str, Any]]:
        async with running_server(tmp_path) as (_, address), \
                sipp_callee("callee_answers.xml", tmp_path) as sipp, \
                Call.open(address, "pingInterval=0", path="/call/sip") as call:
            await call.send({"command": "invite", "option": {"caller": "sip:bot@127.0.0.1", "callee": sipp.uri,
                                                             "codec": "pcmu"}})
            await call.wait_event("answer")
            for _ in range(50):          # sipp's pcap reaches us: a live leg counts in the totals
                during = parse((await scrape(address))[2])
                if value(during, "pypbx_rtp_packets_received_total") > 0:
                    break
                await asyncio.sleep(0.1)
            await call.send({"command": "hangup", "reason": "user_requested"})
            hangup = await call.wait_event("hangup")
            await sipp.finish(timeout=10)
            after = parse((await scrape(address))[2])
        return during, after, hangup

    during, after, hangup = asyncio.run(run())
    rtp = hangup["extra"]["rtp"]
    assert value(during, "pypbx_calls_active", type="sip") == 1
    assert value(during, "pypbx_rtp_packets_received_total") > 0
    assert value(after, "pypbx_rtp_packets_received_total") == rtp["packetsReceived"]
    assert value(after, "pypbx_rtp_packets_sent_total") == rtp["packetsSent"]
    assert value(after, "pypbx_rtp_packets_lost_total") == rtp["packetsLost"]
    inbound = histograms(after["pypbx_rtp_jitter_seconds"])[(("direction", "inbound"),)]
    assert inbound["count"] == 1 and inbound["sum"] == pytest.approx(rtp["jitterMs"] / 1000.0)
    assert value(after, "pypbx_calls_total", type="sip", reason="user_requested") == 1


def test_two_workers_answer_one_scrape_each_sample_labelled_with_its_worker(tmp_path: Path) -> None:
    from tests.test_workers import two_workers

    async def run() -> tuple[dict[str, Family], list[int]]:
        async with two_workers(tmp_path) as server, \
                Call.open(server.address, "id=w-a&pingInterval=0") as a, \
                Call.open(server.address, "id=w-b&pingInterval=0") as b:
            for call in (a, b):
                await call.send({"command": "invite", "option": {"codec": "pcm"}})
                await call.wait_event("answer")
            per_worker = await server.calls_per_worker()
            families = parse((await scrape(server.address))[2])
            for call in (a, b):
                await call.send({"command": "hangup"})
                await call.wait_event("hangup")
            for _ in range(50):                  # the records are written on the workers' threads
                if len(list(recordings.glob("*.cdr.json"))) == 2:
                    break
                await asyncio.sleep(0.1)
        return families, per_worker

    recordings = tmp_path / "data" / "recordings"
    families, per_worker = asyncio.run(run())
    records = {p.name: json.loads(p.read_text()) for p in recordings.glob("*.cdr.json")}
    assert set(records) == {"w-a.cdr.json", "w-b.cdr.json"}
    workers = {r["server"]["worker"] for r in records.values()}
    assert workers <= {0, 1} and len(workers) == sum(1 for n in per_worker if n)
    active = [(labels["worker"], v) for n, labels, v in families["pypbx_calls_active"].samples
              if labels["type"] == "websocket"]
    assert sorted(worker for worker, _ in active) == ["0", "1"]     # one series per worker, by index
    assert sorted(v for _, v in active) == [float(n) for n in per_worker] and sum(v for _, v in active) == 2
    assert all("worker" in labels for family in families.values() for _, labels, _ in family.samples)
    # the supervisor's own part: its SIP guard's refusals (over every worker) and its process figures
    refused = {labels["cause"]: v for _, labels, v in families["pypbx_sip_refused_total"].samples
               if labels["worker"] == "supervisor"}
    assert refused == {"acl": 0, "rate": 0, "new_requests": 0, "auth_blocked": 0, "blocks": 0}
    cpu = {labels["worker"] for _, labels, _ in families["process_cpu_seconds_total"].samples}
    assert cpu == {"0", "1", "supervisor"}
