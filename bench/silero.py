"""Cheaper silero (issue 13): level-gate skipping and an int8 model, against float inference of every window.

    python bench/silero.py [--legs 1000] [--seconds 20] [--rounds 3] [--int8 PATH] [--agree-legs 48]
    python bench/silero.py quantize [--rate 16000|8000] [--out FILE]      (needs the onnx package)

Audio: a "conversation" per leg at 16 kHz: espeak-ng utterances (several sentences) separated by pauses
of 0.4-3.2 s (seeded), about 40 % speech, the share of a call the caller talks while an agent answers.
Two backgrounds over the whole signal: "quiet line" (white noise at -70 dBFS: pauses fall below the
engine's -55 dBFS energy floor, so skipping has windows to skip) and "noisy" (white noise at -40 dBFS,
about 20 dB below the speech: no window is below the floor, nothing is skipped; this case is only for
the int8 model's agreement).  Each leg reads the conversation from its own offset, so speech and pauses
are spread across legs; legs join over the first 25 ticks, as in bench/engine.py.

Pipeline, as the engine runs it (core/engine.pyx ``inbound`` + ``run_silero``): every 20 ms tick each
leg pushes 320 samples (``SileroBatch.push``), one ``run_ready`` infers every leg holding a full 32 ms
window, and each probability goes to ``VadBank`` (default VADOption) gated by the energy floor (a
window below -55 dBFS counts as 0, whatever the model says).

Skipping (``SileroBatch(skip_below=...)``, see core/silero.pyx): a window below the floor is not
inferred; "keep/8" is the skip policy (keep, zero, silence: what the LSTM state becomes over a skipped
window) and the gated windows in a row still inferred before skipping starts (8 = 256 ms).

Agreement: onsets (SPEAKING start_ms) and offsets (SILENCE start_ms) of every leg against the float
run that infers every window, on ``--agree-legs`` legs.  An event is matched to the reference's nearest
one of the same kind within 500 ms; reported: matched/reference counts, extra events, events at the
same time, and the largest difference in ms and in 32 ms windows.

Speed: CPU time (this thread; onnxruntime runs on it with threads=1) of ``run_ready`` only, divided by
the windows it served, after the first second: µs per leg per 32 ms window.  Configurations,
interleaved over ``--rounds`` rounds (best round kept, the machine is shared): single stream float
(each window inferred alone, one shared session: the baseline), batched float (``--legs`` legs),
batched float with skipping, batched int8, batched int8 with skipping.
Ratios are against the single-stream figure of the same run.

``quantize``: the shipped float model holds both the 8 kHz and 16 kHz graphs behind an ``If`` on
``sr``, with its weights as Constant nodes.  The step keeps the 16 kHz branch as the main graph (the
``sr`` input stays, ignored), turns the weights into initializers, and quantises the encoder's
convolutions statically (QDQ, int8 per-channel weights, uint8 activations, MinMax calibration on espeak
speech other than the bench's, clean, in noise and 20 dB down, run through the float model so the
LSTM state inputs are realistic).  The STFT convolution stays float (quantising it wrecks the
spectrum: every probability moves), as do the LSTM (its weights reach it through Slice/Unsqueeze, which
dynamic quantisation does not follow) and the one-channel output convolution.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from support.audio import espeak_speech  # noqa: E402

RATE = 16000
TICK = 320                      # 20 ms at 16 kHz
TICK_MS = 20
WINDOW_MS = 32
STAGGER_TICKS = 25
WARMUP_TICKS = STAGGER_TICKS + 25   # not timed: legs joining, the sessions' first runs
ENERGY_FLOOR = 3400.0           # core/engine.pyx: -55 dBFS as a mean square in int16 units squared
MATCH_MS = 500
SPEAKING, SILENCE = 1, 2
SENTENCES = (
    "Hello, I am calling about my order.",
    "It was supposed to arrive on Tuesday, but nothing has come yet.",
    "Yes.",
    "The order number is four seven two nine, and the name is Stella Martin.",
    "Could you check whether it left the warehouse?",
    "No, I would rather not wait for a call back.",
    "Okay, thank you very much for your help.",
)
CALIBRATION_TEXT = (
    "Please hold while I transfer your call to the next available agent. "
    "Our opening hours are nine to five, Monday to Friday, and ten to two on Saturdays."
)


# -- audio ---------------------------------------------------------------------------------------

def conversation(seed: int, background_dbfs: float) -> np.ndarray:
    """Utterances separated by pauses, ~40 % speech, over white noise at ``background_dbfs`` (int16)."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for _ in range(2):
        for text in SENTENCES:
            parts.append(espeak_speech(RATE, text).astype(np.float32))
            parts.append(np.zeros(int(rng.uniform(0.4, 3.2) * RATE), dtype=np.float32))
    signal = np.concatenate(parts)
    noise = rng.standard_normal(signal.shape[0]).astype(np.float32) * (32768.0 * 10 ** (background_dbfs / 20))
    return np.clip(np.round(signal + noise), -32768, 32767).astype(np.int16)


def speech_share(pcm: np.ndarray) -> float:
    """Share of 32 ms windows at or above the energy floor."""
    n = pcm.shape[0] // 512
    ms = (pcm[:n * 512].astype(np.float64) ** 2).reshape(n, 512).mean(axis=1)
    return float((ms >= ENERGY_FLOOR).mean())


# -- the engine's silero path ----------------------------------------------------------------------

Events = list[tuple[int, int]]          # (kind, start_ms) of one leg


@dataclass
class Run:
    events: list[Events]
    cpu_s: float                        # run_ready CPU time
    windows: int
    inferred: int
    skipped: int

    @property
    def us_per_window(self) -> float:
        return 1e6 * self.cpu_s / max(self.windows, 1)

    @property
    def skipped_pct(self) -> float:
        return 100 * self.skipped / max(self.inferred + self.skipped, 1)


def run_legs(audio: np.ndarray, legs: int, seconds: float, model: str | bytes, skip: bool,
             policy: str = "keep", single: bool = False, after: int = 8) -> Run:
    """Drive ``legs`` legs for ``seconds`` through SileroBatch + VadBank as the engine does.

    ``single``: each leg's window is inferred on its own as soon as it is full (one session, batches of
    one row: the single-stream baseline, as a per-leg server calls onnxruntime).
    """
    from pbx.core.silero import SileroBatch
    from pbx.core.vad import VadBank

    batch = SileroBatch(legs, model=model, skip_below=ENERGY_FLOOR if skip else 0.0, skip_policy=policy,
                        skip_after=after)
    vad = VadBank(legs)
    offsets = [(i * 7919 * TICK) % audio.shape[0] for i in range(legs)]
    loop = np.concatenate([audio, audio])
    events: list[Events] = [[] for _ in range(legs)]
    ticks = int(seconds * 1000 / TICK_MS)
    cpu = 0.0
    windows = 0

    def infer(timed: bool) -> None:
        nonlocal cpu, windows
        c0 = time.thread_time()
        n = batch.run_ready()
        if timed:   # not the first second: legs joining, onnxruntime's first runs allocate
            cpu += time.thread_time() - c0
            windows += n
        if n:
            slots, probs, starts = batch.results()
            gated = np.where(batch.result_energies() >= ENERGY_FLOOR, probs, np.float32(0.0)).astype(np.float32)
            vad.feed_many(slots, gated, starts, WINDOW_MS)

    for t in range(ticks):
        for leg in range(legs):
            joined = leg % STAGGER_TICKS
            if t < joined:
                continue
            start = (offsets[leg] + (t - joined) * TICK) % audio.shape[0]
            if batch.push(leg, loop[start:start + TICK], t * TICK_MS) and single:
                infer(t >= WARMUP_TICKS)
        infer(t >= WARMUP_TICKS)
        for slot, kind, _time, start, _dur in vad.drain():
            if kind in (SPEAKING, SILENCE):
                events[slot].append((kind, start))
    return Run(events, cpu, windows, batch.n_inferred, batch.n_skipped)


# -- agreement -------------------------------------------------------------------------------------

@dataclass
class Agreement:
    reference: int = 0
    matched: int = 0
    extra: int = 0
    same: int = 0
    max_ms: int = 0

    def line(self) -> str:
        return (f"{self.matched}/{self.reference} matched, {self.extra} extra, {self.same} at the same ms, "
                f"max diff {self.max_ms} ms ({-(-self.max_ms // WINDOW_MS)} windows)")


def agree(ref: Sequence[Events], got: Sequence[Events], kind: int) -> Agreement:
    """Events of ``kind`` in ``got`` against ``ref``, leg by leg: nearest same-kind event within MATCH_MS."""
    a = Agreement()
    for r_leg, g_leg in zip(ref, got, strict=True):
        r = [s for k, s in r_leg if k == kind]
        g = [s for k, s in g_leg if k == kind]
        used = [False] * len(g)
        a.reference += len(r)
        for s in r:
            best = None
            for j, gs in enumerate(g):
                if not used[j] and abs(gs - s) <= MATCH_MS and (best is None or abs(gs - s) < abs(g[best] - s)):
                    best = j
            if best is None:
                continue
            used[best] = True
            a.matched += 1
            d = abs(g[best] - s)
            a.same += d == 0
            a.max_ms = max(a.max_ms, d)
        a.extra += used.count(False)
    return a


# -- quantisation ------------------------------------------------------------------------------------

def quantize(out: Path, rate: int = RATE) -> None:
    """Write the int8 model of the ``rate`` graph (see the module docstring); needs onnx and
    onnxruntime.quantization."""
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    src = onnx.load(str(ROOT / "core" / "models" / "silero_vad.onnx"))
    # the If on sr: then_branch is the 16 kHz graph, else_branch the 8 kHz one
    wanted = "then_branch" if rate == RATE else "else_branch"
    branch = next(a.g for n in src.graph.node if n.op_type == "If" for a in n.attribute if a.name == wanted)

    def lift(graph: onnx.GraphProto) -> None:   # Constant weights -> initializers, subgraphs too
        keep = []
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    lift(attr.g)
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                arr = numpy_helper.to_array(node.attribute[0].t)
                if arr.size >= 16:
                    graph.initializer.append(numpy_helper.from_array(arr, node.output[0]))
                    continue
            keep.append(node)
        del graph.node[:]
        graph.node.extend(keep)

    lift(branch)
    nodes = [*branch.node, helper.make_node("Identity", [branch.output[0].name], ["output"]),
             helper.make_node("Identity", [branch.output[1].name], ["stateN"])]
    flat = helper.make_model(helper.make_graph(nodes, f"silero_vad_{rate // 1000}k", list(src.graph.input),
                                               list(src.graph.output), initializer=list(branch.initializer)),
                             opset_imports=src.opset_import, producer_name="pypbx bench/silero.py quantize")
    flat.ir_version = src.ir_version
    onnx.checker.check_model(flat)
    flat_path = out.with_suffix(f".float{rate // 1000}k.tmp.onnx")
    onnx.save(flat, str(flat_path))

    speech = espeak_speech(rate, CALIBRATION_TEXT).astype(np.float32) / 32768.0
    window, keep = 512 * rate // RATE, 64 * rate // RATE       # new samples and context a row
    rng = np.random.default_rng(7)
    signals = [speech, speech + rng.standard_normal(speech.shape[0]).astype(np.float32) * 0.01, speech * 0.1]
    session = ort.InferenceSession(str(flat_path), providers=["CPUExecutionProvider"])
    feeds: list[dict[str, np.ndarray]] = []
    for sig in signals:
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros(keep, dtype=np.float32)
        for i in range(sig.shape[0] // window):
            w = sig[i * window:(i + 1) * window]
            feed = {"input": np.concatenate([context, w])[None], "state": state, "sr": np.array(rate, np.int64)}
            feeds.append(feed)
            state = session.run(None, feed)[1]
            context = w[-keep:]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    stft = [n.name for n in flat.graph.node if n.op_type == "Conv" and "stft" in n.input[1]]
    quantize_static(str(flat_path), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    nodes_to_exclude=stft, per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    flat_path.unlink()
    print(f"wrote {out} ({out.stat().st_size} bytes) from {len(feeds)} calibration windows")


# -- report --------------------------------------------------------------------------------------------

def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", nargs="?", default="bench", choices=["bench", "quantize"])
    parser.add_argument("--out", type=Path, help="quantize: the model file (default core/models/silero_vad_int8.onnx, "
                                                 "or silero_vad_int8_8k.onnx with --rate 8000)")
    parser.add_argument("--rate", type=int, choices=[16000, 8000], default=RATE, help="quantize: the graph")
    parser.add_argument("--legs", type=int, default=1000, help="legs of the batched configurations")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per configuration (speed)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best is kept")
    parser.add_argument("--single-legs", type=int, default=20, help="legs of the single-stream baseline")
    parser.add_argument("--agree-legs", type=int, default=48, help="legs of the agreement runs")
    parser.add_argument("--agree-seconds", type=float, default=60.0)
    parser.add_argument("--int8", default="int8", help="int8 model: 'int8' (shipped) or a path")
    parser.add_argument("--skip-speed", action="store_true", help="agreement only")
    args = parser.parse_args(argv)
    if args.action == "quantize":
        name = "silero_vad_int8.onnx" if args.rate == RATE else "silero_vad_int8_8k.onnx"
        quantize(args.out or ROOT / "core" / "models" / name, args.rate)
        return 0
    int8: str | bytes = args.int8 if args.int8 == "int8" else Path(args.int8).read_bytes()

    quiet = conversation(1, -70.0)
    noisy = conversation(1, -40.0)
    print(f"# silero bench, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, CPU {cpu_model()}, "
          f"{platform.python_version()}")
    print(f"audio: {quiet.shape[0] / RATE:.1f} s conversation; windows at or above -55 dBFS: "
          f"quiet line {100 * speech_share(quiet):.0f} %, noisy {100 * speech_share(noisy):.0f} %")

    print(f"\n## agreement with float inference of every window ({args.agree_legs} legs x "
          f"{args.agree_seconds:.0f} s, onset = SPEAKING start, offset = SILENCE start)")
    for name, audio in (("quiet line", quiet), ("noisy", noisy)):
        ref = run_legs(audio, args.agree_legs, args.agree_seconds, "float", skip=False)
        configs: list[tuple[str, str | bytes, bool, str, int]] = [("int8", int8, False, "keep", 8)]
        if name == "quiet line":
            configs = [("float skip keep/0", "float", True, "keep", 0),
                       ("float skip zero/0", "float", True, "zero", 0),
                       ("float skip silence/0", "float", True, "silence", 0),
                       ("float skip keep/4", "float", True, "keep", 4),
                       ("float skip keep/8", "float", True, "keep", 8), *configs,
                       ("int8 skip keep/8", int8, True, "keep", 8)]
        for label, model, skip, policy, after in configs:
            got = run_legs(audio, args.agree_legs, args.agree_seconds, model, skip, policy, after=after)
            print(f"{name:10s} {label:20s} skipped {got.skipped_pct:4.1f} % | "
                  f"onsets {agree(ref.events, got.events, SPEAKING).line()} | "
                  f"offsets {agree(ref.events, got.events, SILENCE).line()}")

    if args.skip_speed:
        return 0
    print(f"\n## speed, quiet line audio, run_ready CPU per window ({args.rounds} rounds interleaved, best)")
    speed: list[tuple[str, int, str | bytes, bool, bool]] = [
        (f"single stream float, {args.single_legs} legs (baseline)", args.single_legs, "float", False, True),
        (f"batched float, {args.legs} legs", args.legs, "float", False, False),
        (f"batched float + skip, {args.legs} legs", args.legs, "float", True, False),
        (f"batched int8, {args.legs} legs", args.legs, int8, False, False),
        (f"batched int8 + skip, {args.legs} legs", args.legs, int8, True, False),
    ]
    best: dict[str, Run] = {}
    for _ in range(args.rounds):
        for label, legs, model, skip, single in speed:
            r = run_legs(quiet, legs, args.seconds, model, skip, single=single)
            if label not in best or r.us_per_window < best[label].us_per_window:
                best[label] = r
    base = best[speed[0][0]].us_per_window
    print("| configuration | µs per leg per 32 ms window | vs single stream | windows skipped |")
    print("|---|---|---|---|")
    for label, *_ in speed:
        r = best[label]
        print(f"| {label} | {r.us_per_window:.1f} | {r.us_per_window / base:.2f}x ({base / r.us_per_window:.1f}x "
              f"faster) | {r.skipped_pct:.0f} % |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
