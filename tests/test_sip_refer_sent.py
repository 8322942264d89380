"""REFER sent by us (``refer_mode = "sip"``, RFC 3515) with explicit time: the user agent's side."""

from __future__ import annotations

from pbx.sip.ua import ReferAnswered, Referred
from tests.test_sip_ua import connected, only, outbound, transfer


def test_our_refer_reaches_the_peer_and_its_refusal_comes_back_as_refer_answered() -> None:
    alice, bob, caller, _ = connected()
    assert alice.refer(caller, "sip:carol@127.0.0.1", 1.0, referred_by="sip:alice@127.0.0.1")
    [refer] = transfer(alice, bob, 1.0)
    assert refer.headers.get("Refer-To") == "<sip:carol@127.0.0.1>"          # type: ignore[union-attr]
    referred = only(bob.events(), Referred)
    assert isinstance(referred, Referred) and referred.refer_to == "<sip:carol@127.0.0.1>"
    bob.respond_refer(referred.session, referred.request, False, 1.1)
    transfer(bob, alice, 1.1)
    answered = only(alice.events(), ReferAnswered)
    assert isinstance(answered, ReferAnswered) and answered.status == 603


def test_refer_needs_a_confirmed_call() -> None:
    alice, session, _ = outbound()
    assert alice.refer(session, "sip:carol@127.0.0.1", 0.1) is False
