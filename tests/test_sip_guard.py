"""The SIP defences, sans-I/O with explicit times: the source guard (ACL, rates, brute-force blocks, bounded
memory), inbound digest authentication and the registrar through the user agent, the dial allowlist, and
their configuration keys. The same defences over real sockets: tests/test_sip_hostile.py."""

from __future__ import annotations

import re
from typing import Any

import pytest

from pbx.errors import ConfigError
from pbx.sip.config import SipConfig, sip_config
from pbx.sip.dial_allow import canonical_callee, dial_refusal
from pbx.sip.digest import Challenge, Credentials, authorization
from pbx.sip.guard import Refused, SipGuard
from pbx.sip.message import Request, Response, parse_message
from pbx.sip.registrar import MIN_EXPIRES, InboundAuth, Registrar
from pbx.sip.ua import Failed, Incoming, UserAgent
from tests.test_sip_ua import ALICE, BOB, OFFER, agent, place_call, transfer

USERS = {"1001": "s3cret-pass"}
EVE: tuple[str, int] = ("127.0.0.1", 40000)


def guard(**config: Any) -> SipGuard:
    return SipGuard(SipConfig(**config))


def refusal(result: Refused | None) -> tuple[int, str, tuple[tuple[str, str], ...]] | None:
    return None if result is None else (result.status, result.reason, result.headers)


# -- the ACL ------------------------------------------------------------------------------------------------
def test_the_acl_is_a_classifier_deny_first_then_allow() -> None:
    g = guard(allow_networks=("10.0.0.0/8", "2001:db8::/32"), deny_networks=("10.1.0.0/16",))
    assert g.permits("10.2.3.4") and g.permits("2001:db8::5") and g.permits("::ffff:10.2.3.4")
    assert not g.permits("10.1.2.3")            # denied inside an allowed network
    assert not g.permits("192.0.2.1") and not g.permits("2001:db9::1")
    assert not g.permits("not-an-address")
    assert guard().permits("192.0.2.1")         # no lists: everyone
    assert not guard(deny_networks=("0.0.0.0/0",)).permits("127.0.0.1")


def test_a_denied_source_is_dropped_unanswered_and_counted() -> None:
    g = guard(deny_networks=("127.0.0.0/8",))
    refused = g.inbound("127.0.0.1", 0.0, request=True)
    assert refused is not None and not refused.answered
    assert str(refused) == "127.0.0.1 is not allowed by [sip] allow_networks/deny_networks"
    assert g.connection("127.0.0.1", 0.0) is not None
    assert g.refused.acl == 2 and len(g) == 0   # nothing is remembered of it


# -- rates ----------------------------------------------------------------------------------------------------
def test_over_its_message_rate_a_source_gets_503_once_then_silence_until_the_cool_off_ends() -> None:
    g = guard(max_messages_per_sec=10, rate_cooloff_secs=5)
    assert all(g.inbound("127.0.0.1", 0.0, request=True) is None for _ in range(10))     # a second's worth
    assert refusal(g.inbound("127.0.0.1", 0.0, request=True)) == (503, "Service Unavailable",
                                                                  (("Retry-After", "5"),))
    for t in (0.1, 1.0, 4.9):
        assert refusal(g.inbound("127.0.0.1", t, request=True)) == (0, "", ())
    assert g.inbound("::1", 1.0, request=True) is None           # another source is not touched
    assert g.inbound("127.0.0.1", 5.0, request=True) is None     # the cool-off is over, the bucket full
    assert g.refused.rate == 4 and g.refused.blocks == 1


def test_a_steady_source_within_its_rate_is_never_refused() -> None:
    g = guard(max_messages_per_sec=50)
    assert all(g.inbound("127.0.0.1", i * 0.021, request=True) is None for i in range(2000))


def test_a_response_that_empties_the_bucket_is_not_answered_the_next_request_is() -> None:
    g = guard(max_messages_per_sec=2, rate_cooloff_secs=3)
    assert g.inbound("127.0.0.1", 0.0, request=False) is None
    assert g.inbound("127.0.0.1", 0.0, request=False) is None
    assert refusal(g.inbound("127.0.0.1", 0.0, request=False)) == (0, "", ())
    assert refusal(g.inbound("127.0.0.1", 1.0, request=True)) == (503, "Service Unavailable",
                                                                  (("Retry-After", "2"),))
    assert refusal(g.inbound("127.0.0.1", 1.5, request=True)) == (0, "", ())


def test_new_requests_have_their_own_rate() -> None:
    g = guard(max_messages_per_sec=1000, max_new_requests_per_sec=3, rate_cooloff_secs=10)
    for _ in range(3):
        assert g.inbound("127.0.0.1", 0.0, request=True) is None and g.new_request("127.0.0.1", 0.0) is None
    assert g.inbound("127.0.0.1", 0.0, request=True) is None
    refused = g.new_request("127.0.0.1", 0.0)
    assert refusal(refused) == (503, "Service Unavailable", (("Retry-After", "10"),))
    assert str(refused) == "127.0.0.1 sent more than 3 new SIP requests per second"
    assert refusal(g.new_request("127.0.0.1", 0.5)) == (0, "", ())              # dropped, unanswered
    assert g.inbound("127.0.0.1", 0.5, request=True) is None      # its calls' own traffic goes on
    assert g.inbound("127.0.0.1", 0.5, request=False) is None
    assert g.new_request("::1", 0.5) is None                       # another source is not touched
    assert g.new_request("127.0.0.1", 10.0) is None
    assert g.refused.new_requests == 2 and g.refused.blocks == 1


def test_a_rate_of_zero_is_no_limit() -> None:
    g = guard(max_messages_per_sec=0, max_new_requests_per_sec=0)
    assert all(g.inbound("127.0.0.1", 0.0, request=True) is None and g.new_request("127.0.0.1", 0.0) is None
               for _ in range(10_000))


def test_the_table_is_bounded_least_recently_seen_first_out() -> None:
    g = SipGuard(SipConfig(max_messages_per_sec=1, rate_cooloff_secs=60), max_sources=3)
    g.inbound("127.0.0.1", 0.0, request=True)
    assert g.inbound("127.0.0.1", 0.0, request=True) is not None          # blocked
    for i in range(2, 5):
        g.inbound(f"::{i}", 1.0, request=True)
    assert len(g) == 3
    assert g.inbound("127.0.0.1", 2.0, request=True) is None              # forgotten: afresh


# -- digest brute force ---------------------------------------------------------------------------------------
def test_too_many_failed_answers_in_the_window_block_the_source() -> None:
    g = guard(auth_max_failures=3, auth_failure_window_secs=10, auth_block_secs=100)
    assert not g.auth_failed("127.0.0.1", 0.0)
    assert not g.auth_failed("127.0.0.1", 5.0)
    assert not g.auth_failed("127.0.0.1", 10.5)      # the first has left the window
    assert g.auth_failed("127.0.0.1", 11.0)           # three in 10 s: blocked (this request gets the 403)
    assert g.blocked("127.0.0.1", 50.0)
    assert refusal(g.inbound("127.0.0.1", 50.0, request=True)) == (0, "", ())
    assert g.connection("127.0.0.1", 50.0) is not None
    assert g.inbound("::1", 50.0, request=True) is None
    assert g.inbound("127.0.0.1", 111.0, request=True) is None
    assert g.refused.auth_blocked == 1 and g.refused.blocks == 1


# -- inbound digest through the user agent ---------------------------------------------------------------------
def bob_with_users(**config: Any) -> tuple[UserAgent, SipGuard]:
    bob = agent(BOB, "b")
    g = guard(**config)
    bob.auth = InboundAuth("pypbx", USERS, g)
    bob.registrar = Registrar()
    return bob, g


def responses(ua: UserAgent) -> list[Response]:
    out = [parse_message(data) for data, _ in ua.datagrams_to_send()]
    assert all(isinstance(m, Response) for m in out), out
    return [m for m in out if isinstance(m, Response)]


def test_an_invite_is_challenged_and_the_right_password_reaches_the_application() -> None:
    alice, (bob, g) = agent(ALICE, "a"), bob_with_users()
    place_call(alice, 0.0, credentials=Credentials("1001", USERS["1001"]))
    transfer(alice, bob, 0.0)
    assert bob.events() == []
    [challenge] = [m for m in responses(bob) if m.status == 401]
    offered = [Challenge.parse(v) for v in challenge.headers.get_all("WWW-Authenticate")]
    assert [(c.realm, c.algorithm, c.qop, c.stale) for c in offered] == [
        ("pypbx", "SHA-256", ("auth",), False), ("pypbx", "MD5", ("auth",), False)]
    alice.receive(challenge, BOB, 0.0)
    transfer(alice, bob, 0.0)                       # the ACK of the 401, the INVITE with credentials
    [incoming] = bob.events()
    assert isinstance(incoming, Incoming)
    assert (incoming.request.headers.get("Authorization") or "").startswith('Digest username="1001"')
    assert "algorithm=SHA-256" in (incoming.request.headers.get("Authorization") or "")
    assert bob.auth is not None and bob.auth.failures == 0 and g.refused.blocks == 0


def test_a_wrong_password_is_challenged_again_then_the_caller_gives_up() -> None:
    alice, (bob, g) = agent(ALICE, "a"), bob_with_users()
    session = place_call(alice, 0.0, credentials=Credentials("1001", "guess"))
    for _ in range(5):
        transfer(alice, bob, 0.0)
        for data, _ in bob.datagrams_to_send():
            alice.receive(parse_message(data), BOB, 0.0)
    assert bob.events() == []
    failed = [e for e in alice.events() if isinstance(e, Failed)]
    assert [(e.session, e.status) for e in failed] == [(session, 401)]
    assert bob.auth is not None and bob.auth.failures == 2 and not g.blocked(ALICE[0], 0.0)


def register(n: int, *, authorization_value: str | None = None, user: str = "1001", expires: str | None = None,
             contact: str = "<sip:1001@127.0.0.1:40000>", method: str = "REGISTER") -> Request:
    lines = [f"{method} sip:127.0.0.1:5062 SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKeve{n}",
             "Max-Forwards: 70", f"From: <sip:{user}@127.0.0.1>;tag=eve{n}", f"To: <sip:{user}@127.0.0.1>",
             f"Call-ID: eve-{n}", f"CSeq: {n} {method}", f"Contact: {contact}"]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if authorization_value is not None:
        lines.append(f"Authorization: {authorization_value}")
    if method == "INVITE":
        body = OFFER
        lines.append("Content-Type: application/sdp")
    else:
        body = b""
    message = parse_message(("\r\n".join(lines) + f"\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    assert isinstance(message, Request)
    return message


def answer(ua: UserAgent, message: Request, now: float) -> Response:
    ua.receive(message, EVE, now)
    [only] = responses(ua)
    return only


def credentials_for(challenge_response: Response, message: Request, password: str, nc: int = 1,
                    user: str = "1001") -> str:
    challenge = Challenge.parse(challenge_response.headers.get_all("WWW-Authenticate")[0])
    return authorization(challenge, message.method, message.uri, Credentials(user, password), f"cn{nc}", nc)


def test_register_authenticates_and_keeps_its_binding_with_its_expiry() -> None:
    bob, _ = bob_with_users()
    first = answer(bob, register(1), 0.0)
    assert first.status == 401
    value = credentials_for(first, register(2), USERS["1001"])
    ok = answer(bob, register(2, authorization_value=value, expires="120"), 1.0)
    assert (ok.status, ok.headers.get_all("Contact")) == (200, ["<sip:1001@127.0.0.1:40000>;expires=120"])
    assert bob.registrar is not None
    [binding] = bob.registrar.lookup("1001", 60.0)
    assert (binding.contact, binding.expires_at, binding.source) == ("sip:1001@127.0.0.1:40000", 121.0, EVE)
    assert bob.registrar.lookup("1001", 121.0) == []                # expired
    # removal: expires 0, with a fresh answer (nonce count 2 of the same nonce)
    value = credentials_for(first, register(3), USERS["1001"], nc=2)
    gone = answer(bob, register(3, authorization_value=value, expires="0"), 2.0)
    assert (gone.status, gone.headers.get_all("Contact")) == (200, [])
    assert bob.registrar.lookup("1001", 2.0) == []


def test_register_refusals_too_brief_someone_else_s_name_a_replay() -> None:
    bob, _ = bob_with_users()
    first = answer(bob, register(1), 0.0)
    value = credentials_for(first, register(2), USERS["1001"])
    brief = answer(bob, register(2, authorization_value=value, expires="30"), 0.0)
    assert (brief.status, brief.headers.get("Min-Expires")) == (423, str(MIN_EXPIRES))
    replay = answer(bob, register(3, authorization_value=value, expires="600"), 0.0)   # same nonce and nc
    assert replay.status == 401
    other = register(4, user="1002")                 # 1001's right password, To names 1002
    value = credentials_for(first, other, USERS["1001"], nc=5, user="1001")
    refused = answer(bob, register(4, user="1002", authorization_value=value), 0.0)
    assert (refused.status, refused.headers.get("Warning")) == (
        403, '399 pypbx "the To user is not the authenticated user"')


def test_a_stale_nonce_with_the_right_password_gets_stale_true() -> None:
    bob, g = bob_with_users()
    first = answer(bob, register(1), 0.0)
    value = credentials_for(first, register(2), USERS["1001"])
    late = answer(bob, register(2, authorization_value=value), 301.0)
    assert late.status == 401
    assert Challenge.parse(late.headers.get_all("WWW-Authenticate")[0]).stale
    assert bob.auth is not None and bob.auth.failures == 0 and g.refused.blocks == 0


def test_brute_force_on_register_and_invite_ends_in_403_then_the_guard_drops() -> None:
    bob, g = bob_with_users(auth_max_failures=5, auth_failure_window_secs=60, auth_block_secs=300)
    statuses = []
    for n in range(1, 6):
        method = "INVITE" if n % 2 else "REGISTER"
        challenge = answer(bob, register(100 + n, method=method), float(n))
        assert challenge.status == 401
        guess = register(200 + n, method=method)
        value = credentials_for(challenge, guess, f"guess-{n}")
        statuses.append(answer(bob, register(200 + n, method=method, authorization_value=value), float(n)).status)
    assert statuses == [401, 401, 401, 401, 403]
    assert g.blocked(EVE[0], 10.0)
    assert refusal(g.inbound(EVE[0], 10.0, request=True)) == (0, "", ())
    assert bob.events() == []


def test_only_the_configured_algorithms_are_challenged_and_accepted() -> None:
    bob = agent(BOB, "b")
    bob.auth = InboundAuth("pypbx", USERS, algorithms=("MD5",))
    first = answer(bob, register(1, method="INVITE"), 0.0)
    assert [Challenge.parse(v).algorithm for v in first.headers.get_all("WWW-Authenticate")] == ["MD5"]
    sha = Challenge("pypbx", Challenge.parse(first.headers.get_all("WWW-Authenticate")[0]).nonce, "SHA-256",
                    ("auth",))
    value = authorization(sha, "INVITE", register(2).uri, Credentials("1001", USERS["1001"]), "cn", 1)
    assert answer(bob, register(2, method="INVITE", authorization_value=value), 0.0).status == 401
    assert bob.auth.failures == 1


def test_malformed_credentials_are_400_and_not_counted() -> None:
    bob, g = bob_with_users()
    bad = answer(bob, register(1, authorization_value='Digest username="1001", realm="pypbx"'), 0.0)
    assert bad.status == 400 and "credentials: no nonce" in (bad.headers.get("Warning") or "")
    assert bob.auth is not None and bob.auth.failures == 0 and len(g) == 0


def test_without_users_register_is_405_and_invites_are_not_challenged() -> None:
    bob = agent(BOB, "b")
    assert answer(bob, register(1), 0.0).status == 405
    bob.receive(register(2, method="INVITE"), EVE, 0.0)
    assert [type(e) for e in bob.events()] == [Incoming]


# -- the dial allowlist ------------------------------------------------------------------------------------------
def test_dial_allow_matches_canonical_uris_and_numbers_as_given() -> None:
    rules = ("sip:*@127.0.0.1", "sip:*@[::1]:*", "+1555*")
    for allowed in ("sip:bob@127.0.0.1", "SIP:Bob@127.0.0.1;transport=udp", "sip:x@[::1]:5080", "+15551234"):
        assert dial_refusal(rules, allowed) is None, allowed
    for refused in ("sip:bob@127.0.0.1:5080", "sip:a@evil.example;x=@127.0.0.1", "sip:bob@127.0.0.2",
                    "+16661234", "15551234", "sip:@@", "tel:+15551234"):
        assert dial_refusal(rules, refused) is not None, refused
    assert canonical_callee("sip:a@evil.example;x=@127.0.0.1") is None        # does not parse: matches nothing
    assert canonical_callee("sip:A@Evil.example:5060;maddr=127.0.0.1?x=y") == "sip:a@evil.example:5060"
    assert dial_refusal((), "sip:anyone@anywhere.example") is None
    assert dial_refusal(("+1555*",), "sip:bob@127.0.0.1") == (
        "callee 'sip:bob@127.0.0.1' (sip:bob@127.0.0.1) matches no [sip] dial_allow pattern ('+1555*')")


# -- configuration ------------------------------------------------------------------------------------------------
def test_the_defence_keys_are_checked() -> None:
    config = sip_config({"allow_networks": ["127.0.0.0/8", "::1"], "users": {"1001": "pw"}, "dial_allow": ["+1*"],
                         "max_messages_per_sec": 5, "rtp_source": "sdp", "max_message_bytes": 2048})
    assert (config.allow_networks, config.users, config.dial_allow, config.max_messages_per_sec,
            config.rtp_source) == (("127.0.0.0/8", "::1"), {"1001": "pw"}, ("+1*",), 5.0, "sdp")
    assert sip_config({"auth_algorithms": ["md5", "sha-256"]}).auth_algorithms == ("MD5", "SHA-256")
    defaults = SipConfig()
    assert (defaults.max_message_bytes, defaults.max_messages_per_sec, defaults.max_new_requests_per_sec,
            defaults.users, defaults.dial_allow, defaults.rtp_source) == (16384, 1000.0, 200.0, {}, (), "latch")
    for raw, message in [
        ({"allow_networks": ["10.0.0.0/33"]}, "config key 'sip.allow_networks': not a network: '10.0.0.0/33'"),
        ({"rtp_source": "any"}, "config key 'sip.rtp_source': expected latch or sdp, got 'any'"),
        ({"max_message_bytes": 100}, "config key 'sip.max_message_bytes': must be between 1024 and 65535"),
        ({"users": {"1001": ""}}, "config key 'sip.users': expected a table of username = \"password\" "
                                  "(non-empty strings)"),
        ({"dial_allow": [""]}, "config key 'sip.dial_allow': expected a list of non-empty strings"),
        ({"max_messages_per_sec": -1}, "config key 'sip.max_messages_per_sec': must be between 0 and 1e+06"),
        ({"auth_algorithms": ["SHA-1"]}, "config key 'sip.auth_algorithms': expected a list of MD5, SHA-256, "
                                         "SHA-512-256"),
    ]:
        with pytest.raises(ConfigError, match="^" + re.escape(message) + "$"):
            sip_config(raw)
