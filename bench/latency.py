"""Call-server latencies over the WebSocket API: end of speech -> silence, tts -> audio, interrupt -> quiet.

    python bench/latency.py [--trials 100] [--sessions 4] [--silence-padding 100] [--vad webrtc silero]
                            [--nice -10] [--quick]

The server runs in its own process (``python -m pbx serve``); this process is the client, on the
sans-I/O ``websockets`` protocol over an asyncio transport (bench/ws_support.py), so an arrival time
is taken in ``data_received`` as the bytes are read. Times are ``time.monotonic()`` of this process.

(a) end of speech -> ``silence`` event (per VAD type; target ``silencePadding`` + 40 ms).
    Calls with ``codec: "pcm"`` and ``vad: {type, silencePadding}`` stream 20 ms binary frames on
    the wall clock without a break: digital silence, then per trial one short espeak-ng phrase
    (10 phrases, 0.65-1.1 s of speech, no inner pause over 50 ms), then >= 600 ms of silence. A phrase
    is trimmed after its last sample with |x| >= 100 (-50 dBFS), so everything after that sample is
    digital zeros. *End of speech* = the moment the frame that holds that last speech sample had been
    written to the socket. Latency = arrival of the first ``silence`` event after the end of speech
    (one that arrives before the next phrase starts; otherwise the trial is a miss). Before each
    phrase the client's frame grid moves by a random 0-20 ms, so the phrase ends at every phase of
    the server's 20 ms media tick. ``--sessions`` calls per VAD type share the trials, all at once;
    every call is answered before any of them streams (a call's set-up, e.g. loading silero, stalls
    the server's loop, and on a /call leg a stall adds inbound delay for the rest of the call).
    The VAD may count the frame holding the last speech sample as silence already (its energy is
    low), so a trial can come in under silencePadding.
(b) ``tts`` command -> first binary audio frame (local espeak TTS; target <= 150 ms).
    One call (pcm, no VAD); per trial a new sentence with a new playId. Latency = arrival of the first
    binary frame - the moment the ``tts`` command had been written. Then ``interrupt``, wait for
    ``trackEnd`` and for 100 ms without frames, and a random 0-20 ms pause. One untimed warm-up trial.
(c) ``interrupt`` -> last outbound frame (target <= 20 ms).
    One call plays a long prompt (``play``); after 10 frames have arrived and a random 0-20 ms more,
    the client writes ``interrupt``. Latency = arrival of the last binary frame of that playback
    (frames in flight count: the last one to arrive, whenever the server sent it) - the moment the
    ``interrupt`` had been written, or 0 when no frame arrives after it. The trial ends at ``trackEnd``
    plus 150 ms without frames. One untimed warm-up trial.
Each row gives p50 and p99 over the trials (linear interpolation between order statistics).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ws_support import (
    FRAME_BYTES,
    FRAME_S,
    PROMPT_NAME,
    ServerProcess,
    WsClient,
    cpu_wait_s,
    fmt,
    load_average,
    open_session,
    percentile,
    speech,
    speech_frames,
)

PHRASES = ("Hello there", "Yes please", "Call me back later", "Thank you very much", "Good morning",
           "Please hold on", "See you tomorrow", "Sounds good to me", "I need some help", "What time is it")
TRIM_LEVEL = 100                      # |sample| >= this is speech (-50 dBFS)
LEAD_FRAMES = 25                      # silence before the first phrase
GAP_FRAMES = 30                       # silence after each phrase (600 ms)
TTS_TARGET_MS = 150.0
INTERRUPT_TARGET_MS = 20.0
SILENCE_MARGIN_MS = 40.0
SILENCE = bytes(FRAME_BYTES)


@dataclass
class Trials:
    name: str
    config: str
    target_ms: float
    values_ms: list[float] = field(default_factory=list)
    misses: int = 0
    parts_ms: list[tuple[float, float, float]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self) -> str:
        p50, p99 = percentile(self.values_ms, 50), percentile(self.values_ms, 99)
        verdict = "yes" if p99 <= self.target_ms and not self.misses else "no"
        return (f"| {self.name} | {self.config} | {fmt(p50)} | {fmt(p99)} | <= {self.target_ms:g} | "
                f"{len(self.values_ms)} | {self.misses} | {verdict} |")


def trimmed_phrase(text: str) -> list[bytes]:
    """The phrase's 20 ms frames, cut after its last sample with |x| >= TRIM_LEVEL (zeros after it)."""
    audio = speech(text)
    loud = np.flatnonzero(np.abs(audio.astype(np.int32)) >= TRIM_LEVEL)
    return speech_frames(audio[loud[0]:loud[-1] + 1])


class Clock:
    """Writes one frame per 20 ms slot on the wall clock; the grid can be moved later."""

    def __init__(self, client: WsClient) -> None:
        self.client = client
        self.loop = asyncio.get_running_loop()
        self.due = self.loop.time() + 0.05
        self.lateness: list[float] = []

    async def send(self, frame: bytes) -> float:
        delay = self.due - self.loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        self.client.send_audio(frame)
        written = time.monotonic()
        self.lateness.append(written - self.due)
        self.due += FRAME_S
        return written


async def answered(client: WsClient, option: dict[str, Any]) -> None:
    future = client.wait_event(lambda e: e.get("event") in ("answer", "error"))
    client.command({"command": "invite", "option": option})
    _, event = await asyncio.wait_for(future, 10.0)
    if event.get("event") != "answer":
        raise RuntimeError(f"invite failed: {event}")


# -- (a) end of speech -> silence ------------------------------------------------------------------

async def silence_call(client: WsClient, trials: int, phrases: list[list[bytes]], rng: random.Random,
                       result: Trials, generator_lag: list[float]) -> None:
    clock = Clock(client)
    for _ in range(LEAD_FRAMES):
        await clock.send(SILENCE)
    for trial in range(trials):
        clock.due += rng.uniform(0.0, FRAME_S)      # a new phase against the server's tick
        frames = phrases[(trial + rng.randrange(len(phrases))) % len(phrases)]
        end_of_speech = end_epoch = 0.0
        for frame in frames:
            end_of_speech = await clock.send(frame)
            end_epoch = time.time()
        for _ in range(GAP_FRAMES):
            await clock.send(SILENCE)
        after = [(t, e) for t, e in client.events if e.get("event") == "silence" and t > end_of_speech]
        if after:
            arrival, event = after[0]
            result.values_ms.append((arrival - end_of_speech) * 1000)
            # The server's view (its epoch-ms fields; same host clock): when it says silence started,
            # when it emitted the event, and how long the event took to arrive.
            arrival_epoch = end_epoch + (arrival - end_of_speech)
            result.parts_ms.append((event["startTime"] - end_epoch * 1000, event["timestamp"] - event["startTime"],
                                    arrival_epoch * 1000 - event["timestamp"]))
        else:
            result.misses += 1
    generator_lag.extend(clock.lateness)
    client.command({"command": "hangup"})
    await asyncio.sleep(0.05)
    client.close()


async def measure_silence(port: int, vads: list[str], padding_ms: int, trials: int, sessions: int,
                          seed: int) -> tuple[list[Trials], list[float]]:
    """(a) for every VAD type; every call is answered before any streams (see the module docstring)."""
    phrases = [trimmed_phrase(text) for text in PHRASES]
    rng = random.Random(seed)
    results, jobs, lag = [], [], []
    for vad in vads:
        result = Trials("end of speech -> silence event", f"{vad} VAD, silencePadding {padding_ms} ms",
                        padding_ms + SILENCE_MARGIN_MS)
        results.append(result)
        for s in range(sessions):
            client = await open_session(port, f"lat-{vad}-{s}")
            await answered(client, {"codec": "pcm", "vad": {"type": vad, "silencePadding": padding_ms}})
            count = trials // sessions + (1 if s < trials % sessions else 0)
            jobs.append(silence_call(client, count, phrases, random.Random(rng.random()), result, lag))
    await asyncio.gather(*jobs)
    return results, lag


# -- (b) tts -> first frame -----------------------------------------------------------------------

async def quiet(client: WsClient, last_frame: list[float], quiet_s: float, timeout_s: float = 5.0) -> None:
    """Wait until ``quiet_s`` passed without a binary frame."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        idle = time.monotonic() - last_frame[0]
        if idle >= quiet_s:
            return
        await asyncio.sleep(quiet_s - idle)


async def measure_tts(port: int, trials: int, rng: random.Random) -> Trials:
    result = Trials("tts command -> first audio frame", "espeak (local), pcm", TTS_TARGET_MS)
    client = await open_session(port, "lat-tts")
    await answered(client, {"codec": "pcm"})
    last_frame = [0.0]
    first: list[asyncio.Future[float]] = []

    def on_binary(arrival: float, payload: bytes) -> None:
        last_frame[0] = arrival
        if first and not first[0].done():
            first[0].set_result(arrival)

    client.on_binary = on_binary
    loop = asyncio.get_running_loop()
    for trial in range(-1, trials):                 # trial -1 warms the TTS engine up
        play_id = f"tts-{trial}"
        first[:] = [loop.create_future()]
        ended = client.wait_event(lambda e, p=play_id: e.get("event") == "trackEnd" and e.get("playId") == p)
        client.command({"command": "tts", "playId": play_id,
                        "text": f"Order number {trial + 101} is ready for pickup at the front desk."})
        sent = time.monotonic()
        try:
            arrival = await asyncio.wait_for(first[0], 5.0)
            if trial >= 0:
                result.values_ms.append((arrival - sent) * 1000)
        except TimeoutError:
            result.misses += 1
        client.command({"command": "interrupt"})
        await asyncio.wait_for(ended, 5.0)
        await quiet(client, last_frame, 0.1)
        await asyncio.sleep(rng.uniform(0.0, FRAME_S))
    client.command({"command": "hangup"})
    await asyncio.sleep(0.05)
    client.close()
    return result


# -- (c) interrupt -> last frame -------------------------------------------------------------------

async def measure_interrupt(port: int, trials: int, rng: random.Random) -> Trials:
    result = Trials("interrupt -> last audio frame", "play, pcm", INTERRUPT_TARGET_MS)
    client = await open_session(port, "lat-interrupt")
    await answered(client, {"codec": "pcm"})
    arrivals: list[float] = []
    last_frame = [0.0]
    flowing: list[asyncio.Future[None]] = []

    def on_binary(arrival: float, payload: bytes) -> None:
        arrivals.append(arrival)
        last_frame[0] = arrival
        if len(arrivals) >= 10 and flowing and not flowing[0].done():
            flowing[0].set_result(None)

    client.on_binary = on_binary
    loop = asyncio.get_running_loop()
    after_counts = []
    for trial in range(-1, trials):
        arrivals.clear()
        flowing[:] = [loop.create_future()]
        ended = client.wait_event(lambda e: e.get("event") == "trackEnd")
        client.command({"command": "play", "url": PROMPT_NAME})
        await asyncio.wait_for(flowing[0], 5.0)
        await asyncio.sleep(rng.uniform(0.0, FRAME_S))
        client.command({"command": "interrupt"})
        sent = time.monotonic()
        await asyncio.wait_for(ended, 5.0)
        await quiet(client, last_frame, 0.15)
        if trial >= 0:
            result.values_ms.append(max(0.0, arrivals[-1] - sent) * 1000)
            after_counts.append(sum(1 for t in arrivals if t > sent))
    result.notes.append(f"frames arriving after the interrupt was written: mean {np.mean(after_counts):.2f}, "
                        f"max {max(after_counts)}")
    client.command({"command": "hangup"})
    await asyncio.sleep(0.05)
    client.close()
    return result


# -- main ------------------------------------------------------------------------------------------

async def run(port: int, args: argparse.Namespace) -> tuple[list[Trials], list[float]]:
    rng = random.Random(args.seed)
    results, lag = await measure_silence(port, args.vad, args.silence_padding, args.trials, args.sessions,
                                         args.seed)
    results.append(await measure_tts(port, args.trials, rng))
    results.append(await measure_interrupt(port, args.trials, rng))
    return results, lag


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--sessions", type=int, default=4, help="calls per VAD type sharing the (a) trials")
    parser.add_argument("--silence-padding", type=int, default=100)
    parser.add_argument("--vad", nargs="+", default=["webrtc", "silero"], choices=["webrtc", "silero"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nice", type=int, default=0,
                        help="nice value of the server and this client (e.g. -10 on a shared host; root)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 8 trials")
    args = parser.parse_args()
    if args.quick:
        args.trials = 8
    print(f"# latency: {args.trials} trials per row; load average {load_average()}, nice {args.nice}", flush=True)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    with ServerProcess("pbx", prompt_seconds=30.0, nice=args.nice) as server:
        server.wait_ready()
        started, waited = time.monotonic(), cpu_wait_s(server.pid)
        results, lag = asyncio.run(run(server.port, args))
        wait_pct = 100 * (cpu_wait_s(server.pid) - waited) / (time.monotonic() - started)
    print()
    print("| measurement | configuration | p50 ms | p99 ms | target ms | trials | misses | p99 meets target |")
    print("|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    print()
    for result in results:
        if result.parts_ms:
            start, padding, delivery = (float(np.median(p)) for p in zip(*result.parts_ms, strict=True))
            result.notes.append(f"{result.config}: medians of the event's startTime - end of speech {start:.0f} ms, "
                                f"timestamp - startTime {padding:.0f} ms, arrival - timestamp {delivery:.0f} ms "
                                "(server epoch-ms fields, 1 ms resolution)")
        for note in result.notes:
            print(f"- {result.name}: {note}")
    lag_ms = np.asarray(lag) * 1000
    print(f"- (a) client frame writes: lateness p99 {fmt(percentile(lag_ms, 99), 2)} ms, max "
          f"{fmt(float(lag_ms.max()) if len(lag_ms) else float('nan'), 1)} ms")
    print(f"- the server waited for a CPU {wait_pct:.1f} % of the run (other processes on the host)")
    print(f"load average after: {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
