"""REGISTER (RFC 3261 §10) with explicit time: the user agent against a registrar played by the test.

The registrar checks the digest answer with our own server-side verifier (tested against RFC 7616's
worked examples), so a wrong password cannot pass by a coincidence of the client and the check.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
from pathlib import Path

import pytest

from pbx.sip.config import Account, SipConfig
from pbx.sip.digest import AuthResult, Credentials, NonceIssuer, challenges, verify
from pbx.sip.message import Request, Response, parse_message, response_to
from pbx.sip.registration import RegistrationState
from pbx.sip.ua import Registered, RegistrationFailed, UserAgent
from tests.support.calls import running_server

REGISTRAR = ("127.0.0.1", 5070)
T0 = 100.0
FIXTURES = Path(__file__).parent / "fixtures" / "sipp"


def agent() -> UserAgent:
    counter = itertools.count(1)
    return UserAgent("127.0.0.1", 5060, token=lambda: f"t{next(counter)}")


def sent(ua: UserAgent) -> list[Request]:
    out = []
    for data, addr in ua.datagrams_to_send():
        assert addr == REGISTRAR
        message = parse_message(data)
        assert isinstance(message, Request)
        out.append(message)
    return out


def answer(ua: UserAgent, request: Request, status: int, reason: str, now: float, **headers: str) -> None:
    response = response_to(request, status, reason, to_tag="reg")
    for name, value in headers.items():
        response.headers.add(name.replace("_", "-"), value)
    ua.receive(parse_message(response.serialize()), REGISTRAR, now)


def test_register_answers_the_challenge_then_refreshes_at_80_percent_with_the_next_cseq() -> None:
    ua = agent()
    issuer = NonceIssuer(b"k" * 32)
    registration = ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0,
                               credentials=Credentials("1001", "secret"), expires=120)
    (first,) = sent(ua)
    assert first.method == "REGISTER" and first.uri == "sip:127.0.0.1:5070"
    assert first.headers.get("Expires") == "120"
    assert first.headers.get("Contact") == "<sip:pypbx@127.0.0.1:5060>;expires=120"
    assert "Authorization" not in first.headers
    challenge = challenges("pbx.test", issuer.issue(T0), algorithms=("SHA-256", "MD5"))
    response = response_to(first, 401, "Unauthorized", to_tag="reg")
    for c in challenge:
        response.headers.add("WWW-Authenticate", str(c))
    ua.receive(parse_message(response.serialize()), REGISTRAR, T0 + 0.01)
    (second,) = sent(ua)
    assert second.call_id == first.call_id and second.cseq.seq == first.cseq.seq + 1
    assert second.from_.tag == first.from_.tag
    check = verify(second.headers.get("Authorization") or "", "REGISTER", lambda user, realm: "secret",
                   realm="pbx.test", issuer=issuer, now=T0 + 0.02, request_uri="sip:127.0.0.1:5070")
    assert check.result is AuthResult.OK and check.credentials.algorithm == "SHA-256"
    answer(ua, second, 200, "OK", T0 + 0.02, Contact="<sip:pypbx@127.0.0.1:5060>;expires=100")
    (event,) = ua.events()
    assert isinstance(event, Registered) and event.expires == 100
    assert registration.state is RegistrationState.REGISTERED
    assert registration.next_at == T0 + 0.02 + 80.0     # refresh at 80 % of what was granted
    ua.handle_timer(T0 + 0.02 + 80.0)
    refresh = [r for r in sent(ua) if r.method == "REGISTER"]
    assert len(refresh) == 1 and refresh[0].cseq.seq == second.cseq.seq + 1
    assert refresh[0].call_id == first.call_id


def test_a_wrong_password_fails_once_and_is_retried_later() -> None:
    ua = agent()
    issuer = NonceIssuer(b"k" * 32)
    registration = ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0,
                               credentials=Credentials("1001", "wrong"), retry_after=60.0)
    (first,) = sent(ua)
    challenge = str(challenges("pbx.test", issuer.issue(T0), algorithms=("MD5",))[0])
    answer(ua, first, 401, "Unauthorized", T0, WWW_Authenticate=challenge)
    (second,) = sent(ua)
    assert "Authorization" in second.headers
    answer(ua, second, 401, "Unauthorized", T0 + 0.1, WWW_Authenticate=challenge)
    assert sent(ua) == []                                 # no third try with the same password
    (event,) = ua.events()
    assert isinstance(event, RegistrationFailed) and event.status == 401
    assert registration.next_at == T0 + 0.1 + 60.0
    ua.handle_timer(T0 + 60.1)
    (again,) = sent(ua)
    assert "Authorization" not in again.headers           # a fresh round, challenged again


def test_a_silent_registrar_times_out_after_64_t1_and_423_asks_again_with_min_expires() -> None:
    ua = agent()
    ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0, expires=30)
    (first,) = sent(ua)
    answer(ua, first, 423, "Interval Too Brief", T0, Min_Expires="600")
    (second,) = sent(ua)
    assert second.headers.get("Expires") == "600"
    now = T0
    while (timer := ua.get_timer()) is not None and timer <= T0 + 40:
        now = timer
        ua.handle_timer(now)
        sent(ua)                                          # Timer E retransmissions
    failures = [e for e in ua.events() if isinstance(e, RegistrationFailed)]
    assert [f.status for f in failures] == [408] and abs(now - (T0 + 32.0)) < 1e-6


def test_unregister_sends_expires_zero_and_stops_refreshing() -> None:
    ua = agent()
    registration = ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0, expires=300)
    (first,) = sent(ua)
    answer(ua, first, 200, "OK", T0, Expires="300")
    assert isinstance(ua.events()[0], Registered)
    ua.unregister(registration, T0 + 1)
    (last,) = sent(ua)
    assert last.headers.get("Expires") == "0" and (last.headers.get("Contact") or "").endswith(";expires=0")
    answer(ua, last, 200, "OK", T0 + 1.1)
    assert registration.state is RegistrationState.UNREGISTERED and ua.registrations == {}
    assert registration.next_at is None


def test_a_response_with_a_strange_contact_still_registers_for_the_expires_header() -> None:
    ua = agent()
    ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0, expires=300)
    (first,) = sent(ua)
    answer(ua, first, 200, "OK", T0, Contact="<sip:other@192.0.2.9>;expires=5, garbage<<", Expires="240")
    (event,) = ua.events()
    assert isinstance(event, Registered) and event.expires == 240


def test_register_responses_never_reach_the_calls() -> None:
    ua = agent()
    ua.register("sip:1001@127.0.0.1", "sip:127.0.0.1:5070", REGISTRAR, T0)
    (first,) = sent(ua)
    stray = Response(200, "OK", first.headers.copy())
    ua.receive(parse_message(stray.serialize()), REGISTRAR, T0)
    assert ua.sessions == {}


def test_an_account_registers_at_sipp_answers_its_digest_challenge_and_refreshes(tmp_path: Path) -> None:
    """``[[sip.accounts]]`` against sipp as the registrar (it checks the digest itself, with its own code)."""
    if shutil.which("sipp") is None:
        pytest.skip("sipp (Debian sip-tester) is not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    account = Account(username="1001", registrar=f"sip:127.0.0.1:{port}", password="secret", expires=300)

    async def run() -> int:
        sipp = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(FIXTURES / "registrar.xml"), "-i", "127.0.0.1", "-p", str(port), "-m", "1",
            "-timeout", "20", "-nostdin", "-trace_err", cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(0.3)                     # sipp's socket is up before the first REGISTER
        try:
            async with running_server(tmp_path, sip=SipConfig(addr="127.0.0.1:0", accounts=(account,))) as (server, _):
                code = await asyncio.wait_for(sipp.wait(), 15)
                (registration,) = server.sip.registrations
                assert registration.state is RegistrationState.REGISTERED and registration.granted == 60
                return code
        finally:
            if sipp.returncode is None:
                sipp.kill()
                await sipp.wait()

    assert asyncio.run(run()) == 0
