"""The call's state table, through the call core: every (state, command) pair, with explicit time.

Each state is reached the way a transport would reach it (a transport with every capability: the SIP
transport to come); then one command is sent, and the outcome must be this file's own table: the
state the call is in afterwards, or the ``error`` event naming the state, or nothing at all once the
call is ending. No sockets, no sleeps: the leg is a real engine leg driven at explicit times.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pbx.call.actions import Answer, Close, Connect, Disconnect, Refer, Reject, Ring
from pbx.call.state import TABLE, CallState, Signal, after_signal, next_state
from pbx.errors import StateError
from pbx.protocol import ErrorEvent, HangupEvent, RingingEvent
from pbx.server.transports import WEBSOCKET_PROFILE
from tests.support.call_core import CallBench

S = CallState
PROBE = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"    # 39 bytes of silence, base64
COMMANDS: dict[str, dict[str, Any]] = {
    "invite": {"command": "invite", "option": {"codec": "pcm"}},
    "accept": {"command": "accept", "option": {"codec": "pcm"}},
    "ringing": {"command": "ringing"},
    "reject": {"command": "reject", "reason": "Busy Here", "code": 486},
    "tts": {"command": "tts", "text": PROBE, "base64": True},
    "play": {"command": "play", "url": "prompt.wav"},
    "interrupt": {"command": "interrupt"},
    "refer": {"command": "refer", "caller": "sip:bot@127.0.0.1", "callee": "sip:agent@127.0.0.1"},
    "mute": {"command": "mute"},
    "unmute": {"command": "unmute"},
    "hangup": {"command": "hangup"},
}

# What each state says when it refuses a command: "<command>: <why>".
WHY = {
    S.NEW: "no call is answered yet",
    S.CALLING: "the call is calling, not answered yet",
    S.RINGING: "the call is ringing, not answered yet",
    S.EARLY_MEDIA: "the call is in early media, not answered yet",
    S.ACCEPTING: "the call is being answered",
    S.ANSWERED: "the call is already answered",
    S.TRANSFERRING: "the call is being transferred",
}
R = "refused"
D = "dropped"       # ending or ended: no event at all

# state -> command -> the state after the command, R or D. reject and hangup end a call at once
# (nothing to wait for: no recording), so they read ENDED.
EXPECTED: dict[CallState, dict[str, CallState | str]] = {
    S.NEW: dict(invite=S.CALLING, accept=S.ACCEPTING, ringing=S.RINGING, reject=S.ENDED, tts=R, play=R,
                interrupt=R, refer=R, mute=R, unmute=R, hangup=S.ENDED),
    S.CALLING: dict(invite=R, accept=R, ringing=R, reject=R, tts=R, play=R, interrupt=R, refer=R, mute=R,
                    unmute=R, hangup=S.ENDED),
    S.RINGING: dict(invite=R, accept=S.ACCEPTING, ringing=S.RINGING, reject=S.ENDED, tts=R, play=R,
                    interrupt=R, refer=R, mute=R, unmute=R, hangup=S.ENDED),
    S.EARLY_MEDIA: dict(invite=R, accept=S.ACCEPTING, ringing=S.EARLY_MEDIA, reject=S.ENDED, tts=S.EARLY_MEDIA,
                        play=S.EARLY_MEDIA, interrupt=S.EARLY_MEDIA, refer=R, mute=S.EARLY_MEDIA,
                        unmute=S.EARLY_MEDIA, hangup=S.ENDED),
    S.ACCEPTING: dict(invite=R, accept=R, ringing=R, reject=R, tts=R, play=R, interrupt=R, refer=R, mute=R,
                      unmute=R, hangup=S.ENDED),
    S.ANSWERED: dict(invite=R, accept=R, ringing=R, reject=R, tts=S.ANSWERED, play=S.ANSWERED,
                     interrupt=S.ANSWERED, refer=S.TRANSFERRING, mute=S.ANSWERED, unmute=S.ANSWERED,
                     hangup=S.ENDED),
    S.TRANSFERRING: dict(invite=R, accept=R, ringing=R, reject=R, tts=R, play=R, interrupt=S.TRANSFERRING,
                         refer=R, mute=S.TRANSFERRING, unmute=S.TRANSFERRING, hangup=S.ENDED),
    S.ENDING: dict.fromkeys(COMMANDS, D),
    S.ENDED: dict.fromkeys(COMMANDS, D),
}


def reach(state: CallState, tmp_path: Path) -> CallBench:
    """A call in ``state``, reached as a transport would reach it."""
    bench = CallBench(tmp_path, auto_answer=False)
    steps: dict[CallState, Callable[[CallBench], None]] = {
        S.NEW: lambda b: None,
        S.CALLING: lambda b: b.send(COMMANDS["invite"]),
        S.RINGING: lambda b: (b.send(COMMANDS["invite"]), b.call.remote_ringing(False, None, b.now)),
        S.EARLY_MEDIA: lambda b: (b.send(COMMANDS["invite"]), b.call.remote_ringing(True, b.new_leg(), b.now)),
        S.ACCEPTING: lambda b: b.send(COMMANDS["accept"]),
        S.ANSWERED: lambda b: (b.send(COMMANDS["invite"]), b.answer()),
        S.TRANSFERRING: lambda b: (b.send(COMMANDS["invite"]), b.answer(), b.send(COMMANDS["refer"])),
        # a recording keeps the call ENDING until the file is closed
        S.ENDING: lambda b: (b.send({**COMMANDS["invite"], "option": {"codec": "pcm",
                                                                      "recorder": {"recorderFile": "x.wav"}}}),
                             b.answer(), b.send(COMMANDS["hangup"])),
        S.ENDED: lambda b: b.send(COMMANDS["hangup"]),
    }
    steps[state](bench)
    bench.collect()
    assert bench.state is state
    return bench


def test_the_expected_table_covers_every_state_and_command() -> None:
    assert set(EXPECTED) == set(CallState)
    assert all(set(row) == set(COMMANDS) for row in EXPECTED.values())


@pytest.mark.parametrize("state", list(CallState), ids=[s.name for s in CallState])
@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_in_each_state(tmp_path: Path, state: CallState, name: str) -> None:
    bench = reach(state, tmp_path)
    mark = len(bench.events)
    events = bench.send(COMMANDS[name])
    expected = EXPECTED[state][name]
    if expected == D:
        assert events == [] and bench.state is state
        return
    if expected == R:
        hint = " (send invite or accept first)" if state is S.NEW and name in ("tts", "play", "interrupt") else ""
        message = f"{name}: {WHY[state]}{hint}"
        assert [(type(e), e.sender, e.error) for e in events] == [(ErrorEvent, "command", message)]
        assert bench.state is state
        return
    assert bench.state is expected
    assert not [e for e in bench.events[mark:] if isinstance(e, ErrorEvent)], bench.events[mark:]
    if expected is S.ENDED:
        assert isinstance(bench.events[-1], HangupEvent)
        assert bench.closed() == Close(1000, "call ended")


def test_what_the_transport_is_asked_to_do() -> None:
    """Each state-changing command becomes its signalling action."""
    def run(tmp: Path, state: CallState, name: str) -> list[Any]:
        bench = reach(state, tmp)
        before = len(bench.actions)
        bench.send(COMMANDS[name])
        return [type(a) for a in bench.actions[before:]]

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        assert run(path, S.NEW, "invite") == [Connect]
        assert run(path, S.NEW, "accept") == [Answer]
        assert run(path, S.NEW, "ringing") == [Ring]
        assert run(path, S.NEW, "reject")[:1] == [Reject] and Disconnect not in run(path, S.NEW, "reject")
        assert run(path, S.ANSWERED, "refer") == [Refer]
        assert run(path, S.CALLING, "hangup")[0] is Disconnect    # CANCEL / BYE of what was dialled
        assert Disconnect not in run(path, S.NEW, "hangup")       # nothing was dialled


def test_a_transport_that_does_not_carry_a_command_refuses_it_first(tmp_path: Path) -> None:
    bench = CallBench(tmp_path, profile=WEBSOCKET_PROFILE)
    bench.send(COMMANDS["invite"])
    assert bench.state is S.ANSWERED
    events = bench.send(COMMANDS["ringing"])
    assert [e.error for e in events] == [
        "ringing is not supported on /call (WebSocket audio) calls; it applies to SIP calls on /call/sip"]
    events = bench.send({"command": "invite", "option": {"codec": "opus"}})
    assert [e.error for e in events] == ["invite: the call is already answered"]   # the state before the option


def test_signals_follow_the_table_and_an_impossible_one_is_a_state_error() -> None:
    assert after_signal(S.CALLING, Signal.REMOTE_RINGING) is S.RINGING
    assert after_signal(S.RINGING, Signal.REMOTE_EARLY_MEDIA) is S.EARLY_MEDIA
    assert after_signal(S.EARLY_MEDIA, Signal.ANSWERED) is S.ANSWERED
    assert after_signal(S.ACCEPTING, Signal.CONNECT_FAILED) is S.NEW
    assert after_signal(S.TRANSFERRING, Signal.TRANSFER_DONE) is S.ANSWERED
    assert after_signal(S.ENDING, Signal.ENDED) is S.ENDED
    for state in (S.NEW, S.CALLING, S.RINGING, S.EARLY_MEDIA, S.ACCEPTING, S.ANSWERED, S.TRANSFERRING):
        assert after_signal(state, Signal.END) is S.ENDING
        assert after_signal(state, Signal.REMOTE_HANGUP) is S.ENDING
    with pytest.raises(StateError, match="answered cannot happen while the call is new"):
        after_signal(S.NEW, Signal.ANSWERED)
    with pytest.raises(StateError, match="transfer done cannot happen while the call is answered"):
        after_signal(S.ANSWERED, Signal.TRANSFER_DONE)
    # commands and signals share the table; a command never names a signal
    assert all(isinstance(key, str | Signal) for row in TABLE.values() for key in row)
    assert next_state(S.ANSWERED, "answered") is None


def test_an_inbound_call_refused_for_its_application_or_left_undecided(tmp_path: Path) -> None:
    """No decision within the webhook's timeout (408) or an offer accept cannot answer (488): reject and
    hangup, whether the call is still NEW or already ACCEPTING. An application that leaves before deciding
    has the transport refuse the call (Disconnect: 603 on SIP)."""
    for state in (S.NEW, S.ACCEPTING):
        bench = reach(state, tmp_path)
        bench.call.incoming("sip:alice@pypbx.test", "sip:bot@pypbx.test", "v=0", bench.now)
        bench.call.rejected(408, "no decision", bench.now)
        bench.collect()
        assert bench.names()[-3:] == ["IncomingEvent", "RejectEvent", "HangupEvent"]
        assert bench.events[-2].code == 408 and not bench.actions_of(Disconnect)

    bench = reach(S.NEW, tmp_path)
    bench.call.incoming("sip:alice@pypbx.test", "sip:bot@pypbx.test", "v=0", bench.now)
    bench.call.end("client_disconnect", "user", bench.now)
    bench.collect()
    assert bench.names() == ["IncomingEvent", "HangupEvent"] and len(bench.actions_of(Disconnect)) == 1


def test_the_far_end_ringing_rejecting_and_hanging_up(tmp_path: Path) -> None:
    bench = reach(S.CALLING, tmp_path)
    bench.call.remote_ringing(False, None, bench.now)
    bench.collect()
    assert [type(e) for e in bench.events] == [RingingEvent] and bench.events[0].early_media is False
    bench.call.rejected(486, "Busy Here", bench.now)
    bench.collect()
    assert bench.names() == ["RingingEvent", "RejectEvent", "HangupEvent"]
    hangup = bench.events[-1]
    assert (hangup.reason, hangup.initiator) == ("rejected", "callee")
    assert hangup.ringing_time == bench.events[0].timestamp
    assert not bench.actions_of(Disconnect)       # the far end ended it

    bench = reach(S.ANSWERED, tmp_path)
    bench.call.remote_hangup("callee", bench.now)
    bench.collect()
    assert (bench.events[-1].reason, bench.events[-1].initiator) == ("remote_hangup", "callee")
    assert not bench.actions_of(Disconnect)


def test_a_failed_connect_returns_to_new_and_the_client_may_try_again(tmp_path: Path) -> None:
    bench = reach(S.CALLING, tmp_path)
    bench.call.connect_failed("media", "cannot start the call's media: engine full", bench.now)
    bench.collect()
    assert bench.state is S.NEW
    assert [(e.sender, e.error) for e in bench.of(ErrorEvent)] == [
        ("media", "cannot start the call's media: engine full")]
    bench.auto_answer = True
    bench.send(COMMANDS["invite"])
    assert bench.state is S.ANSWERED


def test_a_transfer_comes_back_to_answered_or_ends_the_call(tmp_path: Path) -> None:
    bench = reach(S.TRANSFERRING, tmp_path)
    bench.call.transfer_done("403 Forbidden", auto_hangup=False, now_ms=bench.now)
    bench.collect()
    assert bench.state is S.ANSWERED
    assert [(e.sender, e.error) for e in bench.of(ErrorEvent)] == [("refer", "403 Forbidden")]
    bench.send(COMMANDS["refer"])
    bench.call.transfer_done(None, auto_hangup=True, now_ms=bench.now)
    bench.collect()
    assert bench.state is S.ENDED
    assert (bench.events[-1].reason, bench.events[-1].initiator) == ("refer", "system")


def test_ending_waits_for_the_recording_then_sends_one_hangup(tmp_path: Path) -> None:
    bench = reach(S.ENDING, tmp_path)
    assert not bench.of(HangupEvent)
    bench.call.end("killed", "system", bench.now)          # a second end while ending: nothing
    bench.collect()
    bench.close_recordings()
    assert bench.state is S.ENDED
    assert len(bench.of(HangupEvent)) == 1 and bench.events[-1] is bench.of(HangupEvent)[0]
    assert bench.closed_recordings == [tmp_path / "recordings" / "x.wav"]
    assert (bench.events[-1].reason, bench.events[-1].initiator) == (None, "user")
