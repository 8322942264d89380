"""JSGF grammars checked before PocketSphinx compiles them (pbx/asr/jsgf.py), and the fair worker pool."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from pbx.asr.fair import FairPool
from pbx.asr.jsgf import MAX_CHARS, MAX_WORDS, GrammarError, check_grammar

HEAD = "#JSGF V1.0;\ngrammar g;\n"


def test_a_full_grammar_gives_its_words() -> None:
    text = HEAD + """
    // a comment
    import <other.rule>;
    /* a block
       comment */
    public <command> = /2.5/ call <name> [ please ] | "hang up" { hangup } | <digit> + ;
    <name> = stella | bob * ;
    <digit> = one | two | <NULL> ;
    """
    assert check_grammar(text) == ["call", "please", "hang", "up", "stella", "bob", "one", "two"]
    assert check_grammar("grammar g; public <s> = hello ;") == ["hello"]      # the header is optional


@pytest.mark.parametrize(("text", "message"), [
    (HEAD + "public <s> = call ( stella ;\n",
     "syntax error at line 3: expected '|' or ')' to close the group of line 3, found ';'"),
    (HEAD + "public <s> = call stella\n", "syntax error at line 3: the grammar ends too early"),
    (HEAD + "public <s> = ;\n", "syntax error at line 3: found ';' where a word, rule or group was expected"),
    (HEAD + "public <s> = call <nobody> ;\n", "rule <nobody> used at line 3 is not defined"),
    (HEAD + "<s> = call ;\n", "the grammar has no public rule"),
    (HEAD, "the grammar defines no rule"),
    ("public <s> = call ;", "syntax error at line 1: expected 'grammar <name>;', found 'public'"),
    (HEAD + 'public <s> = call "unclosed ;\n', "syntax error at line 3: unexpected '\"'"),
    (HEAD + "public <s> = " + " | ".join(["word"] * (MAX_WORDS + 1)) + " ;\n",
     f"the grammar has {MAX_WORDS + 1} words; at most {MAX_WORDS} are allowed"),
    (HEAD + "public <s> = a ;\n" + "// " + "x" * MAX_CHARS,
     f"the grammar has {len(HEAD) + 17 + 3 + MAX_CHARS} characters; at most {MAX_CHARS} are allowed"),
])
def test_a_bad_grammar_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(GrammarError) as info:
        check_grammar(text)
    assert str(info.value) == message


def test_a_sleeping_call_costs_its_queue_nothing() -> None:
    """Waiting (for the GIL, for I/O) is not work: a queue whose calls sleep is not charged for it."""
    async def run() -> float:
        pool = FairPool(1, "test")
        queue = pool.queue()
        await pool.run(queue, time.sleep, 0.05)
        used = queue.used
        await pool.close()
        return used

    assert asyncio.run(run()) < 0.01


def test_the_workers_serve_each_queue_in_turn() -> None:
    """One worker; a queue with ten slow calls, then another queue's one call: it runs second, not
    eleventh."""
    order: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> str:
        time.sleep(0.02)                 # releases the GIL, as a decoder slice would not; order is what counts
        with lock:
            order.append(name)
        return name

    async def run() -> list[str]:
        pool = FairPool(1, "test")
        busy, other = pool.queue(), pool.queue()
        calls = [asyncio.create_task(pool.run(busy, work, f"a{i}")) for i in range(10)]
        await asyncio.sleep(0.005)
        calls.append(asyncio.create_task(pool.run(other, work, "b")))
        results = await asyncio.gather(*calls)
        await pool.close()
        return list(results)

    results = asyncio.run(run())
    assert results == [f"a{i}" for i in range(10)] + ["b"]
    assert order.index("b") <= 2
    assert [n for n in order if n != "b"] == [f"a{i}" for i in range(10)]     # each queue in its order


def burn(seconds: float) -> None:
    """Work of this thread's CPU time, as a decoder call is (the pool charges CPU time, not sleeps)."""
    until = time.thread_time() + seconds
    while time.thread_time() < until:
        pass


def test_the_workers_keep_to_their_share_of_the_clock() -> None:
    """Ten calls of 50 ms of CPU at a share of 0.25: a call may start once the work before it, less the
    0.2 s of slack, is paid for at 0.25 s a second, so the last starts after (0.45 - 0.2) / 0.25 = 1 s
    and all take about 1.05 s, not 0.5 s."""
    def work() -> None:
        burn(0.05)

    async def run(share: float) -> float:
        pool = FairPool(1, "test", cpu_share=share)
        queue = pool.queue()
        started = time.monotonic()
        await asyncio.gather(*(pool.run(queue, work) for _ in range(10)))
        elapsed = time.monotonic() - started
        await pool.close()
        return elapsed

    assert asyncio.run(run(0.25)) >= 1.0
    assert asyncio.run(run(1.0)) < 1.0


def test_a_queue_whose_calls_cost_more_waits_behind_the_cheap_ones() -> None:
    """One worker. Queue "heavy" has run a 0.2 s call; then both queues have calls waiting: the cheap
    queue's go first, although the heavy one asked first."""
    order: list[str] = []

    def work(name: str, seconds: float) -> None:
        burn(seconds)
        order.append(name)

    async def run() -> None:
        pool = FairPool(1, "test")
        heavy, cheap = pool.queue(), pool.queue()
        await pool.run(heavy, work, "h0", 0.2)
        blocker = asyncio.create_task(pool.run(cheap, work, "c0", 0.05))   # keeps the worker busy
        await asyncio.sleep(0.01)
        later = [asyncio.create_task(pool.run(heavy, work, "h1", 0.01)),
                 asyncio.create_task(pool.run(cheap, work, "c1", 0.01))]
        await asyncio.gather(blocker, *later)
        await pool.close()

    asyncio.run(run())
    assert order == ["h0", "c0", "c1", "h1"]
