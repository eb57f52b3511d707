"""Digest authentication (RFC 3261 §22, RFC 8760, RFC 7616): vectors, challenges, verification."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from siprec_bridge.auth import (
    ALGORITHMS,
    Algorithm,
    AuthHeaderError,
    DigestAuthenticator,
    digest_response,
    parse_authorization,
)
from siprec_bridge.sip.message import SipRequest, parse_message

VECTORS = sorted((Path(__file__).parent / "vectors" / "digest").glob("*.json"))
REALM = "srs.example"
URI = "sip:srs@192.0.2.10;transport=tcp"


def invite(*authorization: str) -> SipRequest:
    lines = [
        f"INVITE {URI} SIP/2.0",
        "Via: SIP/2.0/TCP 192.0.2.5:5060;branch=z9hG4bK-1",
        "From: <sip:src@example.com>;tag=a",
        "To: <sip:srs@example.com>",
        "Call-ID: auth-1",
        "CSeq: 2 INVITE",
        *(f"Authorization: {value}" for value in authorization),
        "Content-Length: 0",
    ]
    request = parse_message("\r\n".join(lines).encode() + b"\r\n\r\n")
    assert isinstance(request, SipRequest)
    return request


def challenge_params(value: str) -> dict[str, str]:
    params = parse_authorization(value)
    assert params is not None
    return params


def credentials(
    challenge: str,
    *,
    username: str = "sbc",
    password: str = "s3cret",
    nc: int = 1,
    qop: str | None = "auth",
    cnonce: str = "0a4f113b",
) -> str:
    """What a UAC answers to ``challenge`` (RFC 7616 §3.4)."""
    c = challenge_params(challenge)
    algorithm: Algorithm = c["algorithm"]  # type: ignore[assignment]
    nc_text = f"{nc:08x}"
    response = digest_response(
        algorithm,
        username=username,
        realm=c["realm"],
        password=password,
        method="INVITE",
        uri=URI,
        nonce=c["nonce"],
        qop=qop,
        nc=nc_text if qop else None,
        cnonce=cnonce,
    )
    parts = [
        f'username="{username}"',
        f'realm="{c["realm"]}"',
        f'nonce="{c["nonce"]}"',
        f'uri="{URI}"',
        f'response="{response}"',
        f"algorithm={algorithm}",
        f'cnonce="{cnonce}"',
    ]
    if qop:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)


@pytest.fixture
def auth() -> DigestAuthenticator:
    return DigestAuthenticator(REALM, {"sbc": "s3cret"}, algorithms=["SHA-256", "MD5"])


# -- vectors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VECTORS, ids=[p.stem for p in VECTORS])
def test_digest_response_vectors(path: Path) -> None:
    v: dict[str, Any] = json.loads(path.read_text())
    assert v["algorithm"] in ALGORITHMS
    response = digest_response(
        v["algorithm"],
        username=v["username"],
        realm=v["realm"],
        password=v["password"],
        method=v["method"],
        uri=v["uri"],
        nonce=v["nonce"],
        qop=v["qop"],
        nc=v["nc"],
        cnonce=v["cnonce"],
    )
    assert response == v["response"]


def test_parse_authorization() -> None:
    value = (
        'Digest username="Mufasa",\trealm="http-auth@example.org", uri="/dir/index.html",'
        ' algorithm=SHA-256, nc=00000001, qop=auth, opaque="a,b \\"c\\""'
    )
    params = parse_authorization(value)
    assert params == {
        "username": "Mufasa",
        "realm": "http-auth@example.org",
        "uri": "/dir/index.html",
        "algorithm": "SHA-256",
        "nc": "00000001",
        "qop": "auth",
        "opaque": 'a,b "c"',
    }
    assert parse_authorization('Bearer abc="x"') is None
    for bad in ('Digest username="x", username="y"', 'Digest username="x', "Digest =x"):
        with pytest.raises(AuthHeaderError):
            parse_authorization(bad)
    with pytest.raises(AuthHeaderError, match="longer"):
        parse_authorization("Digest " + "a=b, " * 1000)


@given(st.text(max_size=300))
def test_parse_authorization_raises_only_its_error(value: str) -> None:
    try:
        params = parse_authorization("Digest " + value)
    except AuthHeaderError:
        return
    assert params is not None
    assert all(name == name.lower() and isinstance(v, str) for name, v in params.items())


# -- challenge and check ---------------------------------------------------------------------


def test_challenge_lists_each_algorithm_in_order_of_preference(auth: DigestAuthenticator) -> None:
    refusal = auth.check(invite(), now=100.0)
    assert refusal is not None and refusal.status == 401 and refusal.cause == "auth-challenge"
    names = [name for name, _ in refusal.headers]
    assert names == ["WWW-Authenticate", "WWW-Authenticate"]
    params = [challenge_params(value) for _, value in refusal.headers]
    assert [p["algorithm"] for p in params] == ["SHA-256", "MD5"]
    assert {p["realm"] for p in params} == {REALM} and {p["qop"] for p in params} == {"auth"}
    assert "stale" not in params[0]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_algorithm_authenticates(algorithm: Algorithm) -> None:
    auth = DigestAuthenticator(REALM, {"sbc": "s3cret"}, algorithms=[algorithm])
    refusal = auth.check(invite(), 0.0)
    assert refusal is not None
    (_, challenge), *_ = refusal.headers
    assert auth.check(invite(credentials(challenge)), 1.0) is None


def test_wrong_password_and_unknown_user_are_forbidden(auth: DigestAuthenticator) -> None:
    refusal = auth.check(invite(), 0.0)
    assert refusal is not None
    challenge = refusal.headers[0][1]
    for user, password in (("sbc", "guess"), ("mallory", "s3cret")):
        refused = auth.check(invite(credentials(challenge, username=user, password=password)), 1.0)
        assert refused is not None and (refused.status, refused.cause) == (403, "auth-failed")
    assert auth.check(invite(credentials(challenge)), 1.0) is None


def test_nonce_counts_must_grow(auth: DigestAuthenticator) -> None:
    refusal = auth.check(invite(), 0.0)
    assert refusal is not None
    challenge = refusal.headers[0][1]
    assert auth.check(invite(credentials(challenge, nc=1)), 1.0) is None
    replay = auth.check(invite(credentials(challenge, nc=1)), 2.0)
    assert replay is not None and (replay.status, replay.cause) == (401, "auth-stale")
    assert challenge_params(replay.headers[0][1])["stale"] == "true"
    assert auth.check(invite(credentials(challenge, nc=2)), 3.0) is None


def test_rfc2069_response_without_qop_is_good_once(auth: DigestAuthenticator) -> None:
    refusal = auth.check(invite(), 0.0)
    assert refusal is not None
    challenge = refusal.headers[1][1]  # MD5
    assert auth.check(invite(credentials(challenge, qop=None)), 1.0) is None
    again = auth.check(invite(credentials(challenge, qop=None)), 2.0)
    assert again is not None and again.cause == "auth-stale"


def test_expired_nonce_is_stale(auth: DigestAuthenticator) -> None:
    refusal = auth.check(invite(), 0.0)
    assert refusal is not None
    challenge = refusal.headers[0][1]
    late = auth.check(invite(credentials(challenge)), auth.nonce_ttl + 1.0)
    assert late is not None and (late.status, late.cause) == (401, "auth-stale")


def test_nonces_of_another_instance_or_tampered_are_rechallenged(
    auth: DigestAuthenticator,
) -> None:
    other = DigestAuthenticator(REALM, {"sbc": "s3cret"})
    refusal = other.check(invite(), 0.0)
    assert refusal is not None
    foreign = auth.check(invite(credentials(refusal.headers[0][1])), 1.0)
    assert foreign is not None and foreign.cause == "auth-challenge"
    mine = auth.check(invite(), 0.0)
    assert mine is not None
    challenge = mine.headers[0][1]
    nonce = challenge_params(challenge)["nonce"]
    issued, salt, mac = nonce.split(".")
    forged = challenge.replace(nonce, f"{int(issued) + 999999}.{salt}.{mac}")
    refused = auth.check(invite(credentials(forged)), 1.0)
    assert refused is not None and refused.cause == "auth-challenge"


def test_algorithm_not_offered_or_other_realm_is_rechallenged() -> None:
    auth = DigestAuthenticator(REALM, {"sbc": "s3cret"}, algorithms=["SHA-256"])
    offered = auth.check(invite(), 0.0)
    assert offered is not None
    md5 = offered.headers[0][1].replace("algorithm=SHA-256", "algorithm=MD5")
    refused = auth.check(invite(credentials(md5)), 1.0)
    assert refused is not None and refused.cause == "auth-challenge"
    other_realm = offered.headers[0][1].replace(REALM, "elsewhere")
    refused = auth.check(invite(credentials(other_realm)), 1.0)
    assert refused is not None and refused.cause == "auth-challenge"


def test_malformed_credentials_get_400(auth: DigestAuthenticator) -> None:
    for value in ('Digest username="sbc', f'Digest realm="{REALM}", username="sbc"'):
        refused = auth.check(invite(value), 0.0)
        assert refused is not None and (refused.status, refused.cause) == (400, "auth-malformed")


def test_configuration_errors() -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, {}, algorithms=[])
    with pytest.raises(ValueError):
        DigestAuthenticator(REALM, {}, algorithms=["SHA-1"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        DigestAuthenticator('a"b', {})
