"""RFC 3261 §12 dialogs: creation on both sides, requests inside a dialog, route sets, CSeq rules.

The messages follow RFC 3665 §3.2 (session establishment through two record-routing proxies): Alice at
client.atlanta.example.com calls Bob at client.biloxi.example.com through ss1.atlanta.example.com and
ss2.biloxi.example.com.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from pbx.sip.dialog import (
    Dialog,
    DialogError,
    DialogId,
    DialogState,
    DialogTable,
    DialogUsageError,
)
from pbx.sip.message import Request, Response, parse_message, response_to
from pbx.sip.transaction import build_cancel

CALL_ID = "3848276298220188511@atlanta.example.com"
ALICE_CONTACT = "sip:alice@client.atlanta.example.com;transport=tcp"
BOB_CONTACT = "sip:bob@client.biloxi.example.com;transport=tcp"
SS1 = "<sip:ss1.atlanta.example.com;lr>"
SS2 = "<sip:ss2.biloxi.example.com;lr>"


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


def sip(text: str) -> Request | Response:
    return parse_message(text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n\r\n")


def alice_invite() -> Request:
    """F8 of RFC 3665 §3.2 as Alice sent it (after authenticating: CSeq 2)."""
    message = sip(f"""
INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9
Max-Forwards: 70
Route: <sip:ss1.atlanta.example.com;lr>
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: {CALL_ID}
CSeq: 2 INVITE
Proxy-Authorization: Digest username="alice", realm="atlanta.example.com",
 nonce="wf84f1ceczx41ae6cbe5aea9c8e88d359", opaque="", uri="sip:bob@biloxi.example.com",
 response="42ce3cef44b22f50c6a6071bc8"
Contact: <{ALICE_CONTACT}>
Content-Length: 0""")
    assert isinstance(message, Request)
    return message


def bob_invite() -> Request:
    """The same INVITE as it reaches Bob: two Record-Route values, in the order the proxies added them."""
    message = sip(f"""
INVITE {"sip:bob@client.biloxi.example.com"} SIP/2.0
Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK721e4.1
Via: SIP/2.0/TCP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.1;received=192.0.2.111
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
Max-Forwards: 68
Record-Route: {SS2}
Record-Route: {SS1}
From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: Bob <sip:bob@biloxi.example.com>
Call-ID: {CALL_ID}
CSeq: 2 INVITE
Contact: <{ALICE_CONTACT}>
Content-Length: 0""")
    assert isinstance(message, Request)
    return message


def ok_at_alice(status: int = 200, reason: str = "OK", contact: bool = True, tag: str | None = "314159",
                record_route: str = f"{SS2}, {SS1}") -> Response:
    """Bob's answer as it reaches Alice: the Record-Route values in one line, as in F15."""
    to = "Bob <sip:bob@biloxi.example.com>" + (f";tag={tag}" if tag else "")
    contact_line = f"Contact: <{BOB_CONTACT}>\n" if contact else ""
    rr_line = f"Record-Route: {record_route}\n" if record_route else ""
    message = sip(f"""
SIP/2.0 {status} {reason}
Via: SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74bf9;received=192.0.2.101
{rr_line}From: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
To: {to}
Call-ID: {CALL_ID}
CSeq: 2 INVITE
{contact_line}Content-Length: 0""")
    assert isinstance(message, Response)
    return message


def bob_ok(invite: Request, status: int = 200, reason: str = "OK") -> Response:
    response = response_to(invite, status, reason, to_tag="314159")
    response.headers.add("Contact", f"<{BOB_CONTACT}>")
    return response


def in_dialog(method: str, seq: int, *, to_tag: str = "314159", from_tag: str = "9fxced76sl",
              contact: str | None = None) -> Request:
    """A request Alice sends to Bob inside the dialog, as Bob receives it."""
    contact_line = f"\nContact: <{contact}>" if contact else ""
    message = sip(f"""
{method} {BOB_CONTACT} SIP/2.0
Via: SIP/2.0/TCP ss2.biloxi.example.com:5060;branch=z9hG4bK721e4.{seq}
Max-Forwards: 68
From: Alice <sip:alice@atlanta.example.com>;tag={from_tag}
To: Bob <sip:bob@biloxi.example.com>;tag={to_tag}
Call-ID: {CALL_ID}
CSeq: {seq} {method}{contact_line}
Content-Length: 0""")
    assert isinstance(message, Request)
    return message


VIA = "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b76"


# -- the UAC side ---------------------------------------------------------------------------------------------
def test_uac_dialog_from_a_2xx_reverses_the_record_route() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice())
    assert dialog.id == DialogId(CALL_ID, "9fxced76sl", "314159")
    assert dialog.state is DialogState.CONFIRMED and dialog.is_uac and not dialog.secure
    assert dialog.route_set == [SS1, SS2]
    assert dialog.remote_target == BOB_CONTACT
    assert (dialog.local_seq, dialog.remote_seq) == (2, None)
    assert (dialog.local_uri, dialog.remote_uri) == ("sip:alice@atlanta.example.com", "sip:bob@biloxi.example.com")
    assert dialog.remote_party.tag == "314159" and dialog.local_party.tag == "9fxced76sl"


def test_uac_ack_of_the_2xx_keeps_the_invite_cseq_and_credentials() -> None:
    invite = alice_invite()
    dialog = Dialog.from_uac(invite, ok_at_alice())
    ack = dialog.create_ack(invite, via=VIA, max_forwards=70)
    assert (ack.method, ack.uri) == ("ACK", BOB_CONTACT)
    assert ack.headers.get_all("Route") == [SS1, SS2]
    assert (ack.cseq.seq, ack.cseq.method) == (2, "ACK")
    assert ack.headers.get_all("Via") == [VIA]
    assert ack.headers.get("Max-Forwards") == "70"
    assert ack.headers.get("Proxy-Authorization") == invite.headers.get("Proxy-Authorization")
    assert ack.from_.tag == "9fxced76sl" and ack.to.tag == "314159" and ack.call_id == CALL_ID
    assert dialog.local_seq == 2
    with raises(DialogUsageError, "an ACK acknowledges an INVITE, not a BYE"):
        dialog.create_ack(in_dialog("BYE", 3), via=VIA)


def test_uac_requests_increment_the_cseq() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice())
    bye = dialog.create_request("BYE", via=VIA)
    assert (bye.method, bye.uri, bye.cseq.seq, bye.cseq.method) == ("BYE", BOB_CONTACT, 3, "BYE")
    assert bye.headers.get_all("Route") == [SS1, SS2]
    assert "Max-Forwards" not in bye.headers                 # the UA core adds it
    info = dialog.create_request("INFO", via=VIA, body=b"Signal=1\r\n", content_type="application/dtmf-relay")
    assert info.cseq.seq == 4 and info.body == b"Signal=1\r\n"
    assert info.headers.get("Content-Type") == "application/dtmf-relay"


def test_ack_and_cancel_are_not_built_as_new_requests() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice())
    with raises(DialogUsageError, "ACK keeps its INVITE's CSeq: use create_ack"):
        dialog.create_request("ACK", via=VIA)
    with raises(DialogUsageError, "CANCEL keeps its INVITE's CSeq: use transaction.build_cancel"):
        dialog.create_request("CANCEL", via=VIA)
    assert dialog.local_seq == 2
    cancel = build_cancel(alice_invite())
    assert (cancel.cseq.seq, cancel.cseq.method, cancel.uri) == (2, "CANCEL", "sip:bob@biloxi.example.com")


def test_uac_early_dialog_from_a_provisional_then_confirmed_by_the_2xx() -> None:
    invite = alice_invite()
    ringing = ok_at_alice(180, "Ringing", record_route=SS1)
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.state is DialogState.EARLY and dialog.route_set == [SS1]
    dialog.receive_response(ok_at_alice())
    assert dialog.state is DialogState.CONFIRMED
    assert dialog.route_set == [SS1, SS2]                     # recomputed from the 2xx (§13.2.2.4)
    dialog.receive_response(ok_at_alice(record_route=SS2))
    assert dialog.route_set == [SS1, SS2]                     # fixed once confirmed


def test_uac_provisional_without_contact_targets_the_request_uri() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice(183, "Session Progress", contact=False))
    assert dialog.remote_target == "sip:bob@biloxi.example.com"


@pytest.mark.parametrize(("response", "message"), [
    (ok_at_alice(180, "Ringing", tag=None), "the 180 response has no To tag: it creates no dialog"),
    (ok_at_alice(100, "Trying"), "a 100 response creates no dialog"),
    (ok_at_alice(486, "Busy Here"), "a 486 response creates no dialog"),
    (ok_at_alice(contact=False), "the 200 response has no Contact"),
])
def test_responses_that_create_no_dialog(response: Response, message: str) -> None:
    with raises(DialogError, message) as info:
        Dialog.from_uac(alice_invite(), response)
    assert isinstance(info.value, ValueError)


def test_uac_target_refresh_by_the_2xx_of_a_reinvite() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice())
    dialog.create_request("INVITE", via=VIA)
    moved = response_to(in_dialog("INVITE", 3), 200, "OK")
    moved.headers.add("Contact", "<sip:bob@192.0.2.4:5070>")
    dialog.receive_response(moved)
    assert dialog.remote_target == "sip:bob@192.0.2.4:5070"
    assert dialog.create_request("BYE", via=VIA).uri == "sip:bob@192.0.2.4:5070"
    failed = response_to(in_dialog("INVITE", 5), 488, "Not Acceptable Here")
    failed.headers.add("Contact", "<sip:elsewhere@192.0.2.9>")
    dialog.receive_response(failed)
    assert dialog.remote_target == "sip:bob@192.0.2.4:5070"


# -- the UAS side ---------------------------------------------------------------------------------------------
def test_uas_dialog_keeps_the_record_route_order() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite), secure=True)
    assert dialog.id == DialogId(CALL_ID, "314159", "9fxced76sl")
    assert dialog.state is DialogState.CONFIRMED and not dialog.is_uac and dialog.secure
    assert dialog.route_set == [SS2, SS1]
    assert dialog.remote_target == ALICE_CONTACT
    assert (dialog.local_seq, dialog.remote_seq) == (None, 2)


def test_uas_bye_goes_back_through_the_proxies() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite))
    via = "SIP/2.0/TCP client.biloxi.example.com:5060;branch=z9hG4bKnashds7"
    bye = dialog.create_request("BYE", via=via, max_forwards=70)
    assert (bye.method, bye.uri) == ("BYE", ALICE_CONTACT)
    assert bye.headers.get_all("Route") == [SS2, SS1]
    assert (bye.cseq.seq, bye.cseq.method) == (1, "BYE")     # the UAS's own sequence starts at 1
    assert bye.from_.tag == "314159" and bye.from_.uri.user == "bob"
    assert bye.to.tag == "9fxced76sl" and bye.to.uri.user == "alice"
    assert [h for h, _ in bye.headers.items()][:3] == ["Via", "Route", "Route"]


def test_uas_early_dialog_from_its_provisional() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite, 180, "Ringing"))
    assert dialog.state is DialogState.EARLY
    dialog.confirm()
    assert dialog.state is DialogState.CONFIRMED


def test_uas_dialog_needs_a_tag_and_a_contact() -> None:
    invite = bob_invite()
    with raises(DialogUsageError, "the 200 response needs a To tag to create a dialog"):
        Dialog.from_uas(invite, response_to(invite, 200, "OK"))
    invite.headers.remove("Contact")
    with raises(DialogError, "the INVITE has no Contact"):
        Dialog.from_uas(invite, bob_ok(invite))


def test_in_dialog_requests_lower_cseq_is_500() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite))
    dialog.receive_request(in_dialog("ACK", 2))                # the ACK carries the INVITE's number
    dialog.receive_request(in_dialog("INFO", 3))
    assert dialog.remote_seq == 3
    with raises(DialogError, "CSeq 2 is lower than the dialog's 3: out of order") as info:
        dialog.receive_request(in_dialog("BYE", 2))
    assert (info.value.status, info.value.reason) == (500, "Server Internal Error")
    dialog.receive_request(in_dialog("CANCEL", 1))             # exempt
    dialog.receive_request(in_dialog("BYE", 10))
    assert dialog.remote_seq == 10


def test_first_request_sets_an_empty_remote_sequence() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice())
    bye = sip(f"""
BYE {ALICE_CONTACT} SIP/2.0
Via: SIP/2.0/TCP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.2
Max-Forwards: 68
From: Bob <sip:bob@biloxi.example.com>;tag=314159
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
Call-ID: {CALL_ID}
CSeq: 1 BYE
Content-Length: 0""")
    assert isinstance(bye, Request)
    dialog.receive_request(bye)
    assert dialog.remote_seq == 1


def test_request_of_another_dialog_is_481() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite))
    with raises(DialogError, "the request is not in this dialog") as info:
        dialog.receive_request(in_dialog("BYE", 3, to_tag="other"))
    assert info.value.status == 481


def test_reinvite_and_update_with_contact_refresh_the_target() -> None:
    invite = bob_invite()
    dialog = Dialog.from_uas(invite, bob_ok(invite))
    dialog.receive_request(in_dialog("INFO", 3, contact="sip:alice@192.0.2.50"))
    assert dialog.remote_target == ALICE_CONTACT                 # INFO is no target refresh
    dialog.receive_request(in_dialog("INVITE", 4, contact="sip:alice@192.0.2.50"))
    assert dialog.remote_target == "sip:alice@192.0.2.50"
    dialog.receive_request(in_dialog("UPDATE", 5, contact="sip:alice@192.0.2.51:5080"))
    assert dialog.remote_target == "sip:alice@192.0.2.51:5080"
    dialog.receive_request(in_dialog("INVITE", 6))              # no Contact: unchanged
    assert dialog.remote_target == "sip:alice@192.0.2.51:5080"
    assert not dialog.refresh_target(in_dialog("INVITE", 7))


# -- routing ------------------------------------------------------------------------------------------------------
def test_strict_routing_puts_the_first_route_in_the_request_uri() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice(
        record_route="<sip:p2.example.com;lr>, <sip:p1.example.com;method=INVITE;transport=udp>"))
    assert dialog.route_set == ["<sip:p1.example.com;method=INVITE;transport=udp>", "<sip:p2.example.com;lr>"]
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.uri == "sip:p1.example.com;transport=udp"
    assert bye.headers.get_all("Route") == ["<sip:p2.example.com;lr>", f"<{BOB_CONTACT}>"]


def test_no_route_set_no_route_header() -> None:
    dialog = Dialog.from_uac(alice_invite(), ok_at_alice(record_route=""))
    assert dialog.route_set == []
    bye = dialog.create_request("BYE", via=VIA)
    assert bye.uri == BOB_CONTACT and bye.headers.get_all("Route") == []


# -- the table ----------------------------------------------------------------------------------------------------
def test_dialog_table_matches_requests_and_responses() -> None:
    table = DialogTable()
    uac = Dialog.from_uac(alice_invite(), ok_at_alice())
    table.add(uac)
    assert table.get(uac.id) is uac and uac in table and len(table) == 1 and list(table) == [uac]
    # a response to us: our tag is the From tag
    assert table.match(ok_at_alice()) is uac
    assert table.match(ok_at_alice(tag="fork2")) is None
    # a request to us: our tag is the To tag
    bye = sip(f"""
BYE {ALICE_CONTACT} SIP/2.0
Via: SIP/2.0/TCP ss1.atlanta.example.com:5060;branch=z9hG4bK2d4790.2
From: Bob <sip:bob@biloxi.example.com>;tag=314159
To: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl
Call-ID: {CALL_ID}
CSeq: 1 BYE
Content-Length: 0""")
    assert table.match(bye) is uac
    assert table.match(in_dialog("BYE", 3)) is None            # Bob's view of the dialog is not in this table
    table.remove(uac)
    assert table.match(bye) is None and len(table) == 0
    table.remove(uac)


def test_dialog_table_groups_forks_and_is_bounded() -> None:
    table = DialogTable(max_dialogs=2)
    first = Dialog.from_uac(alice_invite(), ok_at_alice(180, "Ringing", tag="a"))
    second = Dialog.from_uac(alice_invite(), ok_at_alice(180, "Ringing", tag="b"))
    table.add(first)
    with pytest.raises(DialogUsageError, match=r"^a dialog DialogId\("):
        table.add(Dialog.from_uac(alice_invite(), ok_at_alice(180, "Ringing", tag="a")))
    table.add(second)
    assert table.dialog_set(CALL_ID, "9fxced76sl") == [first, second]
    with raises(DialogError, "too many dialogs (2)") as info:
        table.add(Dialog.from_uac(alice_invite(), ok_at_alice(180, "Ringing", tag="c")))
    assert (info.value.status, info.value.reason) == (503, "Service Unavailable")
    with raises(ValueError, "max_dialogs must be at least 1, not 0"):
        DialogTable(0)
