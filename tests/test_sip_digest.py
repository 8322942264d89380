"""pbx.sip.digest: Digest authentication against the published worked examples, challenge parsing, the choice
among several challenges (RFC 8760 §2.4), stateless nonces and server-side verification."""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from typing import Any

import pytest

from pbx.sip import digest
from pbx.sip.digest import (
    AuthResult,
    Challenge,
    Credentials,
    DigestError,
    DigestParseError,
    DigestResponse,
    DigestUsageError,
    NonceIssuer,
    NonceStatus,
    UnsupportedChallenge,
    authorization,
    best_challenge,
    challenges,
    digest_response,
    verify,
)
from pbx.sip.errors import SipError, SipParseError


def raises(kind: type[BaseException], message: str) -> Any:
    """pytest.raises for exactly ``message``."""
    return pytest.raises(kind, match="^" + re.escape(message) + "$")


# -- published examples -----------------------------------------------------------------------------------------
# RFC 7616 §3.9.1 "Example with SHA-256 and MD5": https://www.rfc-editor.org/rfc/rfc7616#section-3.9.1
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_CHALLENGE = ('Digest\n    realm="http-auth@example.org",\n    qop="auth, auth-int",\n'
                     '    algorithm={alg},\n    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\n'
                     '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"')
MUFASA = Credentials("Mufasa", "Circle of Life")


@pytest.mark.parametrize(("algorithm", "response"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_example(algorithm: str, response: str) -> None:
    challenge = Challenge.parse(RFC7616_CHALLENGE.format(alg=algorithm))
    assert challenge == Challenge("http-auth@example.org", RFC7616_NONCE, algorithm, ("auth", "auth-int"),
                                  RFC7616_OPAQUE)
    value = authorization(challenge, "GET", "/dir/index.html", MUFASA, RFC7616_CNONCE, 1)
    assert value == (
        f'Digest username="Mufasa", realm="http-auth@example.org", nonce="{RFC7616_NONCE}", '
        f'uri="/dir/index.html", response="{response}", algorithm={algorithm}, cnonce="{RFC7616_CNONCE}", '
        f'opaque="{RFC7616_OPAQUE}", qop=auth, nc=00000001')
    # the RFC's own Authorization header field parses to the same credentials
    rfc_value = (f'Digest username="Mufasa",\n realm="http-auth@example.org",\n uri="/dir/index.html",\n'
                 f' algorithm={algorithm},\n nonce="{RFC7616_NONCE}",\n nc=00000001,\n'
                 f' cnonce="{RFC7616_CNONCE}",\n qop=auth,\n response="{response}",\n opaque="{RFC7616_OPAQUE}"')
    assert DigestResponse.parse(rfc_value) == DigestResponse.parse(value)


def test_rfc7616_sha512_256_example_with_errata_4897() -> None:
    # RFC 7616 §3.9.2 printed values from a draft SHA-512/256; the verified erratum gives the right ones:
    # https://www.rfc-editor.org/errata/eid4897 (username hash 793263ca..., response 3798d413...)
    name = "J\u00e4s\u00f8n Doe"
    assert hashlib.new("sha512_256", f"{name}:api@example.org".encode()).hexdigest() == (
        "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b")
    challenge = Challenge.parse('Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
                                'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
                                'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true')
    value = authorization(challenge, "GET", "/doe.json", Credentials(name, "Secret, or not?"),
                          "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v", 1)
    assert DigestResponse.parse(value).response == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"


def test_rfc2617_example() -> None:
    # RFC 2617 §3.5: https://www.rfc-editor.org/rfc/rfc2617#section-3.5
    challenge = Challenge.parse('Digest\n                 realm="testrealm@host.com",\n'
                                '                 qop="auth,auth-int",\n'
                                '                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\n'
                                '                 opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = authorization(challenge, "GET", "/dir/index.html", Credentials("Mufasa", "Circle Of Life"),
                          "0a4f113b", 1)
    assert value == ('Digest username="Mufasa", realm="testrealm@host.com", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
                     'response="6629fae49393a05397450978507c4ef1", cnonce="0a4f113b", '
                     'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001')


def test_rfc2069_example_without_qop() -> None:
    # RFC 2069 §2.4: https://www.rfc-editor.org/rfc/rfc2069#section-2.4 (no qop: no cnonce, no nc)
    challenge = Challenge.parse('Digest    realm="testrealm@host.com",\n'
                                '          nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",\n'
                                '          opaque="5ccc069c403ebaf9f0171e9517f40e41"')
    value = authorization(challenge, "GET", "/dir/index.html", Credentials("Mufasa", "CircleOfLife"), "ignored", 7)
    assert value == ('Digest username="Mufasa", realm="testrealm@host.com", '
                     'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", '
                     'response="1949323746fe6a43ef61f9606e7febea", opaque="5ccc069c403ebaf9f0171e9517f40e41"')


# SIP examples: draft-smith-sipping-auth-examples-01 §3.1, §3.2
# https://datatracker.ietf.org/doc/html/draft-smith-sipping-auth-examples-01
SMITH_CHALLENGE = 'Digest realm="biloxi.com", {qop}nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", ' \
                  'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
BOB = Credentials("bob", "zanzibar")


@pytest.mark.parametrize(("qop", "expected"), [
    ("", 'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
         'uri="sip:bob@biloxi.com", response="bf57e4e0d0bffc0fbaedce64d59add5e", '
         'opaque="5ccc069c403ebaf9f0171e9517f40e41"'),
    ('qop="auth,auth-int", ',
     'Digest username="bob", realm="biloxi.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
     'uri="sip:bob@biloxi.com", response="89eb0059246c02b2f6ee02c7961d5ea3", cnonce="0a4f113b", '
     'opaque="5ccc069c403ebaf9f0171e9517f40e41", qop=auth, nc=00000001'),
])
def test_sip_invite_examples(qop: str, expected: str) -> None:
    challenge = Challenge.parse(SMITH_CHALLENGE.format(qop=qop))
    assert authorization(challenge, "INVITE", "sip:bob@biloxi.com", BOB, "0a4f113b", 1) == expected


def _reference(hash_name: str, *parts: str) -> str:
    return hashlib.new(hash_name, ":".join(parts).encode()).hexdigest()


@pytest.mark.parametrize(("algorithm", "hash_name"), [
    ("MD5-sess", "md5"), ("SHA-256-sess", "sha256"), ("SHA-512-256", "sha512_256"),
    ("SHA-512-256-sess", "sha512_256"),
])
def test_other_algorithms_follow_rfc7616_section_3_4(algorithm: str, hash_name: str) -> None:
    # the formulas of RFC 7616 §3.4.1 and §3.4.2, written out here independently of the module
    challenge = Challenge("biloxi.com", "n0nce", algorithm, ("auth",))
    value = DigestResponse.parse(authorization(challenge, "REGISTER", "sip:biloxi.com", BOB, "c1", 3))
    ha1 = _reference(hash_name, "bob", "biloxi.com", "zanzibar")
    if algorithm.endswith("-sess"):
        ha1 = _reference(hash_name, ha1, "n0nce", "c1")
    ha2 = _reference(hash_name, "REGISTER", "sip:biloxi.com")
    assert value.response == _reference(hash_name, ha1, "n0nce", "00000003", "c1", "auth", ha2)
    assert value.algorithm == algorithm


def test_auth_int_hashes_the_body() -> None:
    challenge = Challenge("biloxi.com", "n0nce", None, ("auth-int",))
    body = b"v=0\r\no=bob 2890844526 2890844526 IN IP4 host.biloxi.com\r\n"
    value = DigestResponse.parse(authorization(challenge, "INVITE", "sip:bob@biloxi.com", BOB, "0a4f113b", 1, body))
    ha1 = _reference("md5", "bob", "biloxi.com", "zanzibar")
    ha2 = _reference("md5", "INVITE", "sip:bob@biloxi.com", hashlib.md5(body).hexdigest())
    assert value.qop == "auth-int"
    assert value.response == _reference("md5", ha1, "n0nce", "00000001", "0a4f113b", "auth-int", ha2)
    empty = DigestResponse.parse(authorization(challenge, "INVITE", "sip:bob@biloxi.com", BOB, "0a4f113b", 1))
    assert empty.response != value.response


def test_nonce_count_is_eight_hex_digits() -> None:
    challenge = Challenge("r", "n", None, ("auth",))
    assert authorization(challenge, "BYE", "sip:x", BOB, "c", 0x1F).endswith("qop=auth, nc=0000001f")
    assert authorization(challenge, "BYE", "sip:x", BOB, "c", 0xFFFFFFFF).endswith("nc=ffffffff")


def test_quotes_and_backslashes_are_escaped_and_read_back() -> None:
    challenge = Challenge.parse(r'Digest realm="a \"quoted\" realm\\", nonce="n"')
    assert challenge.realm == 'a "quoted" realm\\'
    assert Challenge.parse(str(challenge)) == challenge
    value = authorization(challenge, "INVITE", "sip:x", Credentials('a"b', "pw"), "c", 1)
    assert 'username="a\\"b"' in value
    assert DigestResponse.parse(value).username == 'a"b'


# -- parsing challenges ---------------------------------------------------------------------------------------------
def test_challenge_parse_is_tolerant() -> None:
    value = ('  dIgEsT  REALM = "sip.example.com" ,, nonce=abc/def+ghi= ,qop = " auth , auth-int ,",'
             ' Algorithm=sha-256 , Stale=TRUE, domain="sip:example.com", opaque="", foo=bar,')
    assert Challenge.parse(value) == Challenge("sip.example.com", "abc/def+ghi=", "SHA-256", ("auth", "auth-int"),
                                               "", True, "sip:example.com")


@pytest.mark.parametrize(("stale", "expected"), [("true", True), ('"TRUE"', True), ("false", False),
                                                 ("FALSE", False), ("yes", False)])
def test_stale_is_true_only_when_it_says_true(stale: str, expected: bool) -> None:
    assert Challenge.parse(f'Digest realm="r", nonce="n", stale={stale}').stale is expected


def test_challenge_without_algorithm_means_md5_and_is_written_without_one() -> None:
    challenge = Challenge.parse('Digest realm="r", nonce="n"')
    assert challenge.algorithm is None
    assert challenge.hash_algorithm == "MD5"
    assert str(challenge) == 'Digest realm="r", nonce="n"'
    assert "algorithm" not in authorization(challenge, "INVITE", "sip:x", BOB, "c", 1)


def test_challenge_str_round_trips() -> None:
    challenge = Challenge("r", "n", "SHA-256", ("auth",), "op", True, "sip:d")
    assert str(challenge) == ('Digest realm="r", domain="sip:d", nonce="n", opaque="op", stale=true, '
                              'algorithm=SHA-256, qop="auth"')
    assert Challenge.parse(str(challenge)) == challenge


def test_unknown_algorithm_is_kept_as_sent() -> None:
    challenge = Challenge.parse('Digest realm="r", nonce="n", algorithm=AKAv1-MD5')
    assert challenge.algorithm == "AKAv1-MD5"
    assert not challenge.supported
    with raises(UnsupportedChallenge, "unsupported digest algorithm 'AKAv1-MD5'"):
        authorization(challenge, "REGISTER", "sip:x", BOB, "c", 1)


@pytest.mark.parametrize(("value", "message"), [
    ('Digest nonce="n"', "challenge: no realm"),
    ('Digest realm="r"', "challenge: no nonce"),
    ('Digest realm="r", nonce=""', "challenge: no nonce"),
    ('Digest realm="r", nonce="n", algorithm=""', "challenge: empty algorithm"),
    ('Digest realm="r, nonce="n"', "challenge: expected ',' after parameter 'realm', got 'n\"'"),
    ('Digest realm="r", nonce="n', "challenge: unterminated quoted string in parameter 'nonce'"),
    ('Digest realm', "challenge: parameter 'realm' has no value"),
    ('Digest realm=', "challenge: parameter 'realm' has no value"),
    ('Digest realm="r" nonce="n"', "challenge: expected ',' after parameter 'realm', got 'nonce=\"n\"'"),
    ('Digest realm="r", realm="s", nonce="n"', "challenge: duplicate parameter 'realm'"),
    ('Digest realm="r", =x', "challenge: bad parameter at '=x'"),
    ("", "challenge: no authentication scheme in ''"),
    ('"Digest" realm="r"', "challenge: no authentication scheme in '\"Digest\" realm=\"r\"'"),
    ('Digest,realm="r"', "challenge: bad authentication scheme in 'Digest,realm=\"r\"'"),
])
def test_challenge_parse_errors(value: str, message: str) -> None:
    with pytest.raises(DigestParseError) as caught:
        Challenge.parse(value)
    assert str(caught.value) == message
    assert caught.value.status == 400


def test_challenge_bounds() -> None:
    many = ", ".join(f"p{i}=v" for i in range(digest.MAX_PARAMS + 1))
    with raises(DigestParseError, f"challenge: more than {digest.MAX_PARAMS} parameters"):
        Challenge.parse(f'Digest realm="r", {many}')
    long = 'Digest realm="r", nonce="' + "n" * digest.MAX_HEADER_LENGTH + '"'
    with raises(DigestParseError, f"challenge: {len(long)} characters, over the limit of 4096"):
        Challenge.parse(long)


def test_other_schemes_are_unsupported_not_garbage() -> None:
    with raises(UnsupportedChallenge, "unsupported authentication scheme 'Basic'"):
        Challenge.parse('Basic realm="r"')


def test_error_hierarchy() -> None:
    assert issubclass(DigestParseError, DigestError) and issubclass(DigestParseError, SipParseError)
    assert issubclass(DigestParseError, ValueError)
    for cls in (UnsupportedChallenge, DigestUsageError):
        assert issubclass(cls, DigestError) and issubclass(cls, ValueError)
        assert not issubclass(cls, SipParseError)
    assert issubclass(DigestError, SipError)


def test_mutated_challenges_raise_only_the_documented_errors() -> None:
    rng = random.Random(8760)
    seeds = [RFC7616_CHALLENGE.format(alg="SHA-256"), SMITH_CHALLENGE.format(qop='qop="auth", '),
             str(Challenge("r", "n", "MD5-sess", ("auth",), "o", True))]
    alphabet = '"\\,= \t\r\nabcDigest-/'
    for _ in range(3000):
        text = list(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(text))
            action = rng.randrange(3)
            if action == 0:
                del text[i]
            elif action == 1:
                text.insert(i, rng.choice(alphabet))
            else:
                text[i] = rng.choice(alphabet)
        value = "".join(text)
        try:
            challenge = Challenge.parse(value)
        except (DigestParseError, UnsupportedChallenge):
            continue
        assert Challenge.parse(str(challenge)) == challenge
        if challenge.supported:
            authorization(challenge, "INVITE", "sip:x", BOB, "c", 1)


# -- choosing among several challenges (RFC 8760 §2.4) -------------------------------------------------------------
def _c(algorithm: str | None, realm: str = "r", qop: tuple[str, ...] = ("auth",)) -> Challenge:
    return Challenge(realm, "n-" + str(algorithm), algorithm, qop)


def test_best_challenge_prefers_the_strongest_algorithm() -> None:
    md5, sha256, sha512 = _c("MD5"), _c("SHA-256"), _c("SHA-512-256")
    assert best_challenge([md5, sha256]) is sha256
    assert best_challenge([sha256, md5]) is sha256
    assert best_challenge([md5, sha512, sha256]) is sha512
    assert best_challenge([_c(None)]) == _c(None)


def test_best_challenge_takes_the_topmost_among_equals() -> None:
    first, second = _c("SHA-256", "one"), _c("SHA-256-sess", "two")
    assert best_challenge([first, second]) is first
    assert best_challenge([second, first]) is second


def test_best_challenge_skips_what_it_cannot_answer() -> None:
    unknown, no_qop = _c("AKAv1-MD5"), _c("SHA-256", qop=("auth-conf",))
    assert best_challenge([unknown, no_qop]) is None
    assert best_challenge([unknown, no_qop, _c("MD5")]) == _c("MD5")
    assert best_challenge([]) is None


def test_best_challenge_allowed_algorithms_and_realm() -> None:
    md5, sha256 = _c("MD5", "a"), _c("SHA-256", "b")
    assert best_challenge([md5], allowed=("SHA-256", "SHA-512-256")) is None
    assert best_challenge([md5, sha256], realm="a") is md5
    assert best_challenge([md5, sha256], realm="c") is None


def test_best_challenge_reads_header_values_and_passes_over_garbage() -> None:
    values = ['Basic realm="r"', "Digest garbage", 'Digest realm="r", nonce="1", algorithm=MD5',
              'Digest realm="r", nonce="2", algorithm=SHA-256, qop="auth"']
    best = best_challenge(values)
    assert best is not None and best.nonce == "2"


# -- client-side errors ------------------------------------------------------------------------------------------
def test_authorization_usage_errors() -> None:
    challenge = Challenge("r", "n", "MD5", ("auth",))
    with raises(DigestUsageError, "the credentials are for realm 'other', the challenge is from 'r'"):
        authorization(challenge, "INVITE", "sip:x", Credentials("u", "p", "other"), "c", 1)
    assert authorization(challenge, "INVITE", "sip:x", Credentials("u", "p", "r"), "c", 1)
    with raises(DigestUsageError, "nonce count must be 1 to 4294967295, got 0"):
        authorization(challenge, "INVITE", "sip:x", BOB, "c", 0)
    with raises(DigestUsageError, "nonce count must be 1 to 4294967295, got 4294967296"):
        authorization(challenge, "INVITE", "sip:x", BOB, "c", 2**32)
    with raises(DigestUsageError, "bad cnonce ''"):
        authorization(challenge, "INVITE", "sip:x", BOB, "", 1)
    with raises(DigestUsageError, "the username has a control character: 'a\\r\\nb'"):
        authorization(challenge, "INVITE", "sip:x", Credentials("a\r\nb", "p"), "c", 1)
    with raises(DigestUsageError, "bad method 'IN VITE'"):
        authorization(challenge, "IN VITE", "sip:x", BOB, "c", 1)
    with raises(UnsupportedChallenge, "unsupported qop 'auth-conf' (we do auth and auth-int)"):
        authorization(Challenge("r", "n", None, ("auth-conf",)), "INVITE", "sip:x", BOB, "c", 1)


def test_credentials_repr_hides_the_password() -> None:
    assert repr(Credentials("bob", "zanzibar")) == "Credentials(username='bob', password='***', realm=None)"


def test_digest_response_needs_a_cnonce_for_sess() -> None:
    with raises(DigestUsageError, "qop None and algorithm MD5-sess need a cnonce"):
        digest_response("MD5-sess", "u", "r", "p", "n", "INVITE", "sip:x")


# -- nonces ------------------------------------------------------------------------------------------------------
SECRET = b"0123456789abcdef-secret"


def _issuer(secret: bytes = SECRET) -> NonceIssuer:
    return NonceIssuer(secret, random=lambda n: bytes(range(n)))


def test_nonce_issue_and_check() -> None:
    issuer = _issuer()
    nonce = issuer.issue(1000.0)
    assert len(nonce) == 43 and nonce == issuer.issue(1000.0)        # deterministic with this random source
    assert issuer.check(nonce, 1000.0, 30) is NonceStatus.VALID
    assert issuer.check(nonce, 1030.0, 30) is NonceStatus.VALID
    assert issuer.check(nonce, 1030.001, 30) is NonceStatus.STALE
    assert issuer.check(nonce, 990.0, 30) is NonceStatus.VALID        # a clock a little behind
    assert issuer.check(nonce, 969.0, 30) is NonceStatus.INVALID      # far in the future


def test_nonce_is_bound_to_secret_context_and_content() -> None:
    issuer = _issuer()
    nonce = issuer.issue(5.0, b"realm-a")
    assert issuer.check(nonce, 5.0, 30, b"realm-a") is NonceStatus.VALID
    assert issuer.check(nonce, 5.0, 30, b"realm-b") is NonceStatus.INVALID
    assert _issuer(b"another secret of 16+ bytes").check(nonce, 5.0, 30, b"realm-a") is NonceStatus.INVALID
    for i in range(len(nonce)):
        tampered = nonce[:i] + ("A" if nonce[i] != "A" else "B") + nonce[i + 1:]
        assert issuer.check(tampered, 5.0, 30, b"realm-a") is NonceStatus.INVALID
    for garbage in ("", "short", nonce + "A", nonce[:-1] + "!", "dcd98b7102dd2f0e8b11d0f600bfb0c093"):
        assert issuer.check(garbage, 5.0, 30) is NonceStatus.INVALID


def test_nonces_differ_with_the_default_random_source() -> None:
    issuer = NonceIssuer(SECRET)
    assert issuer.issue(1.0) != issuer.issue(1.0)


def test_nonce_issuer_usage_errors() -> None:
    with raises(DigestUsageError, "the nonce secret must have at least 16 bytes, got 5"):
        NonceIssuer(b"short")
    with raises(DigestUsageError, "bad time -1.0"):
        _issuer().issue(-1.0)
    with raises(DigestUsageError, "bad time nan"):
        _issuer().issue(float("nan"))


def test_challenges_in_order_of_preference() -> None:
    values = [str(c) for c in challenges("pbx.example", "N", opaque="o")]
    assert values == ['Digest realm="pbx.example", nonce="N", opaque="o", algorithm=SHA-256, qop="auth"',
                      'Digest realm="pbx.example", nonce="N", opaque="o", algorithm=MD5, qop="auth"']
    stale = challenges("r", "N", algorithms=["sha-512-256"], stale=True)
    assert [str(c) for c in stale] == ['Digest realm="r", nonce="N", stale=true, algorithm=SHA-512-256, qop="auth"']
    with raises(DigestUsageError, "unsupported digest algorithm 'SHA-1'"):
        challenges("r", "N", algorithms=["SHA-1"])
    with raises(DigestUsageError, "no algorithm to challenge with"):
        challenges("r", "N", algorithms=[])


# -- verifying -------------------------------------------------------------------------------------------------
USERS = {"alice": "wonderland", "bob": "zanzibar"}


def _lookup(user: str, realm: str) -> str | None:
    assert realm == "pbx.example"
    return USERS.get(user)


def _answer(issuer: NonceIssuer, now: float, creds: Credentials, *, algorithm: str = "SHA-256",
            qop: tuple[str, ...] = ("auth",), method: str = "REGISTER", uri: str = "sip:pbx.example",
            body: bytes = b"", nc: int = 1) -> str:
    challenge = Challenge("pbx.example", issuer.issue(now), algorithm, qop)
    return authorization(challenge, method, uri, creds, "cn", nc, body)


def _verify(value: str, now: float, issuer: NonceIssuer, *, method: str = "REGISTER", body: bytes = b"",
            request_uri: str | None = None, algorithms: tuple[str, ...] = digest.ALGORITHMS) -> digest.Verification:
    return verify(value, method, _lookup, realm="pbx.example", issuer=issuer, now=now, max_age=60, body=body,
                  request_uri=request_uri, algorithms=algorithms)


@pytest.mark.parametrize("algorithm", digest.ALGORITHMS)
@pytest.mark.parametrize("qop", [("auth",), ("auth-int",), ()])
def test_verify_accepts_what_authorization_computes(algorithm: str, qop: tuple[str, ...]) -> None:
    issuer = _issuer()
    value = _answer(issuer, 100.0, Credentials("alice", "wonderland"), algorithm=algorithm, qop=qop, body=b"xyz")
    result = _verify(value, 130.0, issuer, body=b"xyz")
    assert result.result is AuthResult.OK
    assert result.username == "alice" and result.credentials.qop == (qop[0] if qop else None)


def test_verify_rejections() -> None:
    issuer = _issuer()
    good = _answer(issuer, 100.0, Credentials("alice", "wonderland"))
    wrong = _answer(issuer, 100.0, Credentials("alice", "looking-glass"))
    unknown = _answer(issuer, 100.0, Credentials("mallory", "x"))
    md5 = _answer(issuer, 100.0, Credentials("alice", "wonderland"), algorithm="MD5")
    assert (_verify(wrong, 100.0, issuer).result, _verify(wrong, 100.0, issuer).reason) == (
        AuthResult.REJECTED, "wrong response")
    assert _verify(unknown, 100.0, issuer).reason == "unknown user 'mallory'"
    assert _verify(md5, 100.0, issuer, algorithms=("SHA-256",)).reason == "algorithm 'MD5' is not accepted"
    assert _verify(good, 100.0, issuer, method="INVITE").reason == "wrong response"
    assert _verify(good, 100.0, _issuer(b"x" * 16)).reason == "the nonce is not ours"
    other_realm = good.replace('realm="pbx.example"', 'realm="elsewhere"')
    assert _verify(other_realm, 100.0, issuer).reason == "realm 'elsewhere' is not ours"
    conf = good.replace("qop=auth", "qop=auth-conf")
    assert _verify(conf, 100.0, issuer).reason == "qop 'auth-conf' is not supported"
    body = _answer(issuer, 100.0, Credentials("alice", "wonderland"), qop=("auth-int",), body=b"a")
    assert _verify(body, 100.0, issuer, body=b"b").reason == "wrong response"


def test_verify_stale_only_with_the_right_password() -> None:
    issuer = _issuer()
    good = _answer(issuer, 100.0, Credentials("alice", "wonderland"))
    wrong = _answer(issuer, 100.0, Credentials("alice", "nope"))
    stale = _verify(good, 161.0, issuer)
    assert (stale.result, stale.reason) == (AuthResult.STALE, "the nonce is stale")
    assert _verify(wrong, 161.0, issuer).result is AuthResult.REJECTED


def test_verify_request_uri_and_garbage() -> None:
    issuer = _issuer()
    good = _answer(issuer, 100.0, Credentials("bob", "zanzibar"), uri="sip:pbx.example")
    assert _verify(good, 100.0, issuer, request_uri="sip:pbx.example").result is AuthResult.OK
    with raises(DigestParseError, "credentials: uri 'sip:pbx.example' is not the Request-URI 'sip:other.example'"):
        _verify(good, 100.0, issuer, request_uri="sip:other.example")
    with raises(DigestParseError, "credentials: no response"):
        _verify('Digest username="bob", realm="pbx.example", nonce="n", uri="sip:x"', 100.0, issuer)


def test_verify_compares_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("pbx.sip.digest.hmac.compare_digest", spy)
    issuer = _issuer()
    value = _answer(issuer, 100.0, Credentials("alice", "wonderland"))
    assert _verify(value, 100.0, issuer).result is AuthResult.OK
    response = DigestResponse.parse(value).response
    assert any(given == response for _, given in calls)


@pytest.mark.parametrize(("value", "message"), [
    ('Basic dXNlcjpwYXNz', "credentials: unsupported authentication scheme 'Basic'"),
    ('Digest username="u", realm="r", nonce="n", uri="sip:x", response="xyz"',
     "credentials: response is not 32 hex digits: 'xyz'"),
    ('Digest username="u", realm="r", nonce="n", uri="sip:x", algorithm=SHA-256, '
     'response="8ca523f5e9506fed4657c9700eebdbec"',
     "credentials: response is not 64 hex digits: '8ca523f5e9506fed4657c9700eebdbec'"),
    ('Digest username="u", realm="r", nonce="n", uri="sip:x", response="8ca523f5e9506fed4657c9700eebdbec", '
     'qop=auth, cnonce="c"', "credentials: qop auth needs nc as 8 hex digits from 00000001, got None"),
    ('Digest username="u", realm="r", nonce="n", uri="sip:x", response="8ca523f5e9506fed4657c9700eebdbec", '
     'qop=auth, nc=00000000, cnonce="c"',
     "credentials: qop auth needs nc as 8 hex digits from 00000001, got '00000000'"),
    ('Digest username="u", realm="r", nonce="n", uri="sip:x", response="8ca523f5e9506fed4657c9700eebdbec", '
     'qop=auth, nc=00000001', "credentials: qop auth needs a cnonce"),
])
def test_credentials_parse_errors(value: str, message: str) -> None:
    with pytest.raises(DigestParseError) as caught:
        DigestResponse.parse(value)
    assert str(caught.value) == message


def test_credentials_round_trip_and_unknown_algorithm() -> None:
    value = ('Digest username="u", realm="pbx.example", nonce="n", uri="sip:x", response="ABCDEF", '
             'algorithm=AKAv1-MD5, cnonce="c", opaque="o", qop=AUTH, nc=0000000a')
    parsed = DigestResponse.parse(value)
    assert parsed == DigestResponse("u", "pbx.example", "n", "sip:x", "abcdef", "AKAv1-MD5", "c", "o", "auth", 10)
    assert DigestResponse.parse(str(parsed)) == parsed
    issuer = _issuer()
    assert _verify(value, 1.0, issuer).reason == "algorithm 'AKAv1-MD5' is not accepted"
