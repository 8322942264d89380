"""The sans-I/O SIP user agent (pbx/sip/ua.py): calls, hangups, digest, re-INVITEs, in-dialog requests.

Two ways to play the peer: a second :class:`UserAgent` wired back to back (what one queues is parsed and
handed to the other's ``receive``), or raw messages built from what the agent under test sent (for what
a well-behaved agent never sends: Record-Route, 183 with SDP, challenges, malformed responses). Time is a
parameter; tokens come from counters, so tags, branches and Call-IDs are predictable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import pytest

from pbx.sip.digest import AuthResult, Credentials, NonceIssuer, challenges, verify
from pbx.sip.message import Headers, Request, Response, parse_message, response_to
from pbx.sip.ua import (
    ALLOW,
    MAX_AUTH_ATTEMPTS,
    Answered,
    Ended,
    Failed,
    Incoming,
    Info,
    Notified,
    Progress,
    Referred,
    ReInvite,
    Session,
    SessionState,
    UaEvent,
    UserAgent,
)

Address = tuple[str, int]
Message = Request | Response
ALICE: Address = ("127.0.0.1", 5060)
BOB: Address = ("127.0.0.1", 5062)
T1, T2 = 0.5, 4.0
BOB_CONTACT = "<sip:bob@127.0.0.1:5062>"
TARGET = "sip:bob@127.0.0.1:5062"


def sdp(port: int, direction: str = "sendrecv") -> bytes:
    return (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
            f"m=audio {port} RTP/AVP 0\r\na={direction}\r\n").encode()


OFFER, ANSWER = sdp(4000), sdp(5000)
HOLD, HELD = sdp(4000, "sendonly"), sdp(5000, "recvonly")


# -- harness ------------------------------------------------------------------------------------------------
def tokens(prefix: str) -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"{prefix}{next(counter)}"


def agent(addr: Address, prefix: str) -> UserAgent:
    return UserAgent(addr[0], addr[1], token=tokens(prefix))


def address(ua: UserAgent) -> Address:
    return ua.host, ua.port


def wire(message: Message) -> Message:
    """``message`` as the peer receives it: serialised and parsed again."""
    return parse_message(message.serialize())


def sent_to(ua: UserAgent) -> list[tuple[Message, Address]]:
    return [(parse_message(data), addr) for data, addr in ua.datagrams_to_send()]


def sent(ua: UserAgent, to: Address = BOB) -> list[Message]:
    """What ``ua`` queued, parsed; all of it must go to ``to``."""
    out = sent_to(ua)
    assert [addr for _, addr in out] == [to] * len(out)
    return [message for message, _ in out]


def transfer(src: UserAgent, dst: UserAgent, now: float) -> list[Message]:
    """Hand what ``src`` queued to ``dst``; returns those messages."""
    moved = []
    for data, addr in src.datagrams_to_send():
        assert addr == address(dst)
        message = parse_message(data)
        dst.receive(message, address(src), now)
        moved.append(message)
    return moved


def feed(ua: UserAgent, message: Message, now: float, addr: Address = BOB) -> None:
    ua.receive(wire(message), addr, now)


def run(ua: UserAgent, until: float, to: Address = BOB) -> list[tuple[float, Message]]:
    """Fire the timers of ``ua`` due up to ``until``, each at its deadline; what it sent, with the time."""
    out: list[tuple[float, Message]] = []
    for _ in range(1000):
        when = ua.get_timer()
        if when is None or when > until:
            return out
        ua.handle_timer(when)
        out += [(when, message) for message in sent(ua, to)]
    raise AssertionError("the timers never settle")


def kinds(messages: Iterable[Message]) -> list[str]:
    """``INVITE``, ``ACK``, ``180``, ... for each message."""
    return [m.method if isinstance(m, Request) else str(m.status) for m in messages]


def request(message: Message) -> Request:
    assert isinstance(message, Request), message
    return message


def response(message: Message) -> Response:
    assert isinstance(message, Response), message
    return message


def reply(to: Request, status: int, reason: str, *, tag: str | None = "b-tag", contact: str | None = BOB_CONTACT,
          body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> Response:
    """The peer's response to ``to``: a To tag (except on a 100), Contact on 101-299, ``headers``, SDP."""
    answer = response_to(to, status, reason, to_tag=tag if status > 100 else None)
    if contact is not None and 100 < status < 300:
        answer.headers.add("Contact", contact)
    for name, value in headers:
        answer.headers.add(name, value)
    if body:
        answer.headers.add("Content-Type", "application/sdp")
        answer.body = body
    return answer


def place_call(alice: UserAgent, now: float = 0.0, **kwargs: object) -> Session:
    return alice.invite(TARGET, "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", OFFER, BOB, now,
                        **kwargs)  # type: ignore[arg-type]


def outbound(now: float = 0.0, **kwargs: object) -> tuple[UserAgent, Session, Request]:
    """Alice's agent with a call placed; the INVITE it sent."""
    alice = agent(ALICE, "a")
    session = place_call(alice, now, **kwargs)
    [invite] = sent(alice)
    return alice, session, request(invite)


def connected(now: float = 0.0) -> tuple[UserAgent, UserAgent, Session, Session]:
    """Alice called Bob, Bob answered, Alice ACKed: (alice, bob, alice's session, bob's session)."""
    alice, bob = agent(ALICE, "a"), agent(BOB, "b")
    caller = place_call(alice, now)
    transfer(alice, bob, now)
    [incoming] = bob.events()
    assert isinstance(incoming, Incoming)
    bob.answer(incoming.session, ANSWER, now)
    transfer(bob, alice, now)
    assert [type(e) for e in alice.events()] == [Answered]
    assert kinds(transfer(alice, bob, now)) == ["ACK"]
    assert bob.events() == []
    return alice, bob, caller, incoming.session


def peer_request(peer: Session, method: str, branch: str, *, body: bytes = b"", content_type: str = "",
                 headers: Iterable[tuple[str, str]] = ()) -> Request:
    """A request in the dialog built from ``peer``, the far end's session (its tags, CSeq, our Contact)."""
    assert peer.dialog is not None
    message = peer.dialog.create_request(method, via=f"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK{branch}",
                                         body=body, content_type=content_type or None)
    message.headers.add("Max-Forwards", "70")
    for name, value in headers:
        message.headers.add(name, value)
    return message


def only(events: list[UaEvent], kind: type) -> UaEvent:
    assert len(events) == 1 and isinstance(events[0], kind), events
    return events[0]


# -- 1. an outbound call ---------------------------------------------------------------------------------
def test_the_invite_carries_the_offer_a_contact_and_cseq_1() -> None:
    alice, session, invite = outbound()
    assert invite.method == "INVITE" and invite.uri == TARGET
    assert str(invite.cseq) == "1 INVITE"
    assert invite.call_id == "a1@127.0.0.1" == session.id == session.call_id
    assert invite.from_.tag == "a2" and invite.to.tag is None
    assert invite.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5060>"
    assert invite.headers.get("Content-Type") == "application/sdp" and invite.body == OFFER
    assert invite.branch == "z9hG4bKa3"
    assert alice.session(session.id) is session and session.state is SessionState.CALLING


def test_outbound_call_progress_answer_and_ack() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 100, "Trying"), 0.1)
    assert alice.events() == [] and sent(alice) == []
    feed(alice, reply(invite, 180, "Ringing"), 0.2)
    assert alice.events() == [Progress(session, 180, "Ringing", b"")]
    assert session.state is SessionState.EARLY
    feed(alice, reply(invite, 183, "Session Progress", body=ANSWER), 0.3)
    assert alice.events() == [Progress(session, 183, "Session Progress", ANSWER)]
    assert session.remote_sdp == ANSWER
    ok = reply(invite, 200, "OK", body=ANSWER)
    feed(alice, ok, 1.0)
    assert alice.events() == [Answered(session, ANSWER)]
    assert session.state is SessionState.CONFIRMED
    [ack] = sent(alice)
    ack = request(ack)
    assert ack.method == "ACK" and ack.uri == "sip:bob@127.0.0.1:5062"      # the 200's Contact
    assert str(ack.cseq) == "1 ACK" and ack.call_id == invite.call_id
    assert ack.to.tag == "b-tag" and ack.from_.tag == invite.from_.tag
    assert ack.branch != invite.branch                                      # the ACK of a 2xx is a new transaction
    # the 200 again (our ACK was lost): ACKed again, the same ACK, and no second Answered
    feed(alice, ok, 1.5)
    assert sent(alice) == [ack] and alice.events() == []
    feed(alice, ok, 2.5)
    assert sent(alice) == [ack] and alice.events() == []


def test_the_answered_event_tells_a_first_answer_from_a_reinvite_answer() -> None:
    _, session, _ = outbound()
    assert Answered(session, b"").reinvite is False


def test_a_2xx_after_timer_m_is_still_acked() -> None:
    alice, _, invite = outbound()
    ok = reply(invite, 200, "OK", body=ANSWER)
    feed(alice, ok, 0.0)
    [ack] = sent(alice)
    alice.events()
    run(alice, 64 * T1)                    # Timer M ends the INVITE transaction
    assert alice.layer.client_transactions == []
    feed(alice, ok, 64 * T1 + 0.1)       # a stray 2xx now, still ours to ACK (§13.2.2.4)
    assert sent(alice) == [ack] and alice.events() == []


def test_two_agents_place_answer_and_end_a_call() -> None:
    alice, bob, caller, callee = connected()
    assert caller.remote_sdp == ANSWER and callee.remote_sdp == OFFER
    assert caller.dialog is not None and callee.dialog is not None
    assert caller.dialog.id.local_tag == callee.dialog.id.remote_tag
    assert callee.state is caller.state is SessionState.CONFIRMED
    alice.hangup(caller, 5.0)
    assert alice.events() == []            # the owner ended it: no event for it
    [bye] = transfer(alice, bob, 5.0)
    assert request(bye).method == "BYE"
    assert bob.events() == [Ended(callee, "bye", True)]
    assert kinds(transfer(bob, alice, 5.0)) == ["200"]
    assert alice.sessions == {} and bob.sessions == {}


# -- 2. an inbound call ----------------------------------------------------------------------------------
def inbound(now: float = 0.0) -> tuple[UserAgent, UserAgent, Session, Request]:
    """Bob's agent with Alice's INVITE received: (alice, bob, bob's session, the INVITE)."""
    alice, bob = agent(ALICE, "a"), agent(BOB, "b")
    place_call(alice, now)
    [invite] = transfer(alice, bob, now)
    incoming = only(bob.events(), Incoming)
    assert isinstance(incoming, Incoming)
    assert incoming.request == invite
    return alice, bob, incoming.session, request(invite)


def test_inbound_call_ring_early_media_and_answer() -> None:
    _alice, bob, session, invite = inbound()
    assert session.remote_sdp == OFFER and session.state is SessionState.CALLING
    bob.ring(session, 0.1)
    ringing = response(only_sent(bob, ALICE))
    assert (ringing.status, ringing.reason, ringing.body) == (180, "Ringing", b"")
    tag = ringing.to.tag
    assert tag and ringing.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5062>"
    bob.ring(session, 0.2, ANSWER)
    progress = response(only_sent(bob, ALICE))
    assert (progress.status, progress.body, progress.to.tag) == (183, ANSWER, tag)
    assert progress.headers.get("Content-Type") == "application/sdp"
    bob.answer(session, ANSWER, 0.3)
    ok = response(only_sent(bob, ALICE))
    assert (ok.status, ok.body, ok.to.tag) == (200, ANSWER, tag)
    assert ok.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5062>"
    assert ok.headers.get("Content-Type") == "application/sdp"
    assert str(ok.cseq) == str(invite.cseq) and ok.call_id == invite.call_id
    assert session.state is SessionState.CONFIRMED and session.local_sdp == ANSWER


def only_sent(ua: UserAgent, to: Address) -> Message:
    [message] = sent(ua, to)
    return message


def test_a_retransmitted_invite_is_absorbed() -> None:
    _alice, bob, _, invite = inbound()
    bob.receive(wire(invite), ALICE, 0.1)
    assert bob.events() == [] and sent(bob, ALICE) == []


def test_our_200_is_retransmitted_from_t1_doubling_to_t2_until_the_ack() -> None:
    alice, bob, session, _ = inbound()
    bob.answer(session, ANSWER, 10.0)
    [ok] = sent(bob, ALICE)
    times = [(t - 10.0, kinds([m])[0]) for t, m in run(bob, 10.0 + 20.0, ALICE)]
    assert times == [(0.5, "200"), (1.5, "200"), (3.5, "200"), (7.5, "200"), (11.5, "200"),
                     (15.5, "200"), (19.5, "200")]
    # Alice gets the 200 (all of them), ACKs: no more retransmissions
    alice.receive(ok, BOB, 30.0)
    [ack] = sent(alice)
    assert request(ack).method == "ACK"
    bob.receive(ack, ALICE, 30.0)
    assert run(bob, 100.0, ALICE) == [] and bob.events() == []
    assert session.state is SessionState.CONFIRMED
    assert bob.sessions == {session.call_id: session}


def test_without_an_ack_the_200_stops_at_64_t1_and_the_call_ends_with_bye() -> None:
    _, bob, session, _ = inbound()
    bob.answer(session, ANSWER, 0.0)
    sent(bob, ALICE)
    out = run(bob, 100.0, ALICE)
    retransmits = [t for t, m in out if isinstance(m, Response)]
    assert retransmits == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    byes = [(t, m) for t, m in out if isinstance(m, Request)]
    assert byes[0][0] == 64 * T1 and byes[0][1].method == "BYE"
    assert bob.events() == [Ended(session, "ack_timeout", False)]
    assert bob.sessions == {}


# -- 3. no SDP in the INVITE ------------------------------------------------------------------------------
def test_an_invite_without_sdp_is_refused_488() -> None:
    alice = agent(ALICE, "a")
    alice.invite(TARGET, "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", b"", BOB, 0.0)
    bob = agent(BOB, "b")
    transfer(alice, bob, 0.0)
    assert bob.events() == [] and bob.sessions == {}
    refusal = response(only_sent(bob, ALICE))
    assert (refusal.status, refusal.reason) == (488, "Not Acceptable Here")
    assert refusal.to.tag                                 # a final response out of a dialog gets a To tag
    assert refusal.headers.get("Warning") == '399 pypbx "an SDP offer in the INVITE is required"'


# -- 4. hangup ----------------------------------------------------------------------------------------------
def test_bye_is_in_the_dialog_and_follows_the_route_set() -> None:
    alice, session, invite = outbound()
    record_route = [("Record-Route", "<sip:p1.example.com;lr>"), ("Record-Route", "<sip:p2.example.com;lr>")]
    feed(alice, reply(invite, 200, "OK", body=ANSWER, contact="<sip:bob@10.0.0.2:5070>", headers=record_route),
         0.0)
    ack = request(only_sent(alice, BOB))
    assert ack.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert ack.uri == "sip:bob@10.0.0.2:5070"
    alice.events()
    alice.hangup(session, 1.0)
    bye = request(only_sent(alice, BOB))
    assert bye.method == "BYE" and bye.uri == "sip:bob@10.0.0.2:5070"
    assert str(bye.cseq) == "2 BYE"
    assert bye.from_.tag == invite.from_.tag and bye.to.tag == "b-tag" and bye.call_id == invite.call_id
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    assert alice.events() == []
    feed(alice, reply(bye, 200, "OK"), 1.1)
    assert alice.events() == [] and alice.sessions == {}


@pytest.mark.parametrize("provisional", [100, 180])
def test_hangup_before_any_provisional_waits_for_one_to_cancel(provisional: int) -> None:
    alice, session, invite = outbound()
    alice.hangup(session, 0.1)
    assert sent(alice) == [] and alice.events() == []
    assert alice.get_timer() == T1                       # the INVITE is still retransmitted
    feed(alice, reply(invite, provisional, "Ringing" if provisional == 180 else "Trying"), 0.2)
    assert alice.events() == []
    cancel = request(only_sent(alice, BOB))
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert str(cancel.cseq) == "1 CANCEL" and cancel.branch == invite.branch
    assert cancel.call_id == invite.call_id and cancel.from_ == invite.from_ and cancel.to == invite.to
    feed(alice, reply(cancel, 200, "OK"), 0.3)
    feed(alice, reply(invite, 487, "Request Terminated"), 0.4)
    ack = request(only_sent(alice, BOB))                 # the transaction's ACK of the 487
    assert ack.method == "ACK" and ack.branch == invite.branch and str(ack.cseq) == "1 ACK"
    assert alice.events() == [] and alice.sessions == {} and alice.session(session.id) is None


def test_hangup_after_180_cancels_at_once() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 180, "Ringing"), 0.1)
    alice.events()
    alice.hangup(session, 0.2)
    cancel = request(only_sent(alice, BOB))
    assert cancel.method == "CANCEL" and cancel.branch == invite.branch and str(cancel.cseq) == "1 CANCEL"
    assert alice.events() == []
    feed(alice, reply(cancel, 200, "OK"), 0.3)
    feed(alice, reply(invite, 487, "Request Terminated"), 0.3)
    assert kinds(sent(alice)) == ["ACK"] and alice.events() == [] and alice.sessions == {}


def test_a_cancel_the_peer_never_answers_is_given_up_after_64_t1() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 180, "Ringing"), 0.0)
    alice.events()
    alice.hangup(session, 1.0)
    sent(alice)
    run(alice, 1.0 + 64 * T1)
    assert alice.sessions == {} and alice.events() == []


def test_a_200_that_crosses_the_cancel_is_acked_and_ended_with_bye() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 180, "Ringing"), 0.1)
    alice.events()
    alice.hangup(session, 0.2)
    [cancel] = sent(alice)
    ok = reply(invite, 200, "OK", body=ANSWER)
    feed(alice, ok, 0.3)
    ack, bye = (request(m) for m in sent(alice))
    assert (ack.method, str(ack.cseq), ack.to.tag) == ("ACK", "1 ACK", "b-tag")
    assert (bye.method, str(bye.cseq), bye.to.tag) == ("BYE", "2 BYE", "b-tag")
    assert alice.events() == []                         # no Answered: the owner hung up
    feed(alice, reply(request(cancel), 200, "OK"), 0.4)
    feed(alice, ok, 0.5)                                 # the 200 again: ACKed again, no second BYE
    assert sent(alice) == [ack] and alice.events() == []
    feed(alice, reply(bye, 200, "OK"), 0.6)
    assert alice.sessions == {}


def test_a_200_that_crosses_a_pending_cancel_is_acked_and_ended_with_bye() -> None:
    alice, session, invite = outbound()
    alice.hangup(session, 0.1)                           # before any provisional: the CANCEL waits
    feed(alice, reply(invite, 200, "OK", body=ANSWER), 0.2)
    assert kinds(sent(alice)) == ["ACK", "BYE"] and alice.events() == []


def test_hangup_of_an_unanswered_inbound_call_is_487() -> None:
    _alice, bob, session, _invite = inbound()
    bob.ring(session, 0.1)
    sent(bob, ALICE)
    bob.hangup(session, 0.2)
    refusal = response(only_sent(bob, ALICE))
    assert (refusal.status, refusal.reason) == (487, "Request Terminated") and refusal.to.tag
    assert bob.events() == [] and bob.sessions == {}


def test_hangup_before_the_ack_sends_bye_once_the_ack_comes() -> None:
    alice, bob, session, _ = inbound()
    bob.answer(session, ANSWER, 0.0)
    [ok] = sent(bob, ALICE)
    bob.hangup(session, 0.1)                             # §15: no BYE before the ACK of our 2xx
    assert sent(bob, ALICE) == []
    alice.receive(ok, BOB, 0.2)
    [ack] = sent(alice)
    bob.receive(ack, ALICE, 0.2)
    assert kinds(sent(bob, ALICE)) == ["BYE"]
    assert bob.events() == [] and bob.sessions == {}


def test_hangup_before_an_ack_that_never_comes_sends_bye_at_64_t1() -> None:
    _, bob, session, _ = inbound()
    bob.answer(session, ANSWER, 0.0)
    sent(bob, ALICE)
    bob.hangup(session, 0.1)
    byes = [t for t, m in run(bob, 100.0, ALICE) if isinstance(m, Request) and m.method == "BYE"]
    assert byes[0] == 64 * T1
    assert bob.events() == [] and bob.sessions == {}


def test_hangup_twice_and_calls_in_the_wrong_state_do_nothing() -> None:
    alice, bob, caller, callee = connected()
    bob.ring(callee, 1.0)
    bob.answer(callee, ANSWER, 1.0)
    bob.reject(callee, 486, "Busy Here", 1.0)
    assert sent(bob, ALICE) == []
    alice.hangup(caller, 1.0)
    alice.hangup(caller, 1.1)
    assert kinds(sent(alice)) == ["BYE"]


# -- 5. the peer ends the call ------------------------------------------------------------------------------
def test_peer_bye_is_answered_200_and_ends_the_call() -> None:
    alice, bob, caller, callee = connected()
    bob.hangup(callee, 1.0)
    [bye] = transfer(bob, alice, 1.0)
    assert str(request(bye).cseq) == "1 BYE"             # Bob had sent no request in the dialog yet
    assert alice.events() == [Ended(caller, "bye", True)]
    ok = response(only_sent(alice, BOB))
    assert (ok.status, str(ok.cseq)) == (200, "1 BYE")
    assert alice.sessions == {} and alice.session(caller.id) is None


def test_peer_cancel_of_an_unanswered_call() -> None:
    alice, bob, session, invite = inbound()
    bob.ring(session, 0.1)
    transfer(bob, alice, 0.1)
    alice.hangup(alice.session(invite.call_id), 0.2)    # type: ignore[arg-type]
    [cancel] = transfer(alice, bob, 0.2)
    assert request(cancel).method == "CANCEL"
    assert bob.events() == [Ended(session, "cancel", True)]
    ok, terminated = (response(m) for m in sent(bob, ALICE))
    assert (ok.status, str(ok.cseq)) == (200, "1 CANCEL")
    assert (terminated.status, str(terminated.cseq)) == (487, "1 INVITE")
    alice.receive(ok, BOB, 0.3)
    alice.receive(terminated, BOB, 0.3)
    [ack] = transfer(alice, bob, 0.3)                    # the transaction's ACK, absorbed by Bob's
    assert request(ack).method == "ACK"
    assert bob.events() == [] and sent(bob, ALICE) == [] and bob.sessions == {}


def test_a_cancel_for_no_pending_invite_is_481() -> None:
    _alice, bob, _caller, _callee = connected()
    cancel = Request("CANCEL", TARGET, Headers([
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKnone"), ("Max-Forwards", "70"),
        ("From", "<sip:alice@127.0.0.1>;tag=x"), ("To", "<sip:bob@127.0.0.1>"),
        ("Call-ID", "nobody@127.0.0.1"), ("CSeq", "1 CANCEL")]))
    bob.receive(wire(cancel), ALICE, 1.0)
    assert response(only_sent(bob, ALICE)).status == 481 and bob.events() == []


def test_a_cancel_after_the_answer_changes_nothing() -> None:
    _alice, bob, session, invite = inbound()
    bob.answer(session, ANSWER, 0.1)
    sent(bob, ALICE)
    cancel = Request("CANCEL", invite.uri, Headers([
        ("Via", invite.headers.get("Via") or ""), ("Max-Forwards", "70"), ("From", invite.headers.get("From") or ""),
        ("To", invite.headers.get("To") or ""), ("Call-ID", invite.call_id), ("CSeq", "1 CANCEL")]))
    bob.receive(wire(cancel), ALICE, 0.2)
    assert response(only_sent(bob, ALICE)).status == 200      # §9.2: the CANCEL has no effect
    assert bob.events() == [] and session.state is SessionState.CONFIRMED


def test_peer_bye_before_the_answer_ends_the_call_and_the_invite_gets_487() -> None:
    _alice, bob, session, invite = inbound()
    bob.ring(session, 0.1)
    ringing = response(only_sent(bob, ALICE))
    bye = Request("BYE", "sip:pypbx@127.0.0.1:5062", Headers([
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKearlybye"), ("Max-Forwards", "70"),
        ("From", invite.headers.get("From") or ""), ("To", ringing.headers.get("To") or ""),
        ("Call-ID", invite.call_id), ("CSeq", "2 BYE")]))
    bob.receive(wire(bye), ALICE, 0.2)
    assert bob.events() == [Ended(session, "bye", True)]
    assert sorted((response(m).status, response(m).cseq.method) for m in sent(bob, ALICE)) == [
        (200, "BYE"), (487, "INVITE")]
    assert bob.sessions == {}


def test_peer_bye_while_our_200_waits_for_its_ack_stops_the_retransmissions() -> None:
    alice, bob, session, invite = inbound()
    bob.answer(session, ANSWER, 0.0)
    [ok] = sent(bob, ALICE)
    alice.receive(ok, BOB, 0.1)
    sent(alice)                                          # the ACK, lost
    caller = alice.session(invite.call_id)
    assert caller is not None
    alice.hangup(caller, 0.2)
    transfer(alice, bob, 0.2)                            # BYE
    assert bob.events() == [Ended(session, "bye", True)]
    assert kinds(sent(bob, ALICE)) == ["200"]
    assert run(bob, 100.0, ALICE) == [] and bob.events() == [] and bob.sessions == {}


# -- 6. digest authentication -------------------------------------------------------------------------------
REALM = "pbx.example.com"
ISSUER = NonceIssuer(b"0123456789abcdef0123", random=lambda n: bytes(n))


def password(username: str, realm: str) -> str | None:
    return "secret" if username == "alice" else None


def challenge(invite: Request, status: int, now: float) -> Response:
    header = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    reason = "Proxy Authentication Required" if status == 407 else "Unauthorized"
    values = [(header, str(c)) for c in challenges(REALM, ISSUER.issue(now))]
    return reply(invite, status, reason, tag=f"auth{now}", headers=values)


@pytest.mark.parametrize("status", [407, 401])
def test_digest_challenge_is_answered_with_a_new_invite(status: int) -> None:
    alice, session, invite = outbound(credentials=Credentials("alice", "secret"))
    feed(alice, challenge(invite, status, 0.1), 0.1)
    ack, retry = (request(m) for m in sent(alice))
    assert ack.method == "ACK" and ack.branch == invite.branch          # the transaction ACKs the 4xx
    assert retry.method == "INVITE" and alice.events() == []
    assert retry.branch != invite.branch and str(retry.cseq) == "2 INVITE"
    assert retry.call_id == invite.call_id and retry.from_.tag == invite.from_.tag and retry.to.tag is None
    assert retry.body == OFFER
    header = "Proxy-Authorization" if status == 407 else "Authorization"
    other = "Authorization" if status == 407 else "Proxy-Authorization"
    assert other not in retry.headers
    verification = verify(retry.headers.get(header) or "", "INVITE", password, realm=REALM, issuer=ISSUER,
                          now=0.2, request_uri=retry.uri)
    assert verification.result is AuthResult.OK and verification.username == "alice"
    feed(alice, reply(retry, 200, "OK", body=ANSWER), 0.3)
    assert alice.events() == [Answered(session, ANSWER)]
    final_ack = request(only_sent(alice, BOB))
    assert str(final_ack.cseq) == "2 ACK" and final_ack.headers.get(header) == retry.headers.get(header)
    assert session.invite.cseq.seq == 2


def test_a_wrong_password_fails_after_max_auth_attempts() -> None:
    alice, session, invite = outbound(credentials=Credentials("alice", "wrong"))
    current = invite
    for attempt in range(MAX_AUTH_ATTEMPTS):
        feed(alice, challenge(current, 407, attempt), float(attempt))
        _, current = (request(m) for m in sent(alice))
        result = verify(current.headers.get("Proxy-Authorization") or "", "INVITE", password, realm=REALM,
                        issuer=ISSUER, now=attempt + 0.5)
        assert result.result is AuthResult.REJECTED
        assert str(current.cseq) == f"{attempt + 2} INVITE"
    feed(alice, challenge(current, 407, 9.0), 9.0)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Failed(session, 407, "Proxy Authentication Required")]
    assert alice.sessions == {}


def test_a_challenge_without_credentials_fails() -> None:
    alice, session, invite = outbound()
    feed(alice, challenge(invite, 407, 0.0), 0.1)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Failed(session, 407, "Proxy Authentication Required")]


@pytest.mark.parametrize("value", ["Basic realm=\"x\"", "Digest realm=", "garbage", "Digest nonce=\"n\"",
                                   'Digest realm="x", nonce="n", algorithm=SHA-1'])
def test_a_challenge_we_cannot_answer_fails_the_call(value: str) -> None:
    alice, session, invite = outbound(credentials=Credentials("alice", "secret"))
    feed(alice, reply(invite, 407, "Proxy Authentication Required", headers=[("Proxy-Authenticate", value)]), 0.1)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Failed(session, 407, "Proxy Authentication Required")]


def test_credentials_for_another_realm_are_not_sent() -> None:
    alice, session, invite = outbound(credentials=Credentials("alice", "secret", realm="other.example.com"))
    feed(alice, challenge(invite, 401, 0.0), 0.1)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Failed(session, 401, "Unauthorized")]


def test_hangup_after_a_challenge_waits_for_the_new_invites_provisional() -> None:
    alice, session, invite = outbound(credentials=Credentials("alice", "secret"))
    feed(alice, reply(invite, 100, "Trying"), 0.05)
    feed(alice, challenge(invite, 407, 0.1), 0.1)
    _, retry = (request(m) for m in sent(alice))
    alice.hangup(session, 0.2)
    assert sent(alice) == []                             # no provisional for the new INVITE yet
    feed(alice, reply(retry, 180, "Ringing"), 0.3)
    cancel = request(only_sent(alice, BOB))
    assert cancel.method == "CANCEL" and cancel.branch == retry.branch and str(cancel.cseq) == "2 CANCEL"


# -- 7. re-INVITE -----------------------------------------------------------------------------------------------
def test_a_peer_reinvite_is_reported_and_answered() -> None:
    alice, bob, caller, callee = connected()
    assert bob.reinvite(callee, HOLD, 1.0) is True
    [reinvite] = transfer(bob, alice, 1.0)
    assert str(request(reinvite).cseq) == "1 INVITE" and request(reinvite).to.tag == caller.local_tag
    assert alice.events() == [ReInvite(caller, HOLD)]
    alice.answer_reinvite(caller, HELD, 1.1)
    [ok] = sent(alice)
    ok = response(ok)
    assert (ok.status, ok.body, str(ok.cseq)) == (200, HELD, "1 INVITE")
    assert ok.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5060>"
    assert caller.local_sdp == HELD
    # retransmitted until the ACK
    assert [t for t, _ in run(alice, 3.0)] == pytest.approx([1.6, 2.6])
    bob.receive(ok, ALICE, 3.0)
    assert bob.events() == [Answered(callee, HELD, reinvite=True)]
    [ack] = transfer(bob, alice, 3.0)
    assert str(request(ack).cseq) == "1 ACK"
    assert run(alice, 100.0) == [] and alice.events() == []


def test_refusing_a_reinvite_is_488_and_keeps_the_call() -> None:
    alice, bob, caller, callee = connected()
    bob.reinvite(callee, HOLD, 1.0)
    transfer(bob, alice, 1.0)
    alice.events()
    alice.answer_reinvite(caller, None, 1.1)
    refusal = response(only_sent(alice, BOB))
    assert refusal.status == 488 and caller.state is SessionState.CONFIRMED
    bob.receive(refusal, ALICE, 1.2)
    assert kinds(sent(bob, ALICE)) == ["ACK"]            # the transaction's ACK
    assert bob.events() == [] and callee.state is SessionState.CONFIRMED
    assert callee.local_sdp == ANSWER                    # the offer was refused: the old session stands
    assert bob.reinvite(callee, OFFER, 2.0) is True      # a new one may follow


def test_a_second_reinvite_while_one_is_unanswered_is_500_with_retry_after() -> None:
    alice, _bob, caller, callee = connected()
    first = peer_request(callee, "INVITE", "r1", body=HOLD, content_type="application/sdp")
    first.headers.add("Contact", BOB_CONTACT)
    feed(alice, first, 1.0)
    assert alice.events() == [ReInvite(caller, HOLD)]
    second = peer_request(callee, "INVITE", "r2", body=OFFER, content_type="application/sdp")
    second.headers.add("Contact", BOB_CONTACT)
    feed(alice, second, 1.1)
    refusal = response(only_sent(alice, BOB))
    assert (refusal.status, str(refusal.cseq)) == (500, "2 INVITE")      # RFC 3261 §14.2
    assert 0 <= int(refusal.headers.get("Retry-After") or "-1") <= 10
    assert alice.events() == []
    alice.answer_reinvite(caller, HELD, 1.2)
    ok = response(only_sent(alice, BOB))
    assert (ok.status, str(ok.cseq)) == (200, "1 INVITE")


def test_glare_both_reinvites_get_491() -> None:
    alice, bob, caller, callee = connected()
    alice.reinvite(caller, HOLD, 1.0)
    bob.reinvite(callee, HOLD, 1.0)
    [ours], [theirs] = sent(alice), sent(bob, ALICE)
    alice.receive(theirs, BOB, 1.1)
    bob.receive(ours, ALICE, 1.1)
    assert alice.events() == [] and bob.events() == []
    assert kinds(sent(alice)) == ["491"] and kinds(sent(bob, ALICE)) == ["491"]


def test_our_reinvite_is_in_the_dialog_and_its_200_is_acked_with_its_cseq() -> None:
    alice, bob, caller, callee = connected()
    assert alice.reinvite(caller, HOLD, 1.0) is True
    assert alice.reinvite(caller, OFFER, 1.0) is False   # §14.1: one INVITE at a time
    [reinvite] = transfer(alice, bob, 1.0)
    reinvite = request(reinvite)
    assert str(reinvite.cseq) == "2 INVITE" and reinvite.uri == "sip:pypbx@127.0.0.1:5062"
    assert reinvite.to.tag == callee.local_tag and reinvite.from_.tag == caller.local_tag
    assert reinvite.body == HOLD and reinvite.headers.get("Content-Type") == "application/sdp"
    assert bob.events() == [ReInvite(callee, HOLD)]
    bob.answer_reinvite(callee, HELD, 1.1)
    [ok] = transfer(bob, alice, 1.1)
    assert alice.events() == [Answered(caller, HELD, reinvite=True)]
    assert caller.remote_sdp == HELD and caller.state is SessionState.CONFIRMED
    ack = request(only_sent(alice, BOB))
    assert str(ack.cseq) == "2 ACK"                      # the re-INVITE's, not the first INVITE's
    bob.receive(wire(ack), ALICE, 1.2)
    assert run(bob, 100.0, ALICE) == []
    alice.receive(ok, BOB, 1.3)                          # retransmitted: ACKed again, no second event
    assert sent(alice) == [ack] and alice.events() == []
    assert run(alice, 100.0) == []                       # no retransmitted re-INVITE
    alice.hangup(caller, 101.0)
    assert str(request(only_sent(alice, BOB)).cseq) == "3 BYE"


def test_a_reinvite_the_peer_does_not_know_ends_the_call() -> None:
    alice, _bob, caller, _callee = connected()
    alice.reinvite(caller, HOLD, 1.0)
    reinvite = request(only_sent(alice, BOB))
    feed(alice, reply(reinvite, 481, "Call/Transaction Does Not Exist", tag=None), 1.1)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Ended(caller, "gone", True)] and alice.sessions == {}


def test_a_reinvite_that_times_out_ends_the_call_with_bye() -> None:
    alice, _bob, caller, _callee = connected()
    alice.reinvite(caller, HOLD, 1.0)
    sent(alice)
    out = run(alice, 1.0 + 64 * T1)
    assert kinds(m for _, m in out).count("INVITE") == 6 and kinds([out[-1][1]]) == ["BYE"]
    assert alice.events() == [Ended(caller, "timeout", False)]


# -- 8. other requests in and out of the dialog ------------------------------------------------------------
def test_info_is_answered_and_reported() -> None:
    alice, bob, caller, callee = connected()
    bob.send_info(callee, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", 1.0)
    [info] = transfer(bob, alice, 1.0)
    assert request(info).method == "INFO"
    assert alice.events() == [Info(caller, "application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")]
    assert kinds(transfer(alice, bob, 1.0)) == ["200"]
    assert bob.events() == []


def test_notify_is_answered_and_reported() -> None:
    alice, _bob, caller, callee = connected()
    notify = peer_request(callee, "NOTIFY", "n1", body=b"SIP/2.0 200 OK\r\n", content_type="message/sipfrag",
                          headers=[("Event", "refer"), ("Subscription-State", "terminated")])
    feed(alice, notify, 1.0)
    assert alice.events() == [Notified(caller, "refer", b"SIP/2.0 200 OK\r\n")]
    assert response(only_sent(alice, BOB)).status == 200


@pytest.mark.parametrize(("accept", "status"), [(True, 202), (False, 603)])
def test_refer_waits_for_the_owner(accept: bool, status: int) -> None:
    alice, _bob, caller, callee = connected()
    refer = peer_request(callee, "REFER", "f1", headers=[("Refer-To", "<sip:carol@127.0.0.1>")])
    feed(alice, refer, 1.0)
    event = only(alice.events(), Referred)
    assert isinstance(event, Referred) and event.refer_to == "<sip:carol@127.0.0.1>"
    assert sent(alice) == []
    alice.respond_refer(caller, event.request, accept, 1.1)
    assert response(only_sent(alice, BOB)).status == status
    alice.respond_refer(caller, event.request, accept, 1.2)     # answered already: nothing more
    assert sent(alice) == []


def test_the_progress_of_an_accepted_refer_goes_to_the_referrer_as_notify_sipfrags() -> None:
    alice, bob, caller, callee = connected()
    alice.notify_refer(caller, 100, "Trying", 1.0)
    [trying] = transfer(alice, bob, 1.0)
    headers = request(trying).headers
    assert request(trying).method == "NOTIFY" and headers.get("Event") == "refer"
    assert headers.get("Subscription-State") == "active;expires=60"
    assert headers.get("Content-Type") == "message/sipfrag;version=2.0"
    assert bob.events() == [Notified(callee, "refer", b"SIP/2.0 100 Trying\r\n")]
    assert kinds(transfer(bob, alice, 1.0)) == ["200"]
    alice.notify_refer(caller, 486, "Busy Here", 2.0)
    [final] = transfer(alice, bob, 2.0)
    assert request(final).headers.get("Subscription-State") == "terminated;reason=noresource"
    assert str(request(final).cseq) == f"{request(trying).cseq.seq + 1} NOTIFY"
    assert bob.events() == [Notified(callee, "refer", b"SIP/2.0 486 Busy Here\r\n")]
    alice.hangup(caller, 3.0)
    sent(alice)
    alice.notify_refer(caller, 200, "OK", 3.1)                  # the dialog is gone: nothing is sent
    assert sent(alice) == []


def test_with_two_address_families_each_peer_is_told_its_own_family_s_address() -> None:
    alice = agent(ALICE, "a")
    alice.address6 = ("::1", 5080)
    six, four = ("::1", 5062), BOB
    for peer, via, contact in ((six, "[::1]:5080", "<sip:pypbx@[::1]:5080>"),
                               (four, "127.0.0.1:5060", "<sip:pypbx@127.0.0.1:5060>")):
        alice.invite("sip:bob@example.test", "sip:alice@example.test", "sip:bob@example.test", sdp(4000), peer, 0.0)
        [invite] = sent(alice, peer)
        assert str(request(invite).headers.get("Via")).split()[1].startswith(f"{via};")
        assert request(invite).headers.get("Contact") == contact


def test_refer_without_refer_to_is_400() -> None:
    alice, _bob, _caller, callee = connected()
    feed(alice, peer_request(callee, "REFER", "f2"), 1.0)
    assert response(only_sent(alice, BOB)).status == 400 and alice.events() == []


def test_options_in_and_out_of_a_dialog() -> None:
    alice, _bob, _caller, callee = connected()
    feed(alice, peer_request(callee, "OPTIONS", "o1"), 1.0)
    ok = response(only_sent(alice, BOB))
    assert ok.status == 200 and ok.headers.get_all("Allow") == ALLOW.split(", ")
    lone = agent(BOB, "z")
    feed(lone, out_of_dialog("OPTIONS"), 1.0, ALICE)
    ok = response(only_sent(lone, ALICE))
    assert ok.status == 200 and ok.headers.get_all("Allow") == ALLOW.split(", ") and ok.to.tag
    assert lone.events() == [] and lone.sessions == {}


def out_of_dialog(method: str, *, to_tag: str = "", headers: Iterable[tuple[str, str]] = (),
                  cseq: str = "") -> Request:
    to = "<sip:bob@127.0.0.1>" + (f";tag={to_tag}" if to_tag else "")
    message = Request(method, TARGET, Headers([
        ("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKood" + method.lower()), ("Max-Forwards", "70"),
        ("From", "<sip:alice@127.0.0.1>;tag=ood"), ("To", to), ("Call-ID", "ood@127.0.0.1"),
        ("CSeq", cseq or f"1 {method}"), ("Contact", "<sip:alice@127.0.0.1:5060>")]))
    for name, value in headers:
        message.headers.add(name, value)
    return message


@pytest.mark.parametrize(("method", "status", "reason"), [
    ("FOO", 501, "Not Implemented"),
    ("REGISTER", 405, "Method Not Allowed"),
    ("SUBSCRIBE", 405, "Method Not Allowed"),
    ("MESSAGE", 405, "Method Not Allowed"),
    ("PRACK", 405, "Method Not Allowed"),
    ("PUBLISH", 405, "Method Not Allowed"),
])
def test_methods_we_do_not_serve(method: str, status: int, reason: str) -> None:
    bob = agent(BOB, "b")
    feed(bob, out_of_dialog(method), 0.0, ALICE)
    refusal = response(only_sent(bob, ALICE))
    assert (refusal.status, refusal.reason) == (status, reason)
    assert refusal.headers.get_all("Allow") == ALLOW.split(", ")
    assert bob.events() == []


@pytest.mark.parametrize("method", ["BYE", "INFO", "NOTIFY", "REFER", "INVITE", "UPDATE"])
def test_requests_in_an_unknown_dialog_are_481(method: str) -> None:
    bob = agent(BOB, "b")
    feed(bob, out_of_dialog(method, to_tag="nosuch", headers=[("Refer-To", "<sip:c@x>")]), 0.0, ALICE)
    refusal = response(only_sent(bob, ALICE))
    assert (refusal.status, refusal.reason) == (481, "Call/Transaction Does Not Exist")
    assert bob.events() == []


def test_requests_with_the_right_call_id_but_wrong_tags_are_481() -> None:
    alice, _bob, caller, callee = connected()
    bye = peer_request(callee, "BYE", "w1")
    bye.headers.set("From", "<sip:bob@127.0.0.1>;tag=someone-else")
    feed(alice, bye, 1.0)
    assert response(only_sent(alice, BOB)).status == 481
    assert alice.events() == [] and caller.state is SessionState.CONFIRMED


def test_an_out_of_order_cseq_is_500() -> None:
    alice, _bob, _caller, callee = connected()
    for branch in ("i1", "i2"):
        feed(alice, peer_request(callee, "INFO", branch, body=b"x", content_type="text/plain"), 1.0)
        assert response(only_sent(alice, BOB)).status == 200
    alice.events()
    stale = peer_request(callee, "INFO", "i3", body=b"y", content_type="text/plain")
    stale.headers.set("CSeq", "1 INFO")
    feed(alice, stale, 1.1)
    assert response(only_sent(alice, BOB)).status == 500 and alice.events() == []


def test_update_without_a_body_is_200_with_one_488() -> None:
    alice, _bob, _caller, callee = connected()
    feed(alice, peer_request(callee, "UPDATE", "u1"), 1.0)
    assert response(only_sent(alice, BOB)).status == 200
    feed(alice, peer_request(callee, "UPDATE", "u2", body=HOLD, content_type="application/sdp"), 1.0)
    assert response(only_sent(alice, BOB)).status == 488
    assert alice.events() == []


def test_a_second_invite_with_the_same_call_id_is_482() -> None:
    _alice, bob, _session, invite = inbound()
    again = Request("INVITE", invite.uri, invite.headers.copy(), invite.body)
    again.headers.set("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother")
    bob.receive(wire(again), ALICE, 0.1)
    refusal = response(only_sent(bob, ALICE))
    assert refusal.status == 482 and bob.events() == []


def test_info_we_send_that_the_peer_does_not_know_ends_the_call() -> None:
    alice, _bob, caller, _callee = connected()
    alice.send_info(caller, "application/dtmf-relay", b"Signal=1\r\n", 1.0)
    info = request(only_sent(alice, BOB))
    feed(alice, reply(info, 481, "Call/Transaction Does Not Exist", tag=None), 1.1)
    assert alice.events() == [Ended(caller, "gone", True)]


# -- 9. transaction timeout -----------------------------------------------------------------------------------
def test_an_invite_to_a_silent_peer_fails_408_at_timer_b() -> None:
    alice, session, invite = outbound(now=10.0)
    out = run(alice, 10.0 + 64 * T1)
    assert [round(t - 10.0, 6) for t, _ in out] == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(m == invite for _, m in out)
    assert alice.events() == [Failed(session, 408, "Request Timeout")]
    assert alice.sessions == {} and alice.get_timer() is None


def test_an_invite_with_a_provisional_only_does_not_time_out() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 180, "Ringing"), 0.1)
    alice.events()
    assert run(alice, 1000.0) == [] and alice.events() == []
    assert session.state is SessionState.EARLY


@pytest.mark.parametrize(("status", "reason"), [(486, "Busy Here"), (603, "Decline"), (404, "Not Found"),
                                                (302, "Moved Temporarily")])
def test_a_final_refusal_fails_the_call(status: int, reason: str) -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, status, reason), 0.1)
    assert kinds(sent(alice)) == ["ACK"]
    assert alice.events() == [Failed(session, status, reason)] and alice.sessions == {}


# -- 10. malformed peer input ------------------------------------------------------------------------------
@pytest.mark.parametrize(("contact", "detail"), [
    (None, "the 200 response has no Contact"),
    ("*", "the 200 response has no Contact"),
])
def test_a_2xx_that_cannot_make_a_dialog_fails_the_call_502_and_is_acked_and_ended(contact: str | None,
                                                                                    detail: str) -> None:
    alice, session, invite = outbound()
    ok = reply(invite, 200, "OK", body=ANSWER, contact=contact)
    feed(alice, ok, 0.1)
    assert alice.events() == [Failed(session, 502, f"Bad Gateway: {detail}")]
    ack, bye = (request(m) for m in sent(alice))
    assert (ack.method, str(ack.cseq), ack.uri, ack.to.tag) == ("ACK", "1 ACK", TARGET, "b-tag")
    assert (bye.method, str(bye.cseq), bye.uri) == ("BYE", "2 BYE", TARGET)
    feed(alice, ok, 0.2)
    assert sent(alice) == [ack] and alice.events() == []
    assert alice.sessions == {}


def test_a_2xx_without_a_to_tag_fails_the_call_502() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 200, "OK", body=ANSWER, tag=None), 0.1)
    assert alice.events() == [Failed(session, 502, "Bad Gateway: the 200 response has no To tag: it creates "
                                                   "no dialog")]
    assert kinds(sent(alice)) == ["ACK", "BYE"]


def test_a_2xx_with_a_bad_record_route_fails_the_call_502() -> None:
    alice, _session, invite = outbound()
    feed(alice, reply(invite, 200, "OK", body=ANSWER, headers=[("Record-Route", "<garbage")]), 0.1)
    [event] = alice.events()
    assert isinstance(event, Failed) and event.status == 502 and event.reason.startswith("Bad Gateway: ")
    assert kinds(sent(alice)) == ["ACK", "BYE"]


def test_a_second_2xx_from_a_fork_is_acked_and_ended() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 200, "OK", body=ANSWER), 0.1)
    sent(alice)
    alice.events()
    feed(alice, reply(invite, 200, "OK", body=ANSWER, tag="fork2", contact="<sip:bob2@127.0.0.1:5064>"), 0.2)
    ack, bye = (request(m) for m in sent(alice))
    assert (ack.method, ack.to.tag, ack.uri) == ("ACK", "fork2", "sip:bob2@127.0.0.1:5064")
    assert (bye.method, bye.to.tag) == ("BYE", "fork2")
    assert alice.events() == [] and session.dialog is not None and session.dialog.remote_tag == "b-tag"


def test_a_provisional_with_a_bad_contact_is_still_progress() -> None:
    alice, session, invite = outbound()
    feed(alice, reply(invite, 180, "Ringing", contact="<junk"), 0.1)
    assert alice.events() == [Progress(session, 180, "Ringing", b"")]


def bad_request(method: str, drop: str = "", **replace: str) -> Message:
    """A request parse_message accepts but a UAS must refuse: header ``drop`` left out, others replaced."""
    fields = {"Via": "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKbad1", "Max-Forwards": "70",
              "From": "<sip:alice@127.0.0.1>;tag=bad", "To": "<sip:bob@127.0.0.1>", "Call-ID": "bad@127.0.0.1",
              "CSeq": f"1 {method}", "Contact": "<sip:alice@127.0.0.1:5060>", "Content-Type": "application/sdp"}
    fields.update({k.replace("_", "-"): v for k, v in replace.items()})
    fields.pop(drop, None)
    head = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    return parse_message(f"{method} {TARGET} SIP/2.0\r\n{head}\r\n".encode() + OFFER)


@pytest.mark.parametrize(("message", "status"), [
    (bad_request("INVITE", drop="CSeq"), 400),
    (bad_request("INVITE", CSeq="x INVITE"), 400),
    (bad_request("INVITE", CSeq="1 BYE"), 400),
    (bad_request("INVITE", drop="Call-ID"), 400),
    (bad_request("INVITE", drop="From"), 400),
    (bad_request("INVITE", From="<<<"), 400),
    (bad_request("INVITE", drop="To"), 400),
    (bad_request("INVITE", To="not a uri"), 400),
    (bad_request("INVITE", Contact="<junk"), 400),
    (bad_request("INVITE", drop="Contact"), 400),
    (bad_request("INVITE", Contact="*"), 400),
    (bad_request("INVITE", Via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK"), 400),
    (bad_request("INVITE", Via="garbage"), 400),
    (bad_request("INVITE", Require="foo"), 420),
    (bad_request("INVITE", Max_Forwards="999"), 400),
    (bad_request("BYE", CSeq="x BYE"), 400),
    (bad_request("BYE", To="<sip:bob@127.0.0.1>;tag=1", Record_Route="<<bad"), 400),
    (bad_request("CANCEL", drop="From"), 400),
    (bad_request("OPTIONS", drop="Call-ID"), 400),
    (bad_request("FOO", CSeq="1 BAR"), 501),
    (bad_request("INVITE", drop="Via"), None),
    (bad_request("ACK", drop="CSeq"), None),
    (bad_request("ACK", CSeq="1 INVITE"), None),
    (bad_request("ACK", Via="garbage"), None),
])
def test_a_bad_request_is_answered_with_its_error_and_never_raises(message: Message, status: int | None) -> None:
    bob = agent(BOB, "b")
    bob.receive(message, ALICE, 0.0)
    bob.receive(message, ALICE, 0.1)                    # and again (a retransmission)
    out = [response(m) for m in sent(bob, ALICE)]
    if status is None:
        assert out == []
    else:
        assert [r.status for r in out] == [status, status]
    assert bob.events() == [] and bob.sessions == {}
    assert bob.layer.server_transactions == [] or all(t.last_response is not None
                                                      for t in bob.layer.server_transactions)


def test_require_is_420_with_unsupported() -> None:
    bob = agent(BOB, "b")
    feed(bob, out_of_dialog("OPTIONS", headers=[("Require", "foo, 100rel")]), 0.0, ALICE)
    refusal = response(only_sent(bob, ALICE))
    assert (refusal.status, refusal.reason) == (420, "Bad Extension")
    assert refusal.headers.get_all("Unsupported") == ["foo", "100rel"]


def bad_response(to: Request, status: int, drop: str = "", **replace: str) -> Message:
    answer = reply(to, status, "OK" if status == 200 else "Ringing", body=ANSWER if status == 200 else b"")
    for name, value in replace.items():
        answer.headers.set(name.replace("_", "-"), value)
    if drop:
        answer.headers.remove(drop)
    return parse_message(answer.serialize())


@pytest.mark.parametrize("status", [180, 200])
@pytest.mark.parametrize(("drop", "replace"), [
    ("Via", {}), ("CSeq", {}), ("Call-ID", {}), ("From", {}), ("To", {}),
    ("", {"CSeq": "x INVITE"}), ("", {"To": "<<<"}), ("", {"From": "junk junk"}), ("", {"Via": "garbage"}),
    ("", {"Contact": "<junk"}), ("", {"Record_Route": "<<"}), ("", {"Content_Type": "text/plain"}),
    ("", {"Via": "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKother"}), ("", {"CSeq": "1 BYE"}),
    ("", {"CSeq": "7 INVITE"}), ("", {"Call-ID": "other@x"}),
])
def test_a_bad_response_never_raises(status: int, drop: str, replace: dict[str, str]) -> None:
    alice, _session, invite = outbound()
    alice.receive(bad_response(invite, status, drop, **replace), BOB, 0.1)
    for message in sent(alice):                          # whatever it sent, it is well formed
        assert isinstance(message, Request)
    for event in alice.events():
        assert isinstance(event, Progress | Answered | Failed)


def test_an_ack_for_nothing_is_ignored() -> None:
    alice, _bob, _caller, callee = connected()
    ack = peer_request(callee, "INFO", "k1")
    ack.method = "ACK"
    ack.headers.set("CSeq", "9 ACK")
    feed(alice, ack, 1.0)
    assert sent(alice) == [] and alice.events() == []


def test_an_invite_with_an_unsupported_uri_scheme_is_416() -> None:
    bob = agent(BOB, "b")
    message = out_of_dialog("OPTIONS")
    message.uri = "mailto:bob@example.com"
    feed(bob, message, 0.0, ALICE)
    assert response(only_sent(bob, ALICE)).status == 416


# -- outputs and bookkeeping ----------------------------------------------------------------------------------
def test_get_timer_is_none_when_idle_and_handle_timer_early_does_nothing() -> None:
    alice = agent(ALICE, "a")
    assert alice.get_timer() is None
    alice.handle_timer(5.0)
    assert sent(alice) == [] and alice.events() == []
    _, bob, session, _ = inbound()
    bob.answer(session, ANSWER, 0.0)
    sent(bob, ALICE)
    assert bob.get_timer() == T1
    bob.handle_timer(0.4)
    assert sent(bob, ALICE) == []


def test_a_call_leaves_nothing_behind() -> None:
    alice, bob, caller, _callee = connected()
    alice.hangup(caller, 1.0)
    transfer(alice, bob, 1.0)
    transfer(bob, alice, 1.0)
    run(alice, 100.0)
    run(bob, 100.0, ALICE)
    assert alice.sessions == {} and bob.sessions == {}
    assert len(alice.layer) == 0 and len(bob.layer) == 0
    assert alice.get_timer() is None and bob.get_timer() is None


def mutations(message: Message) -> Iterable[bytes]:
    """``message`` with each header line dropped, and with each value replaced by garbage."""
    head, _, body = message.serialize().partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        name = lines[i].split(b":", 1)[0]
        if name.lower() == b"content-length":
            continue
        yield b"\r\n".join(lines[:i] + lines[i + 1:]) + b"\r\n\r\n" + body
        for garbage in (b"<<", b"", b"sip:x;tag=", b"1"):
            yield b"\r\n".join([*lines[:i], name + b": " + garbage, *lines[i + 1:]]) + b"\r\n\r\n" + body


def deliver_raw(ua: UserAgent, data: bytes, addr: Address, now: float) -> bool:
    """Parse ``data`` as the shell would and hand it over; False when the parser refused it (the shell's)."""
    try:
        message = parse_message(data)
    except ValueError:
        return False
    ua.receive(message, addr, now)
    return True


def answered_inbound() -> tuple[UserAgent, UserAgent, Session, Request]:
    """Bob answered Alice's call, his 200 not ACKed yet."""
    alice, bob, session, invite = inbound()
    bob.answer(session, ANSWER, 0.0)
    return alice, bob, session, invite


def test_no_header_mutation_makes_receive_raise() -> None:
    """Each header of each message of a call, dropped or garbled, meeting the agent in the state the
    original would meet. Tokens are counters: every fresh agent has the same tags, branches, Call-IDs."""
    _, _, _, callee = connected()
    _, _, invite = outbound(credentials=Credentials("alice", "secret"))
    _, _, _, inbound_invite = inbound()
    alice2, bob2, _, _ = answered_inbound()
    alice2.receive(response(only_sent(bob2, ALICE)), BOB, 0.0)
    ack = only_sent(alice2, BOB)
    alice3, bob3, session3, _ = inbound()
    bob3.ring(session3, 0.0)
    alice3.receive(response(only_sent(bob3, ALICE)), BOB, 0.0)
    alice3.hangup(alice3.session("a1@127.0.0.1"), 0.0)    # type: ignore[arg-type]
    cancel = only_sent(alice3, BOB)

    def ringing() -> UserAgent:
        _, bob, session, _ = inbound()
        bob.ring(session, 0.0)
        return bob

    challenge_value = str(challenges(REALM, "nonce")[0])
    cases: list[tuple[Callable[[], UserAgent], Address, Message]] = [
        (lambda: agent(BOB, "b"), ALICE, inbound_invite),
        (lambda: answered_inbound()[1], ALICE, ack),
        (ringing, ALICE, cancel),
        (lambda: connected()[0], BOB, peer_request(callee, "BYE", "mb")),
        (lambda: connected()[0], BOB, peer_request(callee, "INFO", "mi", body=b"Signal=1",
                                                   content_type="application/dtmf-relay")),
        (lambda: connected()[0], BOB, peer_request(callee, "INVITE", "mr", body=HOLD, content_type="application/sdp",
                                                   headers=[("Contact", BOB_CONTACT)])),
    ]
    for status, reason in ((100, "Trying"), (183, "Session Progress"), (200, "OK"), (407, "Proxy Auth")):
        extra = [("Proxy-Authenticate", challenge_value)] if status == 407 else []
        cases.append((lambda: outbound(credentials=Credentials("alice", "secret"))[0], BOB,
                      reply(invite, status, reason, body=ANSWER if status in (183, 200) else b"", headers=extra)))
    delivered = 0
    for make, source, original in cases:
        for data in mutations(original):
            try:
                message = parse_message(data)
            except ValueError:
                continue                                # the shell answers what does not parse
            ua = make()
            ua.datagrams_to_send()
            ua.events()
            ua.receive(message, source, 1.0)
            ua.handle_timer(200.0)                      # nothing raises later either
            assert {addr for _, addr in ua.datagrams_to_send()} <= {source}
            delivered += 1
    assert delivered > 200
