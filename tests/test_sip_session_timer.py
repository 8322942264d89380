"""Session timers (RFC 4028) with explicit time: the caller refreshes, we end a session nobody refreshed."""

from __future__ import annotations

from pbx.sip.session_timer import end_at, session_expires
from pbx.sip.ua import Ended, Incoming
from tests.test_sip_ua import (
    ALICE,
    ANSWER,
    agent,
    kinds,
    only,
    outbound,
    peer_request,
    place_call,
    reply,
    response,
    run,
    sent,
    transfer,
    wire,
)

BOB = ("127.0.0.1", 5062)


def timed_call(expires: str, now: float = 0.0):  # type: ignore[no-untyped-def]
    alice, bob = agent(ALICE, "a"), agent(BOB, "b")
    place_call(alice, now, headers={"Session-Expires": expires, "Supported": "timer"})
    transfer(alice, bob, now)
    incoming = only(bob.events(), Incoming)
    assert isinstance(incoming, Incoming)
    return alice, bob, incoming.session


def test_the_answer_makes_the_caller_the_refresher_and_an_unrefreshed_session_ends_with_bye() -> None:
    alice, bob, session = timed_call("120")
    bob.answer(session, ANSWER, 1.0)
    [ok] = sent(bob, ALICE)
    ok = response(ok)
    assert ok.headers.get("Session-Expires") == "120;refresher=uac" and ok.headers.get("Require") == "timer"
    alice.receive(wire(ok), BOB, 1.0)
    assert kinds(transfer(alice, bob, 1.0)) == ["ACK"]
    assert session.expires_at == end_at(1.0, 120) == 1.0 + 120 - 32
    out = run(bob, 200.0, ALICE)
    assert out[0][0] == 89.0 and set(kinds(m for _, m in out)) == {"BYE"}   # then Timer E resends it
    ended = only(bob.events(), Ended)
    assert isinstance(ended, Ended) and ended.reason == "session_expired"


def test_an_update_refresh_moves_the_end_and_is_answered_with_the_interval() -> None:
    alice, bob, session = timed_call("120")
    bob.answer(session, ANSWER, 0.0)
    transfer(bob, alice, 0.0)
    transfer(alice, bob, 0.0)
    caller = next(iter(alice.sessions.values()))
    refresh = peer_request(caller, "UPDATE", "refresh1", headers=[("Session-Expires", "150;refresher=uac")])
    bob.receive(wire(refresh), ALICE, 60.0)
    [ok] = sent(bob, ALICE)
    assert response(ok).status == 200 and response(ok).headers.get("Session-Expires") == "150;refresher=uac"
    assert session.expires_at == end_at(60.0, 150)
    assert run(bob, end_at(60.0, 150) - 0.01, ALICE) == [] and bob.events() == []


def test_an_interval_below_min_se_is_refused_422() -> None:
    alice, bob = agent(ALICE, "a"), agent(BOB, "b")
    place_call(alice, 0.0, headers={"Session-Expires": "30", "Supported": "timer"})
    transfer(alice, bob, 0.0)
    assert bob.events() == []
    [refused] = sent(bob, ALICE)
    assert response(refused).status == 422 and response(refused).headers.get("Min-SE") == "90"


def test_an_outbound_call_whose_callee_refreshes_ends_if_it_stops() -> None:
    alice, session, invite = outbound()
    assert "Supported" not in invite.headers             # we never offer to refresh: the callee must
    alice.receive(wire(reply(invite, 200, "OK", body=ANSWER, headers=[("Session-Expires", "100;refresher=uas")])),
                  BOB, 0.5)
    alice.events()
    sent(alice)
    assert session.expires_at == end_at(0.5, 100)
    assert session_expires(invite) is None


def test_a_call_without_session_timers_has_no_expiry() -> None:
    alice, session, invite = outbound()
    alice.receive(wire(reply(invite, 200, "OK", body=ANSWER)), BOB, 0.5)
    assert session.expires_at is None

