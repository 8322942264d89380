"""Pure-Python reference of ``pbx.core.jitter.JitterBuffer``: the same algorithm, step by step.

The tests feed both the same traces and require identical outputs and statistics, so every rule here
(integer thresholds, the order of floating-point operations) matches core/jitter.pyx.  The algorithm is
described in that module's docstring.
"""

from __future__ import annotations

import math

NOTHING, FRAME, LOSS, EXPAND, EVENT = 0, 1, 2, 3, 4
PUT_OK, PUT_RESYNC, PUT_DUPLICATE, PUT_LATE, PUT_OVERFLOW, PUT_OVERSIZED, PUT_BAD_TIME = 0, 1, 2, 3, 4, 5, 6

MAX_DROPOUT = 3000           # forward sequence jump that restarts the stream (RFC 3550 A.1)
MAX_MISORDER = 100           # backward jump beyond this needs a confirming packet first
HIST_BINS = 512              # relative-delay histogram, 1 ms bins
HIST_WINDOW = 512            # packets in the histogram window (10.24 s of 20 ms packets)
QUANTILE_PERMILLE = 995      # target = this quantile of the relative delay
MIN_BLOCK = 64               # window minimum of the transit: blocks of packets ...
MIN_BLOCKS = 8               # ... this many (the current one and 7 complete ones)
MAX_CONCEAL = 5              # consecutive LOSS slots before the playout clock stops
SHRINK_SPACING = 25          # slots between two delay steps when shrinking
SHRINK_HYSTERESIS_MS = 2.0   # shrink once the delay exceeds the target by a frame plus this
EVENT_SLOTS = 16             # pending telephone-event packets

EMPTY, FULL, DONE, MISSED = 0, 1, 2, 3

INF = math.inf


def _s16(x: int) -> int:
    x &= 0xFFFF
    return x - 0x10000 if x >= 0x8000 else x


def _s32(x: int) -> int:
    x &= 0xFFFFFFFF
    return x - 0x100000000 if x >= 0x80000000 else x


class JitterBuffer:
    def __init__(self, clock_rate: int, frame_samples: int, min_delay_ms: float = 20.0,
                 max_delay_ms: float = 200.0, capacity: int = 64, max_payload: int = 1500,
                 event_pt: int = -1, resync_ms: float = 1000.0) -> None:
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.min_delay_ms = float(min_delay_ms)
        self.max_delay_ms = float(max_delay_ms)
        self.capacity = capacity
        self.max_payload = max_payload
        self.event_pt = event_pt
        self.resync_ms = float(resync_ms)
        self.ms_per_sample = 1000.0 / clock_rate
        self.frame_ms = frame_samples * self.ms_per_sample
        self.shrink_slack_ms = self.frame_ms + SHRINK_HYSTERESIS_MS
        # ring of packets indexed by extended sequence number
        self.r_seq = [-1] * capacity
        self.r_state = [EMPTY] * capacity
        self.r_ts = [0] * capacity
        self.r_hdr: list[tuple[int, bool, bytes]] = [(0, False, b"")] * capacity
        # relative-delay histogram (kept across resyncs: same network path)
        self.hist = [0] * HIST_BINS
        self.hist_ring = [0] * HIST_WINDOW
        self.hist_pos = 0
        self.hist_n = 0
        self.qbin = 0
        self.above = 0
        self.jitter = 0.0
        self.stats = dict(received=0, played=0, lost=0, late=0, duplicates=0, overflow=0, oversized=0,
                          resyncs=0, expanded=0, skipped=0, events=0)
        self.have_stream = False
        self._flush()

    # -- state resets ---------------------------------------------------------------------------
    def _flush(self) -> None:
        for i in range(self.capacity):
            self.r_seq[i] = -1
            self.r_state[i] = EMPTY
        self.buffered = 0
        self.ev: list[tuple[int, int, int, bool, bytes] | None] = [None] * EVENT_SLOTS
        self.ev_count = 0
        self.have_last_ev = False
        self.last_ev = 0
        self.ev_bits = 0
        self.probe = -1
        self.have_ts = False
        self.ts_origin = 0
        self.last_ts32 = 0
        self.last_rel = 0
        self.have_transit = False
        self.last_transit = 0.0
        self.cur_min = INF
        self.cur_count = 0
        self.block_mins = [INF] * (MIN_BLOCKS - 1)
        self.block_pos = 0
        self.ring_min = INF
        self.playing = False
        self.started = False
        self.slot_ts = 0
        self.slot_time = 0.0
        self.conceal_run = 0
        self.since_step = 0
        self.last_pt = 0

    def _start_stream(self, seq: int, ssrc: int) -> None:
        self.have_stream = True
        self.ssrc = ssrc
        self.max_ext = seq + 0x10000           # extended numbers stay positive
        self.play_ext = self.max_ext

    # -- derived values -------------------------------------------------------------------------
    def _window_min(self) -> float:
        return self.cur_min if self.cur_min < self.ring_min else self.ring_min

    @property
    def target_delay_ms(self) -> float:
        t = float(self.qbin + 1)
        if t < self.min_delay_ms:
            t = self.min_delay_ms
        if t > self.max_delay_ms:
            t = self.max_delay_ms
        return t

    @property
    def jitter_ms(self) -> float:
        return self.jitter

    @property
    def playout_delay_ms(self) -> float:
        if not self.playing:
            return math.nan
        return self.slot_time - self.slot_ts * self.ms_per_sample - self._window_min()

    # -- put ------------------------------------------------------------------------------------
    def put(self, seq: int, ts: int, ssrc: int, pt: int, marker: bool, payload: bytes,
            arrival_ms: float) -> int:
        st = self.stats
        st["received"] += 1
        if len(payload) > self.max_payload:
            st["oversized"] += 1
            return PUT_OVERSIZED
        if not math.isfinite(arrival_ms):
            return PUT_BAD_TIME
        result = PUT_OK
        if not self.have_stream:
            self._start_stream(seq, ssrc)
        elif ssrc != self.ssrc:
            self._resync(seq, ssrc)
            result = PUT_RESYNC
        else:
            d = _s16(seq - self.max_ext)
            if d > MAX_DROPOUT or d < -MAX_MISORDER:
                if d < 0 and seq != self.probe:
                    self.probe = (seq + 1) & 0xFFFF
                    st["late"] += 1
                    return PUT_LATE
                self._resync(seq, ssrc)
                result = PUT_RESYNC
        d = _s16(seq - self.max_ext)
        ext = self.max_ext + d
        if ext > self.max_ext:
            self.max_ext = ext
        if pt == self.event_pt:
            r = self._put_event(ext, ts, pt, marker, payload)
            return result if r == PUT_OK else r
        return self._put_audio(ext, seq, ts, ssrc, pt, marker, payload, arrival_ms, result)

    def _resync(self, seq: int, ssrc: int) -> None:
        self.stats["resyncs"] += 1
        self._flush()
        self._start_stream(seq, ssrc)

    def _put_audio(self, ext: int, seq: int, ts: int, ssrc: int, pt: int, marker: bool, payload: bytes,
                   arrival_ms: float, result: int) -> int:
        st = self.stats
        cap = self.capacity
        if ext < self.play_ext and not self.started and self.max_ext - ext < cap:
            self.play_ext = ext                       # reordered before playout began
        idx = ext % cap
        if ext < self.play_ext:
            if self.r_seq[idx] == ext and self.r_state[idx] == DONE:
                st["duplicates"] += 1
                return PUT_DUPLICATE
            if self.r_seq[idx] == ext:
                self.r_state[idx] = DONE              # a repeat of it is a duplicate
            if self.have_ts:
                self._measure(arrival_ms - self._ts_rel(ts) * self.ms_per_sample)
            st["late"] += 1
            return PUT_LATE
        if ext - self.play_ext >= cap:
            if self.playing or self.buffered > 0:
                st["overflow"] += 1
                return PUT_OVERFLOW
            self.play_ext = ext                       # idle: the window moves to the new packet
        if self.r_seq[idx] == ext and self.r_state[idx] != EMPTY:
            st["duplicates"] += 1
            return PUT_DUPLICATE
        if not self.have_ts:
            self._set_ts_origin(ts)
        rel = self._ts_rel(ts)
        transit = arrival_ms - rel * self.ms_per_sample
        wmin = self._window_min()
        if wmin != INF and abs(transit - wmin) > self.resync_ms:
            self._resync(seq, ssrc)
            result = PUT_RESYNC
            ext = self.max_ext
            idx = ext % cap
            self._set_ts_origin(ts)
            rel = 0
            transit = arrival_ms
        self._measure(transit)
        if self.started and rel < self.slot_ts:
            self.r_seq[idx] = ext
            self.r_state[idx] = DONE
            if ext == self.play_ext:
                self._advance()
            st["late"] += 1
            return PUT_LATE
        self.r_seq[idx] = ext
        self.r_state[idx] = FULL
        self.r_ts[idx] = rel
        self.r_hdr[idx] = (pt, bool(marker), bytes(payload))
        self.buffered += 1
        return result

    def _set_ts_origin(self, ts: int) -> None:
        self.have_ts = True
        self.ts_origin = ts
        self.last_ts32 = ts
        self.last_rel = 0

    def _ts_rel(self, ts: int) -> int:
        d = _s32(ts - self.last_ts32)
        rel = self.last_rel + d
        if d > 0:
            self.last_ts32 = ts
            self.last_rel = rel
        return rel

    def _measure(self, transit: float) -> None:
        """Jitter (RFC 3550), window minimum of the transit, relative-delay histogram."""
        if self.have_transit:
            self.jitter += (abs(transit - self.last_transit) - self.jitter) / 16.0
        self.have_transit = True
        self.last_transit = transit
        if transit < self.cur_min:
            self.cur_min = transit
        self.cur_count += 1
        if self.cur_count == MIN_BLOCK:
            self.block_mins[self.block_pos] = self.cur_min
            self.block_pos = (self.block_pos + 1) % (MIN_BLOCKS - 1)
            self.ring_min = INF
            for m in self.block_mins:
                if m < self.ring_min:
                    self.ring_min = m
            self.cur_min = INF
            self.cur_count = 0
        rel = transit - self._window_min()
        b = int(rel)
        if b >= HIST_BINS:
            b = HIST_BINS - 1
        hist = self.hist
        if self.hist_n == HIST_WINDOW:
            old = self.hist_ring[self.hist_pos]
            hist[old] -= 1
            if old > self.qbin:
                self.above -= 1
        else:
            self.hist_n += 1
        self.hist_ring[self.hist_pos] = b
        self.hist_pos = (self.hist_pos + 1) % HIST_WINDOW
        hist[b] += 1
        if b > self.qbin:
            self.above += 1
        allowed = self.hist_n * (1000 - QUANTILE_PERMILLE) // 1000
        while self.above > allowed:
            self.qbin += 1
            self.above -= hist[self.qbin]
        while self.qbin > 0 and self.above + hist[self.qbin] <= allowed:
            self.above += hist[self.qbin]
            self.qbin -= 1

    def _put_event(self, ext: int, ts: int, pt: int, marker: bool, payload: bytes) -> int:
        st = self.stats
        for e in self.ev:
            if e is not None and e[0] == ext:
                st["duplicates"] += 1
                return PUT_DUPLICATE
        if self.have_last_ev and ext <= self.last_ev:
            k = self.last_ev - ext
            if k < 64 and (self.ev_bits >> k) & 1:
                st["duplicates"] += 1
                return PUT_DUPLICATE
            if k < 64:
                self.ev_bits |= 1 << k
            st["late"] += 1
            return PUT_LATE
        if self.ev_count == EVENT_SLOTS:
            st["overflow"] += 1
            return PUT_OVERFLOW
        for i in range(EVENT_SLOTS):
            if self.ev[i] is None:
                self.ev[i] = (ext, ts, pt, bool(marker), bytes(payload))
                break
        self.ev_count += 1
        # the event takes a place in the sequence space: audio playout steps over it
        cap = self.capacity
        if self.play_ext <= ext < self.play_ext + cap:
            idx = ext % cap
            if not (self.r_seq[idx] == ext and self.r_state[idx] == FULL):
                self.r_seq[idx] = ext
                self.r_state[idx] = DONE
                if ext == self.play_ext:
                    self._advance()
        return PUT_OK

    # -- pop ------------------------------------------------------------------------------------
    def _advance(self) -> None:
        cap = self.capacity
        for _ in range(cap):
            idx = self.play_ext % cap
            if self.r_seq[idx] == self.play_ext and self.r_state[idx] == DONE:
                self.play_ext += 1
            else:
                break

    def _find_head(self) -> int:
        if self.buffered == 0:
            return -1
        cap = self.capacity
        for e in range(self.play_ext, self.play_ext + cap):
            idx = e % cap
            if self.r_seq[idx] == e and self.r_state[idx] == FULL:
                return e
        return -1

    def _skip_to(self, ext: int) -> None:
        """Move play_ext up to ``ext``; the sequence numbers stepped over are missing."""
        cap = self.capacity
        while self.play_ext < ext:
            idx = self.play_ext % cap
            if not (self.r_seq[idx] == self.play_ext and self.r_state[idx] == DONE):
                self.r_seq[idx] = self.play_ext
                self.r_state[idx] = MISSED
            self.play_ext += 1

    def _item(self, kind: int, ext: int, rel: int, pt: int, marker: bool,
              payload: bytes) -> tuple[int, int, int, int, int, bool, bytes]:
        return (kind, ext & 0xFFFF, (self.ts_origin + rel) & 0xFFFFFFFF, self.ssrc, pt, marker, payload)

    def pop(self, now_ms: float) -> tuple[int, int, int, int, int, bool, bytes] | None:
        st = self.stats
        if not math.isfinite(now_ms):
            return None
        if self.ev_count > 0:
            best = -1
            for i in range(EVENT_SLOTS):
                e = self.ev[i]
                if e is not None and (best < 0 or e[0] < self.ev[best][0]):  # type: ignore[index]
                    best = i
            ext, ts, pt, marker, payload = self.ev[best]  # type: ignore[misc]
            self.ev[best] = None
            self.ev_count -= 1
            if self.have_last_ev:
                shift = ext - self.last_ev
                self.ev_bits = ((self.ev_bits << shift) | 1) & 0xFFFFFFFFFFFFFFFF if shift < 64 else 1
            else:
                self.ev_bits = 1
            self.have_last_ev = True
            self.last_ev = ext
            st["events"] += 1
            return (EVENT, ext & 0xFFFF, ts, self.ssrc, pt, marker, payload)
        if not self.have_ts:
            return None
        mspp = self.ms_per_sample
        o_target = self._window_min() + self.target_delay_ms
        if not self.playing:
            head = self._find_head()
            if head < 0:
                return None
            hidx = head % self.capacity
            if now_ms - self.r_ts[hidx] * mspp < o_target:
                return None
            self._skip_to(head)
            self.playing = True
            self.started = True
            self.slot_ts = self.r_ts[hidx]
            self.slot_time = now_ms
            self.conceal_run = 0
            self.since_step = 0
            self.last_pt = self.r_hdr[hidx][0]
        elif now_ms < self.slot_time - self.frame_ms / 2.0:
            return None
        o_cur = self.slot_time - self.slot_ts * mspp
        self.since_step += 1
        if o_cur < o_target:
            self.slot_time += self.frame_ms
            self.since_step = 0
            st["expanded"] += 1
            return self._item(EXPAND, self.play_ext, self.slot_ts, self.last_pt, False, b"")
        head = self._find_head()
        cap = self.capacity
        if head >= 0:
            hidx = head % cap
            if self.r_ts[hidx] - self.slot_ts < self.frame_samples:
                nxt = head + 1
                nidx = nxt % cap
                if (o_cur - o_target >= self.shrink_slack_ms and self.since_step >= SHRINK_SPACING
                        and self.r_seq[nidx] == nxt and self.r_state[nidx] == FULL
                        and self.r_ts[nidx] - self.r_ts[hidx] == self.frame_samples):
                    self.r_state[hidx] = DONE
                    self.buffered -= 1
                    st["skipped"] += 1
                    self.since_step = 0
                    head, hidx = nxt, nidx
                self._skip_to(head)
                self.r_state[hidx] = DONE
                self.buffered -= 1
                self._advance()
                rel = self.r_ts[hidx]
                self.slot_ts = (rel if rel > self.slot_ts else self.slot_ts) + self.frame_samples
                self.slot_time += self.frame_ms
                self.conceal_run = 0
                st["played"] += 1
                pt, marker, payload = self.r_hdr[hidx]
                self.last_pt = pt
                return self._item(FRAME, head, rel, pt, marker, payload)
            if head == self.play_ext or self.r_hdr[hidx][1]:
                # the sender paused (silence) or a new talkspurt begins: restart the playout clock
                self.playing = False
                return self.pop(now_ms)
        # the expected packet is missing and its slot is due: conceal it
        ext = self.play_ext
        rel = self.slot_ts
        if head >= 0:
            self._skip_to(ext + 1)
            self._advance()
        self.slot_ts += self.frame_samples
        self.slot_time += self.frame_ms
        self.conceal_run += 1
        if self.conceal_run >= MAX_CONCEAL:
            self.playing = False
        st["lost"] += 1
        return self._item(LOSS, ext, rel, self.last_pt, False, b"")
