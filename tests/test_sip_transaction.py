"""RFC 3261 §17 transactions (with RFC 6026's Accepted state) through the sans-I/O transaction layer.

Every state, every timer and its exact schedule, retransmission and absorption, matching (§17.1.3,
§17.2.3, §9.2), CANCEL, the server-transaction cap. Time is a parameter: no sockets, no sleeps.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from pbx.sip.message import Request, Response, parse_message, response_to
from pbx.sip.timers import TimerConfig
from pbx.sip.transaction import (
    CLIENT_INVITE_TABLE,
    CLIENT_INVITE_TIMERS,
    CLIENT_NON_INVITE_TABLE,
    CLIENT_NON_INVITE_TIMERS,
    SERVER_INVITE_TABLE,
    SERVER_INVITE_TIMERS,
    SERVER_NON_INVITE_TABLE,
    SERVER_NON_INVITE_TIMERS,
    AckReceived,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    Event,
    Input,
    RequestReceived,
    RequestRefused,
    ResponseReceived,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    StrayResponse,
    Timer,
    Transaction,
    TransactionError,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailed,
    build_ack,
    build_cancel,
)

ALICE = ("192.0.2.101", 5060)
BOB = ("192.0.2.201", 5060)


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def sip(text: str) -> Request | Response:
    return parse_message(text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n")


def request(method: str = "INVITE", branch: str = "z9hG4bK74bf9", transport: str = "UDP", seq: int = 1,
            host: str = "client.atlanta.example.com", extra: str = "") -> Request:
    message = sip(f"""
{method} sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/{transport} {host}:5060;branch={branch}
Max-Forwards: 70
Route: <sip:ss1.atlanta.example.com;lr>
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: 3848276298220188511@atlanta.example.com
CSeq: {seq} {method}
Contact: <sip:alice@client.atlanta.example.com>{extra}
Content-Length: 0""")
    assert isinstance(message, Request)
    return message


def respond(req: Request, status: int, reason: str, tag: str | None = "314159") -> Response:
    return response_to(req, status, reason, to_tag=None if status == 100 else tag)


def parsed(datagrams: list[tuple[bytes, tuple[str, int]]]) -> list[Request | Response]:
    return [parse_message(data) for data, _ in datagrams]


def tokens() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def make_layer(**kwargs: object) -> TransactionLayer:
    return TransactionLayer(token=tokens(), **kwargs)  # type: ignore[arg-type]


def run(layer: TransactionLayer, until: float) -> list[tuple[float, list[Event], list[bytes]]]:
    """Fire every timer up to ``until``: (time, events, datagrams) per firing."""
    log = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        events = layer.handle_timer(deadline)
        log.append((deadline, events, [data for data, _ in layer.datagrams_to_send()]))
    return log


def sends(log: list[tuple[float, list[Event], list[bytes]]]) -> list[float]:
    return [t for t, _, datagrams in log if datagrams]


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- timers --------------------------------------------------------------------------------------------------
def test_timer_defaults_and_derived_values() -> None:
    config = TimerConfig()
    assert (config.t1, config.t2, config.t4, config.d, config.trying) == (0.5, 4.0, 5.0, 32.0, 0.2)
    assert (config.b, config.f, config.h, config.j, config.l, config.m) == (32.0,) * 6
    with pytest.raises(AttributeError):
        config.t1 = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"t1": 0}, "timer t1 must be positive, not 0"),
    ({"t4": -1.0}, "timer t4 must be positive, not -1.0"),
    ({"t1": 5.0}, "timer t2 (4.0) must not be shorter than t1 (5.0)"),
])
def test_timer_config_refuses_bad_values(kwargs: dict[str, float], message: str) -> None:
    with raises(ValueError, message):
        TimerConfig(**kwargs)


# -- the tables ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("table", "timers"), [
    (CLIENT_INVITE_TABLE, CLIENT_INVITE_TIMERS),
    (CLIENT_NON_INVITE_TABLE, CLIENT_NON_INVITE_TIMERS),
    (SERVER_INVITE_TABLE, SERVER_INVITE_TIMERS),
    (SERVER_NON_INVITE_TABLE, SERVER_NON_INVITE_TIMERS),
])
def test_every_running_timer_has_a_row_and_terminated_has_none(table: object, timers: object) -> None:
    assert isinstance(table, dict) and isinstance(timers, dict)
    for state, running in timers.items():
        for timer in running:
            assert (state, timer) in table, (state, timer)
    assert not timers[State.TERMINATED]
    assert all(state in timers for state, _ in table)
    assert not any(state is State.TERMINATED for state, _ in table)
    # a timer row only for timers that run in that state
    assert all(event in timers[state] for state, event in table if isinstance(event, Timer))


# -- INVITE client transaction -----------------------------------------------------------------------------------
def test_client_invite_timer_a_doubles_from_t1_and_timer_b_times_out_at_64_t1() -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    assert isinstance(transaction, ClientInviteTransaction) and transaction.state is State.CALLING
    assert layer.datagrams_to_send() == [(invite.serialize(), BOB)]
    assert layer.get_timer() == 0.5
    log = run(layer, 100.0)
    assert sends(log) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(data == [invite.serialize()] for _, _, data in log if data)
    t, events, _ = log[-1]
    assert t == 32.0
    assert events == [TransactionTimeout(transaction, Timer.B), TransactionTerminated(transaction)]
    assert transaction.state is State.TERMINATED and len(layer) == 0 and layer.get_timer() is None


def test_client_invite_over_tcp_has_no_timer_a() -> None:
    layer = make_layer()
    transaction = layer.send_request(request(transport="TCP"), BOB, 10.0, reliable=True)
    layer.datagrams_to_send()
    assert layer.get_timer() == 42.0
    log = run(layer, 100.0)
    assert sends(log) == []
    assert log == [(42.0, [TransactionTimeout(transaction, Timer.B), TransactionTerminated(transaction)], [])]


def test_client_invite_provisional_moves_to_proceeding_and_stops_timers_a_and_b() -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    ringing = respond(invite, 180, "Ringing")
    assert layer.receive(ringing, BOB, 0.2) == [ResponseReceived(ringing, transaction)]
    assert transaction.state is State.PROCEEDING and transaction.response is ringing
    assert layer.get_timer() is None
    again = respond(invite, 183, "Session Progress")
    assert layer.receive(again, BOB, 5.0) == [ResponseReceived(again, transaction)]
    assert run(layer, 1000.0) == []             # no timeout in Proceeding: the TU CANCELs
    assert transaction.state is State.PROCEEDING


@pytest.mark.parametrize("provisional", [False, True])
def test_client_invite_failure_is_acked_by_the_transaction_and_timer_d_is_32s(provisional: bool) -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    layer.datagrams_to_send()
    if provisional:
        layer.receive(respond(invite, 180, "Ringing"), BOB, 0.1)
    busy = respond(invite, 486, "Busy Here")
    assert layer.receive(busy, BOB, 1.0) == [ResponseReceived(busy, transaction)]
    assert transaction.state is State.COMPLETED
    [ack] = parsed(layer.datagrams_to_send())
    assert isinstance(ack, Request)
    # §17.1.1.3: Request-URI, Call-ID, From, CSeq number, top Via and Route of the INVITE; To of the response
    assert (ack.method, ack.uri, ack.cseq.seq, ack.cseq.method) == ("ACK", invite.uri, 1, "ACK")
    assert ack.call_id == invite.call_id
    assert ack.headers.get("From") == invite.headers.get("From")
    assert ack.to.tag == "314159"
    assert ack.headers.get_all("Via") == [str(invite.top_via)] and ack.branch == invite.branch
    assert ack.headers.get_all("Route") == ["<sip:ss1.atlanta.example.com;lr>"]
    assert transaction.ack is not None and transaction.ack.serialize() == ack.serialize()
    assert layer.get_timer() == 33.0
    # a retransmitted 486 is ACKed again and not passed up
    assert layer.receive(busy, BOB, 2.0) == []
    assert layer.datagrams_to_send() == [(transaction.ack.serialize(), BOB)]
    assert layer.receive(respond(invite, 180, "Ringing"), BOB, 2.5) == []
    assert run(layer, 32.9) == []
    assert run(layer, 33.0) == [(33.0, [TransactionTerminated(transaction)], [])]


def test_client_invite_failure_resends_the_same_ack() -> None:
    layer = make_layer()
    invite = request()
    layer.send_request(invite, BOB, 0.0)
    layer.datagrams_to_send()
    busy = respond(invite, 486, "Busy Here")
    layer.receive(busy, BOB, 1.0)
    first = layer.datagrams_to_send()
    layer.receive(busy, BOB, 1.5)
    assert layer.datagrams_to_send() == first


def test_client_invite_failure_over_tcp_terminates_at_once() -> None:
    layer = make_layer()
    invite = request(transport="TCP")
    transaction = layer.send_request(invite, BOB, 0.0, reliable=True)
    layer.receive(respond(invite, 603, "Decline"), BOB, 1.0)
    assert layer.get_timer() == 1.0                   # Timer D is 0 on a reliable transport
    assert layer.handle_timer(1.0) == [TransactionTerminated(transaction)]


def test_client_invite_2xx_goes_to_accepted_passes_retransmissions_and_ends_with_timer_m() -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    layer.datagrams_to_send()
    ok = respond(invite, 200, "OK")
    assert layer.receive(ok, BOB, 1.0) == [ResponseReceived(ok, transaction)]
    assert transaction.state is State.ACCEPTED
    assert layer.datagrams_to_send() == []              # the 2xx's ACK is the TU's (§13.2.2.4)
    assert transaction.ack is None
    assert layer.get_timer() == 33.0                    # Timer M = 64*T1
    assert layer.receive(ok, BOB, 2.0) == [ResponseReceived(ok, transaction)]
    assert layer.receive(respond(invite, 180, "Ringing"), BOB, 2.0) == []
    assert layer.receive(respond(invite, 500, "Server Error"), BOB, 2.0) == []
    assert layer.datagrams_to_send() == []
    assert run(layer, 40.0) == [(33.0, [TransactionTerminated(transaction)], [])]
    assert kinds(layer.receive(ok, BOB, 41.0)) == ["StrayResponse"]


def test_client_invite_2xx_from_proceeding_and_forked_2xx() -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    layer.receive(respond(invite, 180, "Ringing"), BOB, 0.1)
    ok1 = respond(invite, 200, "OK", tag="fork1")
    ok2 = respond(invite, 200, "OK", tag="fork2")
    assert layer.receive(ok1, BOB, 1.0) == [ResponseReceived(ok1, transaction)]
    assert layer.receive(ok2, BOB, 1.1) == [ResponseReceived(ok2, transaction)]
    assert transaction.state is State.ACCEPTED


# -- non-INVITE client transaction -----------------------------------------------------------------------------
def test_client_non_invite_timer_e_doubles_up_to_t2_and_timer_f_times_out() -> None:
    layer = make_layer()
    bye = request("BYE")
    transaction = layer.send_request(bye, BOB, 0.0)
    assert isinstance(transaction, ClientNonInviteTransaction) and transaction.state is State.TRYING
    layer.datagrams_to_send()
    log = run(layer, 100.0)
    assert sends(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, [TransactionTimeout(transaction, Timer.F), TransactionTerminated(transaction)], [])


def test_client_non_invite_in_proceeding_retransmits_every_t2_and_keeps_timer_f() -> None:
    layer = make_layer()
    options = request("OPTIONS")
    transaction = layer.send_request(options, BOB, 0.0)
    layer.datagrams_to_send()
    assert sends(run(layer, 0.5)) == [0.5]
    trying = respond(options, 100, "Trying")
    assert layer.receive(trying, BOB, 0.7) == [ResponseReceived(trying, transaction)]
    assert transaction.state is State.PROCEEDING
    assert layer.get_timer() == 1.5                     # E keeps its deadline
    log = run(layer, 100.0)
    assert sends(log) == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert log[-1][0] == 32.0 and kinds(log[-1][1]) == ["TransactionTimeout", "TransactionTerminated"]


@pytest.mark.parametrize("status", [200, 404])
def test_client_non_invite_final_response_completes_and_timer_k_is_t4(status: int) -> None:
    layer = make_layer()
    options = request("OPTIONS")
    transaction = layer.send_request(options, BOB, 0.0)
    final = respond(options, status, "Whatever")
    assert layer.receive(final, BOB, 0.25) == [ResponseReceived(final, transaction)]
    assert transaction.state is State.COMPLETED
    assert layer.get_timer() == 5.25
    assert layer.receive(final, BOB, 1.0) == []         # absorbed
    assert layer.receive(respond(options, 180, "Ringing"), BOB, 1.0) == []
    layer.datagrams_to_send()
    assert run(layer, 10.0) == [(5.25, [TransactionTerminated(transaction)], [])]


def test_client_non_invite_over_tcp_has_no_timer_e_and_timer_k_is_zero() -> None:
    layer = make_layer()
    options = request("OPTIONS", transport="TCP")
    transaction = layer.send_request(options, BOB, 0.0, reliable=True)
    layer.datagrams_to_send()
    assert layer.get_timer() == 32.0
    layer.receive(respond(options, 200, "OK"), BOB, 3.0)
    assert layer.get_timer() == 3.0
    assert layer.handle_timer(3.0) == [TransactionTerminated(transaction)]


def test_custom_t1_and_t2_scale_the_schedules() -> None:
    layer = make_layer(timers=TimerConfig(t1=0.25, t2=1.0, t4=2.0))
    layer.send_request(request("MESSAGE"), BOB, 0.0)
    layer.datagrams_to_send()
    log = run(layer, 100.0)
    assert sends(log) == [0.25, 0.75, 1.75, 2.75, 3.75, 4.75, 5.75, 6.75, 7.75, 8.75, 9.75, 10.75, 11.75,
                          12.75, 13.75, 14.75, 15.75]
    assert log[-1][0] == 16.0


# -- INVITE server transaction -----------------------------------------------------------------------------------
def test_server_invite_is_given_to_the_tu_and_100_trying_follows_after_200_ms() -> None:
    layer = make_layer()
    invite = request()
    [event] = layer.receive(invite, ALICE, 0.0)
    assert isinstance(event, RequestReceived)
    transaction = event.transaction
    assert isinstance(transaction, ServerInviteTransaction) and transaction.state is State.PROCEEDING
    assert (event.request, event.addr, event.cancels) == (invite, ALICE, None)
    assert layer.datagrams_to_send() == []
    assert layer.get_timer() == 0.2
    assert layer.handle_timer(0.2) == []
    [(data, addr)] = layer.datagrams_to_send()
    trying = parse_message(data)
    assert addr == ALICE
    assert isinstance(trying, Response) and (trying.status, trying.reason) == (100, "Trying")
    assert trying.to.tag is None and trying.call_id == invite.call_id
    assert layer.get_timer() is None
    # a retransmitted INVITE gets the 100 again
    assert layer.receive(request(), ALICE, 0.5) == []
    assert layer.datagrams_to_send() == [(data, ALICE)]


def test_server_invite_no_100_when_the_tu_answers_within_200_ms() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    ringing = respond(event.transaction.request, 180, "Ringing")
    assert layer.send_response(ringing, 0.1) is event.transaction
    assert layer.datagrams_to_send() == [(ringing.serialize(), ALICE)]
    assert layer.get_timer() is None


def test_server_invite_retransmission_before_any_response_is_absorbed() -> None:
    layer = make_layer()
    layer.receive(request(), ALICE, 0.0)
    assert layer.receive(request(), ALICE, 0.1) == []
    assert layer.datagrams_to_send() == []


def test_server_invite_retransmission_in_proceeding_resends_the_last_provisional() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    invite = event.transaction.request
    layer.send_response(respond(invite, 180, "Ringing"), 0.05)
    progress = respond(invite, 183, "Session Progress")
    layer.send_response(progress, 0.1)
    layer.datagrams_to_send()
    assert layer.receive(request(), ALICE, 0.5) == []
    assert layer.datagrams_to_send() == [(progress.serialize(), ALICE)]


def test_server_invite_failure_timer_g_caps_at_t2_and_timer_h_times_out() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    transaction = event.transaction
    busy = respond(transaction.request, 486, "Busy Here")
    layer.send_response(busy, 0.0)
    assert transaction.state is State.COMPLETED
    assert layer.datagrams_to_send() == [(busy.serialize(), ALICE)]
    log = run(layer, 100.0)
    assert sends(log) == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(data == [busy.serialize()] for _, _, data in log if data)
    assert log[-1] == (32.0, [TransactionTimeout(transaction, Timer.H), TransactionTerminated(transaction)], [])


def test_server_invite_retransmission_in_completed_resends_the_final_response() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    busy = respond(event.transaction.request, 486, "Busy Here")
    layer.send_response(busy, 0.0)
    layer.datagrams_to_send()
    assert layer.receive(request(), ALICE, 0.3) == []
    assert layer.datagrams_to_send() == [(busy.serialize(), ALICE)]


def test_server_invite_ack_confirms_and_timer_i_is_t4() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    transaction = event.transaction
    busy = respond(transaction.request, 486, "Busy Here")
    layer.send_response(busy, 0.0)
    layer.datagrams_to_send()
    ack = build_ack(request(), busy)
    assert layer.receive(ack, ALICE, 0.7) == []         # the ACK of a non-2xx is the transaction's
    assert transaction.state is State.CONFIRMED
    assert layer.get_timer() == 5.7                     # G and H stopped, I = T4
    assert layer.receive(ack, ALICE, 1.0) == []         # ACK retransmissions absorbed
    assert layer.receive(request(), ALICE, 1.0) == []   # so are INVITE retransmissions
    assert layer.datagrams_to_send() == []
    assert run(layer, 100.0) == [(5.7, [TransactionTerminated(transaction)], [])]


def test_server_invite_over_tcp_has_no_timer_g_and_timer_i_is_zero() -> None:
    layer = make_layer()
    [event] = layer.receive(request(transport="TCP"), ALICE, 0.0)
    transaction = event.transaction
    assert transaction.reliable
    busy = respond(transaction.request, 480, "Temporarily Unavailable")
    layer.send_response(busy, 1.0)
    assert layer.get_timer() == 33.0                     # only H
    layer.receive(build_ack(request(transport="TCP"), busy), ALICE, 1.2)
    assert layer.get_timer() == 1.2
    assert layer.handle_timer(1.2) == [TransactionTerminated(transaction)]


def test_receive_can_override_the_via_transport() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0, reliable=True)
    assert event.transaction.reliable


def test_server_invite_2xx_goes_to_accepted_for_timer_l() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    transaction = event.transaction
    ok = respond(transaction.request, 200, "OK")
    layer.send_response(ok, 0.1)
    assert transaction.state is State.ACCEPTED
    assert layer.datagrams_to_send() == [(ok.serialize(), ALICE)]
    assert layer.get_timer() == 32.1                    # Timer L, and no transaction retransmission of the 2xx
    # INVITE retransmissions are absorbed, not passed up, not answered (the TU retransmits its 2xx)
    assert layer.receive(request(), ALICE, 0.6) == []
    assert layer.datagrams_to_send() == []
    layer.send_response(ok, 0.6)
    assert layer.datagrams_to_send() == [(ok.serialize(), ALICE)]
    # the ACK of a 2xx has a branch of its own: no transaction, the dialog's
    ack = request("ACK", branch="z9hG4bK74b76")
    assert layer.receive(ack, ALICE, 0.7) == [AckReceived(ack, ALICE, None)]
    # an ACK that reuses the INVITE's branch matches the Accepted transaction, and still goes up
    same = request("ACK")
    assert layer.receive(same, ALICE, 0.8) == [AckReceived(same, ALICE, transaction)]
    assert transaction.state is State.ACCEPTED
    assert run(layer, 100.0) == [(32.1, [TransactionTerminated(transaction)], [])]
    stray = request("ACK")
    assert layer.receive(stray, ALICE, 40.0) == [AckReceived(stray, ALICE, None)]


def test_server_invite_refuses_responses_the_rfc_forbids() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    invite = event.transaction.request
    layer.send_response(respond(invite, 486, "Busy Here"), 0.0)
    with raises(TransactionError, "the INVITE server transaction in Completed cannot send a 180 response"):
        layer.send_response(respond(invite, 180, "Ringing"), 0.1)
    with raises(TransactionError, "the INVITE server transaction in Completed cannot send a 200 response"):
        layer.send_response(respond(invite, 200, "OK"), 0.1)


def test_server_invite_accepted_refuses_a_failure() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    invite = event.transaction.request
    layer.send_response(respond(invite, 200, "OK"), 0.0)
    with raises(TransactionError, "the INVITE server transaction in Accepted cannot send a 487 response"):
        layer.send_response(respond(invite, 487, "Request Terminated"), 0.1)


def test_ack_in_proceeding_is_absorbed() -> None:
    layer = make_layer()
    [event] = layer.receive(request(), ALICE, 0.0)
    assert layer.receive(request("ACK"), ALICE, 0.1) == []
    assert event.transaction.state is State.PROCEEDING


def test_response_without_a_transaction_is_refused() -> None:
    layer = make_layer()
    with raises(TransactionError, "no server transaction for 200 OK to INVITE (branch 'z9hG4bK74bf9')"):
        layer.send_response(respond(request(), 200, "OK"), 0.0)


# -- non-INVITE server transaction ---------------------------------------------------------------------------
def test_server_non_invite_all_states_and_timer_j() -> None:
    layer = make_layer()
    bye = request("BYE", seq=2)
    [event] = layer.receive(bye, ALICE, 0.0)
    transaction = event.transaction
    assert isinstance(transaction, ServerNonInviteTransaction) and transaction.state is State.TRYING
    assert layer.get_timer() is None                     # no 100 Trying for a non-INVITE
    assert layer.receive(request("BYE", seq=2), ALICE, 0.5) == []      # Trying: absorbed, nothing to send
    assert layer.datagrams_to_send() == []
    trying = respond(transaction.request, 100, "Trying")
    layer.send_response(trying, 0.6)
    assert transaction.state is State.PROCEEDING
    layer.datagrams_to_send()
    assert layer.receive(request("BYE", seq=2), ALICE, 1.0) == []
    assert layer.datagrams_to_send() == [(trying.serialize(), ALICE)]
    ok = respond(transaction.request, 200, "OK")
    layer.send_response(ok, 1.5)
    assert transaction.state is State.COMPLETED
    layer.datagrams_to_send()
    assert layer.receive(request("BYE", seq=2), ALICE, 2.0) == []
    assert layer.datagrams_to_send() == [(ok.serialize(), ALICE)]
    with raises(TransactionError, "the BYE server transaction in Completed cannot send a 200 response"):
        layer.send_response(ok, 2.0)
    assert layer.get_timer() == 33.5                     # Timer J = 64*T1
    assert run(layer, 100.0) == [(33.5, [TransactionTerminated(transaction)], [])]


def test_server_non_invite_final_from_trying_over_tcp_ends_at_once() -> None:
    layer = make_layer()
    [event] = layer.receive(request("OPTIONS", transport="TCP"), ALICE, 0.0)
    layer.send_response(respond(event.transaction.request, 200, "OK"), 0.0)
    assert event.transaction.state is State.COMPLETED
    assert layer.get_timer() == 0.0                      # Timer J is 0 on a reliable transport
    assert layer.handle_timer(0.0) == [TransactionTerminated(event.transaction)]


# -- CANCEL -------------------------------------------------------------------------------------------------------
def test_server_cancel_is_its_own_transaction_and_names_the_invite() -> None:
    layer = make_layer()
    [invite_event] = layer.receive(request(), ALICE, 0.0)
    invite_tx = invite_event.transaction
    layer.send_response(respond(invite_tx.request, 180, "Ringing"), 0.1)
    cancel = build_cancel(request())
    [event] = layer.receive(cancel, ALICE, 1.0)
    assert isinstance(event, RequestReceived) and event.cancels is invite_tx
    cancel_tx = event.transaction
    assert isinstance(cancel_tx, ServerNonInviteTransaction) and cancel_tx is not invite_tx
    layer.datagrams_to_send()
    # the TU answers both: 200 to the CANCEL through its transaction, 487 to the INVITE (§9.2)
    ok = respond(cancel_tx.request, 200, "OK")
    assert layer.send_response(ok, 1.0) is cancel_tx
    terminated = respond(invite_tx.request, 487, "Request Terminated")
    assert layer.send_response(terminated, 1.0) is invite_tx
    assert layer.datagrams_to_send() == [(ok.serialize(), ALICE), (terminated.serialize(), ALICE)]
    assert (cancel_tx.state, invite_tx.state) == (State.COMPLETED, State.COMPLETED)
    # a retransmitted CANCEL gets its 200 again, not the 487
    assert layer.receive(build_cancel(request()), ALICE, 1.2) == []
    assert layer.datagrams_to_send() == [(ok.serialize(), ALICE)]
    assert layer.receive(build_ack(request(), terminated), ALICE, 1.3) == []
    assert invite_tx.state is State.CONFIRMED


def test_server_cancel_of_an_unknown_invite() -> None:
    layer = make_layer()
    [event] = layer.receive(build_cancel(request()), ALICE, 0.0)
    assert isinstance(event, RequestReceived) and event.cancels is None


def test_server_cancel_with_another_sent_by_cancels_nothing() -> None:
    layer = make_layer()
    layer.receive(request(), ALICE, 0.0)
    [event] = layer.receive(build_cancel(request(host="elsewhere.example.com")), ALICE, 0.0)
    assert isinstance(event, RequestReceived) and event.cancels is None


def test_build_cancel_copies_the_invite_per_section_9_1() -> None:
    invite = request()
    cancel = build_cancel(invite)
    assert (cancel.method, cancel.uri, cancel.cseq.seq, cancel.cseq.method) == ("CANCEL", invite.uri, 1, "CANCEL")
    for name in ("From", "To", "Call-ID", "Route"):
        assert cancel.headers.get_all(name) == invite.headers.get_all(name)
    assert cancel.headers.get_all("Via") == [str(invite.top_via)]
    with raises(TransactionError, "only an INVITE is cancelled, not BYE"):
        build_cancel(request("BYE"))


def test_client_cancel_waits_for_a_provisional_and_matches_its_own_responses() -> None:
    layer = make_layer()
    invite = request()
    invite_tx = layer.send_request(invite, BOB, 0.0)
    with raises(TransactionError, "no provisional response yet: the CANCEL must wait for one (§9.1)"):
        layer.send_cancel(invite_tx, 0.1)
    layer.receive(respond(invite, 180, "Ringing"), BOB, 0.2)
    layer.datagrams_to_send()
    cancel_tx = layer.send_cancel(invite_tx, 1.0)
    assert isinstance(cancel_tx, ClientNonInviteTransaction)
    [cancel] = parsed(layer.datagrams_to_send())
    assert isinstance(cancel, Request) and cancel.method == "CANCEL" and cancel.branch == invite.branch
    ok = respond(cancel_tx.request, 200, "OK")
    assert layer.receive(ok, BOB, 1.1) == [ResponseReceived(ok, cancel_tx)]
    assert invite_tx.state is State.PROCEEDING
    terminated = respond(invite, 487, "Request Terminated")
    assert layer.receive(terminated, BOB, 1.2) == [ResponseReceived(terminated, invite_tx)]
    assert invite_tx.state is State.COMPLETED
    with raises(TransactionError, "the INVITE has its final response (Completed): nothing to cancel"):
        layer.send_cancel(invite_tx, 1.3)
    with raises(TransactionError, "only an INVITE is cancelled, not CANCEL"):
        layer.send_cancel(cancel_tx, 1.3)


# -- matching ------------------------------------------------------------------------------------------------------
def test_responses_match_by_branch_and_cseq_method() -> None:
    layer = make_layer()
    invite = request()
    transaction = layer.send_request(invite, BOB, 0.0)
    other_branch = respond(request(branch="z9hG4bKother"), 180, "Ringing")
    assert layer.receive(other_branch, BOB, 0.1) == [StrayResponse(other_branch, BOB)]
    other_method = respond(request("CANCEL"), 200, "OK")
    assert layer.receive(other_method, BOB, 0.1) == [StrayResponse(other_method, BOB)]
    assert transaction.state is State.CALLING


def test_requests_match_by_branch_sent_by_and_method() -> None:
    layer = make_layer()
    [first] = layer.receive(request(), ALICE, 0.0)
    [other_host] = layer.receive(request(host="client2.atlanta.example.com"), ALICE, 0.0)
    [other_method] = layer.receive(request("OPTIONS"), ALICE, 0.0)
    assert len({id(e.transaction) for e in (first, other_host, other_method)}) == 3
    assert layer.find_server(request()) is first.transaction
    assert layer.find_server(request("ACK")) is first.transaction


def test_rfc_2543_requests_are_matched_by_the_fallback_key() -> None:
    layer = make_layer()
    old = request(branch="1")
    [event] = layer.receive(old, ALICE, 0.0)
    transaction = event.transaction
    busy = respond(transaction.request, 486, "Busy Here")
    assert layer.send_response(busy, 0.0) is transaction
    layer.datagrams_to_send()
    assert layer.receive(request(branch="1"), ALICE, 0.5) == []
    assert layer.datagrams_to_send() == [(busy.serialize(), ALICE)]
    assert layer.receive(build_ack(request(branch="1"), busy), ALICE, 0.6) == []
    assert transaction.state is State.CONFIRMED
    # a new CSeq is a new transaction
    assert kinds(layer.receive(request(branch="1", seq=2), ALICE, 0.7)) == ["RequestReceived"]


def test_received_and_rport_are_stamped_on_the_top_via() -> None:
    layer = make_layer()
    invite = sip("""
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bKnat;rport, SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy
Via: SIP/2.0/UDP proxy2.example.com;branch=z9hG4bKproxy2
Max-Forwards: 70
From: <sip:alice@atlanta.example.com>;tag=1
To: <sip:bob@biloxi.example.com>
Call-ID: nat@atlanta
CSeq: 1 INVITE
Content-Length: 0""")
    assert isinstance(invite, Request)
    [event] = layer.receive(invite, ("203.0.113.7", 40000), 0.0)
    via = event.request.top_via
    assert (via.received, via.rport) == ("203.0.113.7", 40000)
    assert [v.host for v in event.request.vias] == ["10.0.0.5", "proxy.example.com", "proxy2.example.com"]
    ok = respond(event.request, 200, "OK")
    assert ok.top_via.received == "203.0.113.7"
    layer.send_response(ok, 0.1)
    [(_, addr)] = layer.datagrams_to_send()
    assert addr == ("203.0.113.7", 40000)


def test_no_received_when_sent_by_is_the_source_address() -> None:
    layer = make_layer()
    [event] = layer.receive(request(host="192.0.2.101"), ALICE, 0.0)
    assert event.request.top_via.received is None


# -- the layer -----------------------------------------------------------------------------------------------------
def test_new_branch_uses_the_injected_token() -> None:
    layer = make_layer()
    assert (layer.new_branch(), layer.new_branch()) == ("z9hG4bKt1", "z9hG4bKt2")
    assert TransactionLayer().new_branch().startswith("z9hG4bK")
    assert TransactionLayer().new_branch() != TransactionLayer().new_branch()


def test_send_request_refuses_ack_missing_branches_and_duplicates() -> None:
    layer = make_layer()
    with raises(TransactionError, "an ACK is not sent through a transaction: send it directly (§17.1.1.3)"):
        layer.send_request(request("ACK"), BOB, 0.0)
    with raises(TransactionError, "the top Via of the INVITE needs a branch starting with 'z9hG4bK', not '1'"):
        layer.send_request(request(branch="1"), BOB, 0.0)
    layer.send_request(request(), BOB, 0.0)
    with raises(TransactionError, "a client transaction for INVITE with branch 'z9hG4bK74bf9' is live"):
        layer.send_request(request(), BOB, 0.0)
    layer.send_request(build_cancel(request()), BOB, 0.0)     # same branch, other method: fine


def test_server_transactions_are_capped_with_503_and_retry_after() -> None:
    layer = make_layer(max_server_transactions=2, retry_after=7)
    layer.receive(request("OPTIONS", branch="z9hG4bKa"), ALICE, 0.0)
    [second] = layer.receive(request("OPTIONS", branch="z9hG4bKb"), ALICE, 0.0)
    third = request("OPTIONS", branch="z9hG4bKc")
    [refused] = layer.receive(third, ALICE, 0.0)
    assert isinstance(refused, RequestRefused) and refused.request is third
    [(data, addr)] = layer.datagrams_to_send()
    response = parse_message(data)
    assert addr == ALICE and isinstance(response, Response)
    assert (response.status, response.reason, response.headers.get("Retry-After")) == (503, "Service Unavailable",
                                                                                        "7")
    assert response.to.tag == "t1"
    assert len(layer) == 2
    # retransmissions of live transactions are still absorbed; an ACK over the cap is not answered
    assert layer.receive(request("OPTIONS", branch="z9hG4bKb"), ALICE, 0.1) == []
    ack = request("ACK", branch="z9hG4bKd")
    assert layer.receive(ack, ALICE, 0.1) == [AckReceived(ack, ALICE, None)]
    assert layer.datagrams_to_send() == []
    # once one ends, a new one fits
    layer.send_response(respond(second.transaction.request, 200, "OK"), 0.2)
    run(layer, 100.0)
    assert kinds(layer.receive(third, ALICE, 100.0)) == ["RequestReceived"]


def test_client_transactions_are_not_capped() -> None:
    layer = make_layer(max_server_transactions=1)
    for i in range(5):
        layer.send_request(request("OPTIONS", branch=f"z9hG4bK{i}"), BOB, 0.0)
    assert len(layer.client_transactions) == 5


def test_transport_error_ends_the_transaction() -> None:
    layer = make_layer()
    transaction = layer.send_request(request(transport="TCP"), BOB, 0.0, reliable=True)
    assert layer.transport_error(transaction, 1.0) == [TransportFailed(transaction), TransactionTerminated(transaction)]
    assert layer.transport_error(transaction, 1.0) == []
    assert layer.get_timer() is None
    [event] = layer.receive(request(), ALICE, 0.0)
    layer.send_response(respond(event.transaction.request, 200, "OK"), 0.0)
    assert layer.transport_error(event.transaction, 0.1) == [TransportFailed(event.transaction)]   # Accepted stays


def test_get_timer_is_the_earliest_deadline_over_all_transactions() -> None:
    layer = make_layer()
    layer.send_request(request("OPTIONS", branch="z9hG4bK1"), BOB, 0.0)           # E at 0.5
    [event] = layer.receive(request(), ALICE, 0.1)                              # 100 Trying at 0.3
    assert layer.get_timer() == pytest.approx(0.3)
    layer.send_response(respond(event.transaction.request, 180, "Ringing"), 0.2)
    assert layer.get_timer() == 0.5


def test_stale_heap_entries_are_dropped_and_the_heap_is_compacted() -> None:
    layer = make_layer()
    invites = [request(branch=f"z9hG4bKc{i}") for i in range(500)]
    for invite in invites:
        layer.send_request(invite, BOB, 0.0)
    for invite in invites:
        layer.receive(respond(invite, 180, "Ringing"), BOB, 0.1)     # stops A and B of each
    assert layer.get_timer() is None
    assert len(layer._heap) < 100


def test_a_terminated_transaction_never_sends_again() -> None:
    layer = make_layer()
    invite = request()
    layer.send_request(invite, BOB, 0.0)
    run(layer, 100.0)
    layer.datagrams_to_send()
    assert kinds(layer.receive(respond(invite, 486, "Busy Here"), BOB, 101.0)) == ["StrayResponse"]
    assert layer.datagrams_to_send() == []


# -- property: random inputs keep the invariants -------------------------------------------------------------------
TIMERLESS = {(ClientInviteTransaction, State.PROCEEDING), (ServerInviteTransaction, State.PROCEEDING),
             (ServerNonInviteTransaction, State.TRYING), (ServerNonInviteTransaction, State.PROCEEDING)}


@pytest.mark.parametrize("seed", range(40))
def test_random_histories_keep_the_invariants(seed: int) -> None:
    """Any interleaving of peer messages, TU responses and timers: each transaction ends with exactly one
    TransactionTerminated, no timer is left due after handle_timer, and once every timer has run only
    transactions waiting for a response (which have no timer, §17) are left."""
    rng = random.Random(seed)
    layer = make_layer()
    now = 0.0
    ends: dict[Transaction, int] = {}     # by identity (transactions compare by identity)
    sent: list[Request] = []

    def note(events: list[Event]) -> None:
        for event in events:
            if isinstance(event, TransactionTerminated):
                ends[event.transaction] = ends.get(event.transaction, 0) + 1

    for step in range(80):
        now += rng.choice([0.0, 0.05, 0.3, 1.0, 7.0])
        choice = rng.randrange(6)
        method = rng.choice(["INVITE", "OPTIONS"])
        branch = f"z9hG4bK{rng.randrange(4)}"
        transport = rng.choice(["UDP", "TCP"])
        if choice == 0:
            req = request(method, branch=f"{branch}s{step}", transport=transport)
            layer.send_request(req, BOB, now, reliable=transport == "TCP")
            sent.append(req)
        elif choice == 1 and sent:
            note(layer.receive(respond(rng.choice(sent), rng.choice([100, 180, 200, 486]), "X"), BOB, now))
        elif choice == 2:
            note(layer.receive(request(method, branch=branch, transport=transport), ALICE, now))
        elif choice == 3:
            note(layer.receive(request("ACK", branch=branch, transport=transport), ALICE, now))
        elif choice == 4 and layer.server_transactions:
            server = rng.choice(layer.server_transactions)
            with contextlib.suppress(TransactionError):
                layer.send_response(respond(server.request, rng.choice([180, 200, 404]), "X"), now)
        else:
            note(layer.handle_timer(now))
            deadline = layer.get_timer()
            assert deadline is None or deadline > now
        layer.datagrams_to_send()
    while (deadline := layer.get_timer()) is not None:
        note(layer.handle_timer(deadline))
    assert ends and all(count == 1 for count in ends.values())
    left = layer.client_transactions + layer.server_transactions
    assert all((type(t), t.state) in TIMERLESS for t in left), [(type(t).__name__, t.state) for t in left]


def test_inputs_are_enumerated() -> None:
    assert {i.name for i in Input} >= {"RECV_1XX", "RECV_2XX", "RECV_300_699", "SEND_1XX", "SEND_2XX",
                                       "SEND_300_699", "RECV_REQUEST", "RECV_ACK", "TRANSPORT_ERROR"}
