"""Prometheus metrics of one server process: ``GET /metrics`` in the text exposition format 0.0.4.

Two halves:

- :class:`ServerMetrics` accumulates what only passes by: calls ended (by type and hangup reason),
  the RTP figures of ended legs and their jitter (from ``hangup.extra.rtp``, the leg's RTCP quality
  report), provider latencies (the ``metrics`` events' ttfb/completed) and errors, the event loop's
  lag (:class:`LoopLagProbe`). The call driver hands it every event it sends (:meth:`ServerMetrics.on_event`).
- :func:`collect` reads the rest from the server when scraped (active calls, engine frames, live legs'
  RTP, the media tick's histogram) and returns :class:`MetricFamily` values; :func:`render` writes them.

With several workers each process has its own numbers: :func:`render_many` writes the families of
every worker in one exposition, each sample labelled with its worker (families travel as JSON:
:meth:`MetricFamily.to_json`/:meth:`MetricFamily.from_json`).

Counters of live legs' RTP (packets received, lost, sent) add the ended legs' figures to the live
ones'. A leg's figures leave the live sum when it is released and join the ended sum only with its
hangup event (after the recording is closed), and RTCP's cumulative loss can go down (duplicates), so
the exposed value is held monotonic (:class:`MonotonicTotal`): a counter never goes backwards.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import os
import re
import resource
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pbx.protocol import ErrorEvent, Event, HangupEvent, HangupReason, MetricsEvent
from pbx.sip.guard import Verdicts

if TYPE_CHECKING:
    from pbx.server.app import CallServer
    from pbx.server.driver import CallDriver

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
CALL_TYPES = ("websocket", "sip", "webrtc")
PROVIDER_KINDS = ("asr", "tts")
# seconds
JITTER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
PROVIDER_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
LAG_PROBE_EVERY_S = 0.1
MAX_PROVIDER_SERIES = 64      # provider names come from the registry; this bounds them anyway
MAX_REASON_SERIES = 64        # a hangup command's reason is the client's own string: bounded label values
SERVER_REASONS = frozenset(reason.value for reason in HangupReason)
_PLAIN_REASON = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


# -- the exposition format -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Sample:
    name: str                                  # the family's name plus _bucket, _sum, _count for histograms
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(slots=True)
class MetricFamily:
    name: str
    type: str                                  # counter, gauge or histogram
    help: str
    samples: list[Sample] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> None:
        self.samples.append(Sample(self.name, tuple(labels.items()), value))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "help": self.help,
                "samples": [[s.name, [list(kv) for kv in s.labels], s.value] for s in self.samples]}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> MetricFamily:
        return cls(str(value["name"]), str(value["type"]), str(value["help"]),
                   [Sample(str(name), tuple((str(k), str(v)) for k, v in labels), float(number))
                    for name, labels, number in value["samples"]])


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def _labels(labels: Iterable[tuple[str, str]]) -> str:
    text = ",".join(f'{key}="{escape_label(value)}"' for key, value in labels)
    return "{" + text + "}" if text else ""


def render_many(parts: Sequence[tuple[Mapping[str, str], Sequence[MetricFamily]]]) -> str:
    """One exposition of several processes' families: each part's ``extra_labels`` (e.g. ``worker``)
    go first on each of its samples; a family's samples from every part follow its one HELP/TYPE."""
    order: list[str] = []
    merged: dict[str, tuple[MetricFamily, list[str]]] = {}
    for extra, families in parts:
        prefix = tuple(extra.items())
        for family in families:
            if family.name not in merged:
                order.append(family.name)
                merged[family.name] = (family, [])
            lines = merged[family.name][1]
            for s in family.samples:
                lines.append(f"{s.name}{_labels(prefix + s.labels)} {format_value(s.value)}")
    out: list[str] = []
    for name in order:
        family, lines = merged[name]
        out.append(f"# HELP {name} {escape_help(family.help)}")
        out.append(f"# TYPE {name} {family.type}")
        out.extend(lines)
    return "\n".join(out) + "\n"


def render(families: Sequence[MetricFamily], extra_labels: Mapping[str, str] | None = None) -> str:
    return render_many([(extra_labels or {}, families)])


# -- what accumulates ---------------------------------------------------------------------------------
class Histogram:
    """Observations in fixed buckets (non-cumulative counts here; cumulative when written)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)     # the last one: above every bound
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        if not math.isfinite(value):
            return
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value


def add_histogram(family: MetricFamily, bounds: Sequence[float], counts: Sequence[int], total: float,
                  **labels: str) -> None:
    """Write one histogram series (``counts`` non-cumulative, one per bound plus +Inf) into ``family``."""
    running = 0
    base = tuple(labels.items())
    for bound, count in zip([*bounds, math.inf], counts, strict=True):
        running += count
        family.samples.append(Sample(f"{family.name}_bucket", (*base, ("le", format_value(bound))), running))
    family.samples.append(Sample(f"{family.name}_sum", base, total))
    family.samples.append(Sample(f"{family.name}_count", base, running))


class MonotonicTotal:
    """A counter computed afresh at each scrape that never goes backwards (see the module docstring)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def update(self, computed: int) -> int:
        self.value = max(self.value, computed)
        return self.value


class LoopLagProbe:
    """How late the event loop runs a callback: a timer every ``interval_s``, its lateness observed.
    A loop busy with a long tick or a blocking call shows here before frames go late."""

    def __init__(self, histogram: Histogram, interval_s: float = LAG_PROBE_EVERY_S) -> None:
        self.histogram = histogram
        self.interval_s = interval_s
        self.last_s = 0.0
        self.max_s = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.interval_s
        self._handle = loop.call_at(self._due, self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        self.observe(now - self._due)
        self._due = now + self.interval_s
        self._handle = loop.call_at(self._due, self._wake, loop)

    def observe(self, lag_s: float) -> None:
        lag = max(lag_s, 0.0)      # the loop may run a timer up to its clock resolution early
        self.last_s = lag
        self.max_s = max(self.max_s, lag)
        self.histogram.observe(lag)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class ServerMetrics:
    """The numbers of one server process that only pass by (see the module docstring)."""

    def __init__(self) -> None:
        self.calls_ended: dict[tuple[str, str], int] = {}
        self.rtp_ended = {"received": 0, "lost": 0, "sent": 0}
        self.rtp_exposed = {key: MonotonicTotal() for key in self.rtp_ended}
        self.jitter = {"inbound": Histogram(JITTER_BUCKETS), "outbound": Histogram(JITTER_BUCKETS)}
        self.provider_latency: dict[tuple[str, str, str], Histogram] = {}
        self.provider_errors: dict[tuple[str, str], int] = {}
        self.loop_lag = Histogram(LAG_BUCKETS)
        self.lag_probe = LoopLagProbe(self.loop_lag)

    def on_event(self, call_type: str, event: Event, provider_of: Callable[[str], str]) -> None:
        """An event a call sent; ``provider_of(kind)`` names the call's asr or tts provider."""
        if isinstance(event, MetricsEvent):
            self._provider_metric(event)
        elif isinstance(event, ErrorEvent):
            if event.sender in PROVIDER_KINDS:
                key = (event.sender, provider_of(event.sender))
                if key in self.provider_errors or len(self.provider_errors) < MAX_PROVIDER_SERIES:
                    self.provider_errors[key] = self.provider_errors.get(key, 0) + 1
        elif isinstance(event, HangupEvent):
            key = (call_type, self._reason_label(call_type, event.reason))
            self.calls_ended[key] = self.calls_ended.get(key, 0) + 1
            rtp = (event.extra or {}).get("rtp")
            if isinstance(rtp, dict) and rtp:
                self._ended_leg(rtp)

    def _reason_label(self, call_type: str, reason: str | None) -> str:
        """The server's reasons as they are; a client's own (its ``hangup`` command's) while it is a plain
        word and fewer than :data:`MAX_REASON_SERIES` series exist, else ``other``."""
        if not reason:
            return "unknown"
        if reason in SERVER_REASONS or (call_type, reason) in self.calls_ended:
            return reason
        if _PLAIN_REASON.fullmatch(reason) and len(self.calls_ended) < MAX_REASON_SERIES:
            return reason
        return "other"

    def _provider_metric(self, event: MetricsEvent) -> None:
        metric, _, rest = event.key.partition(".")      # ttfb.tts.espeak, completed.asr.pocketsphinx
        kind, _, provider = rest.partition(".")
        if metric not in ("ttfb", "completed") or kind not in PROVIDER_KINDS or not provider:
            return
        key = (provider, kind, metric)
        histogram = self.provider_latency.get(key)
        if histogram is None:
            if len(self.provider_latency) >= MAX_PROVIDER_SERIES:
                return
            histogram = self.provider_latency[key] = Histogram(PROVIDER_BUCKETS)
        histogram.observe(event.duration / 1000.0)

    def _ended_leg(self, rtp: Mapping[str, Any]) -> None:
        for key, field_name in (("received", "packetsReceived"), ("lost", "packetsLost"), ("sent", "packetsSent")):
            value = rtp.get(field_name)
            if isinstance(value, int) and value > 0:
                self.rtp_ended[key] += value
        for direction, field_name in (("inbound", "jitterMs"), ("outbound", "remoteJitterMs")):
            value = rtp.get(field_name)
            # outbound: the peer's RTCP reports; no report is no figure, not a perfect one
            if isinstance(value, int | float) and (direction == "inbound" or int(rtp.get("rtcpReceived", 0)) > 0):
                self.jitter[direction].observe(float(value) / 1000.0)


def provider_name(driver: CallDriver, kind: str) -> str:
    """The registry's name of the provider ``driver``'s call uses for ``kind`` (asr or tts), or
    "unknown": never a client's raw string, which would make label values unbounded."""
    option = driver.call.option
    providers = driver.services.providers
    try:
        if kind == "asr" and option is not None and option.asr is not None:
            return providers.asr_name(option.asr)
        if kind == "tts" and option is not None and option.tts is not None:
            return providers.tts_name(option.tts)
    except Exception:     # a provider the registry does not know, or without its credentials
        return "unknown"
    return "unknown"


# -- a scrape ----------------------------------------------------------------------------------------------
def collect(server: CallServer) -> list[MetricFamily]:
    """This process's metric families, read now."""
    from pbx.server.media import EngineLeg

    metrics = server.metrics
    engine = server.media.engine
    families: list[MetricFamily] = []

    def family(name: str, kind: str, text: str) -> MetricFamily:
        f = MetricFamily(name, kind, text)
        families.append(f)
        return f

    active = {call_type: 0 for call_type in CALL_TYPES}
    live = {"received": 0, "lost": 0, "sent": 0}
    for driver in list(server.sessions.values()):
        call_type = driver.call.profile.call_type
        active[call_type] = active.get(call_type, 0) + 1
        leg = driver.call.leg
        if isinstance(leg, EngineLeg):
            quality = leg.quality()
            live["received"] += int(quality.get("packetsReceived", 0))
            live["lost"] += int(quality.get("packetsLost", 0))
            live["sent"] += int(quality.get("packetsSent", 0))

    f = family("pypbx_calls_active", "gauge", "Calls in progress, by type (WebSocket path).")
    for call_type, count in active.items():
        f.add(count, type=call_type)
    f = family("pypbx_calls_total", "counter", "Calls ended, by type and hangup reason.")
    for (call_type, reason), count in sorted(metrics.calls_ended.items()):
        f.add(count, type=call_type, reason=reason)
    family("pypbx_sip_pending_invites", "gauge",
           "Inbound INVITEs waiting for their application.").add(len(server.sip.pending))
    family("pypbx_engine_legs", "gauge", "Media engine legs in use.").add(engine.leg_count)
    family("pypbx_media_frames_total", "counter", "20 ms frames the media engine produced.").add(engine.frames)
    family("pypbx_media_skipped_frames_total", "counter",
           "Frames the media engine skipped because its tick came late.").add(engine.skipped_frames)
    inferred, gated = engine.silero_counts
    f = family("pypbx_silero_windows_total", "counter",
               "32 ms windows of silero VAD: inferred, or skipped (below the level gate; silero_skip).")
    f.add(inferred, kind="inferred")
    f.add(gated, kind="skipped")

    for key, text in (("received", "RTP packets received"), ("lost", "RTP packets lost (RTCP receiver count)"),
                      ("sent", "RTP packets sent")):
        total = metrics.rtp_exposed[key].update(metrics.rtp_ended[key] + live[key])
        family(f"pypbx_rtp_packets_{key}_total", "counter", f"{text}, ended and live legs.").add(total)
    f = family("pypbx_rtp_jitter_seconds", "histogram",
               "Interarrival jitter of each ended RTP leg: inbound as we measured it, outbound as the peer's "
               "RTCP reported it.")
    for direction, h in metrics.jitter.items():
        add_histogram(f, h.bounds, h.counts, h.sum, direction=direction)

    f = family("pypbx_provider_latency_seconds", "histogram",
               "ASR/TTS provider latency: ttfb (to the first result or audio) and completed.")
    for (provider, kind, metric), h in sorted(metrics.provider_latency.items()):
        add_histogram(f, h.bounds, h.counts, h.sum, provider=provider, kind=kind, metric=metric)
    f = family("pypbx_provider_errors_total", "counter", "Error events from ASR/TTS providers.")
    for (kind, provider), count in sorted(metrics.provider_errors.items()):
        f.add(count, provider=provider, kind=kind)

    h = metrics.loop_lag
    add_histogram(family("pypbx_event_loop_lag_seconds", "histogram",
                         f"How late a timer due every {LAG_PROBE_EVERY_S:g} s ran on the event loop."),
                  h.bounds, h.counts, h.sum)
    family("pypbx_event_loop_lag_max_seconds", "gauge", "The largest event loop lag seen.").add(
        metrics.lag_probe.max_s)
    load = server.admission.last
    family("pypbx_event_loop_busy_ratio", "gauge",
           "Fraction of the last load window (about 1 s) the event loop was busy.").add(
        round(load.busy, 4) if load is not None else 0.0)
    ticks = server.media.tick_stats
    add_histogram(family("pypbx_engine_tick_seconds", "histogram", "Wall time of each media tick."),
                  ticks.bucket_bounds, ticks.bucket_counts, ticks.seconds_total)
    family("pypbx_engine_tick_max_seconds", "gauge", "The longest media tick seen.").add(ticks.seconds_max)

    if server.sip.guard is not None:
        families.append(sip_refused(server.sip.guard.refused))
    cdr = server.cdr
    family("pypbx_cdr_written_total", "counter", "Call records written.").add(cdr.written if cdr else 0)
    family("pypbx_cdr_failed_total", "counter", "Call records that could not be written.").add(
        cdr.failed if cdr else 0)

    families += process_families()
    family("process_start_time_seconds", "gauge", "Start time of this process (Unix seconds).").add(
        round(server.started_at, 3))
    family("pypbx_uptime_seconds", "gauge", "Seconds since this server started.").add(
        round(time.time() - server.started_at, 1))
    return families


def sip_refused(verdicts: Verdicts) -> MetricFamily:
    """What the SIP guard (pbx.sip.guard) refused, by cause; ``blocks``: sources put on a cool-off."""
    family = MetricFamily("pypbx_sip_refused_total", "counter",
                          "SIP messages the per-source guard refused, by cause (docs/sip-security.md).")
    for cause in ("acl", "rate", "new_requests", "auth_blocked", "blocks"):
        family.add(getattr(verdicts, cause), cause=cause)
    return family


def process_families() -> list[MetricFamily]:
    """The standard process metrics of the calling process."""
    times = os.times()
    cpu = MetricFamily("process_cpu_seconds_total", "counter", "User and system CPU time of this process.")
    cpu.add(round(times.user + times.system, 3))
    rss = MetricFamily("process_resident_memory_bytes", "gauge", "Resident memory of this process.")
    rss.add(_rss_bytes())
    return [cpu, rss]


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024   # the peak: better than nothing
