from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from testkit.certs import CertAuthority
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from ws_out import (
    ConfigurationError,
    ConsumerAuth,
    DeliveryPolicy,
    JwtOptions,
    WsSender,
    client_context,
    server_context,
)

pytestmark = pytest.mark.integration

WAIT = 10.0
SECRET = "0123456789abcdef0123456789abcdef-test"
CALL_ID = "a84b4c76e66710@pc33.example.com"
SESSION_ID = "3f2b8c1e-9d4a-4e5b-8f6c-7a1d2e3f4a5b"
QUICK = DeliveryPolicy(
    buffer_s=2.0, ping_interval_s=None, reconnect_initial_s=0.01, reconnect_max_s=0.05
)


# -- throwaway PKI -------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_pki(directory: Path, name: str = "test-ca") -> Pki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca = CertAuthority(directory, name)
    server = ca.issue("localhost")
    client = ca.issue("client", server=False)
    return Pki(ca.cert, server.cert, server.key, client.cert, client.key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


# -- a consumer that checks the handshake --------------------------------------------------


@dataclass
class Gate:
    """A websockets server on 127.0.0.1 that runs ``check`` on every handshake (401 on error)."""

    check: Callable[[Request], Any] = lambda request: None
    ssl_context: ssl.SSLContext | None = None
    close_after: int | None = None  # close with 1001 after that many messages (first connection)
    accepted: list[Any] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    messages: list[str | bytes] = field(default_factory=list)
    server: Server | None = None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        try:
            self.accepted.append(self.check(request))
        except Exception as exc:
            self.rejected.append(str(exc))
            return connection.respond(HTTPStatus.UNAUTHORIZED, "no\n")
        return None

    async def handler(self, ws: ServerConnection) -> None:
        count = 0
        async for message in ws:
            self.messages.append(message)
            count += 1
            if self.close_after is not None and count >= self.close_after:
                self.close_after = None
                await ws.close(1001)

    async def start(self) -> str:
        self.server = await serve(
            self.handler,
            "127.0.0.1",
            0,
            process_request=self.process_request,
            ssl=self.ssl_context,
            close_timeout=0.5,
        )
        port = self.server.sockets[0].getsockname()[1]
        return f"{'wss' if self.ssl_context else 'ws'}://127.0.0.1:{port}/calls"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


@pytest.fixture
async def gates() -> AsyncIterator[list[Gate]]:
    made: list[Gate] = []
    yield made
    for gate in made:
        await gate.close()


async def deliver(url: str, timeout: float = 2.0, **options: Any) -> WsSender:
    """One short stream: opening, two frames, stop; closed within ``timeout``."""
    sender = WsSender(url, policy=QUICK, **options)
    sender.send_open("start")
    sender.start()
    sender.send_frame(b"\x00\x01")
    sender.send_frame(b"\x00\x02")
    sender.send_event("stop")
    await asyncio.wait_for(sender.close(timeout=timeout), WAIT)
    return sender


def bearer(request: Request) -> str:
    scheme, _, token = request.headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    return token


# -- tests ---------------------------------------------------------------------------------


async def test_hs256_jwt_per_session_is_verified_by_the_consumer(gates: list[Gate]) -> None:
    def check(request: Request) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            bearer(request), SECRET, algorithms=["HS256"], audience="consumer", issuer="bridge-1"
        )
        return claims

    gate = Gate(check)
    gates.append(gate)
    url = await gate.start()
    auth = ConsumerAuth(
        jwt=JwtOptions("HS256", SECRET, ttl_s=120, issuer="bridge-1", audience="consumer"),
        headers={"X-Tenant": "acme"},
    )
    sender = await deliver(url, auth=auth.bind(call_id=CALL_ID, session_id=SESSION_ID))
    assert gate.messages == ["start", b"\x00\x01", b"\x00\x02", "stop"]
    [claims] = gate.accepted
    assert (claims["call_id"], claims["session_id"]) == (CALL_ID, SESSION_ID)
    assert claims["exp"] - claims["iat"] == 120
    assert len(claims["jti"]) == 32
    assert sender.stats.connect_failures == 0


async def test_rs256_jwt_is_signed_afresh_on_every_reconnect(
    gates: list[Gate], rsa_pem: bytes, tmp_path: Path
) -> None:
    public = serialization.load_pem_private_key(rsa_pem, None).public_key()
    tokens: list[str] = []

    def check(request: Request) -> dict[str, Any]:
        token = bearer(request)
        tokens.append(token)
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        claims: dict[str, Any] = jwt.decode(token, public, algorithms=["RS256"])  # type: ignore[arg-type]
        return claims

    gate = Gate(check, close_after=1)  # the consumer restarts after the opening
    gates.append(gate)
    url = await gate.start()
    key_file = tmp_path / "jwt.pem"
    key_file.write_bytes(rsa_pem)
    auth = ConsumerAuth(
        jwt=JwtOptions("RS256", key_file, key_id="k1", extra_claims={"tenant": "acme"})
    )
    sender = WsSender(url, policy=QUICK, auth=auth.bind(call_id=CALL_ID, session_id=SESSION_ID))
    sender.send_open("start")
    sender.start()

    async def reconnected() -> None:
        while len(tokens) < 2:
            await asyncio.sleep(0.005)

    await asyncio.wait_for(reconnected(), WAIT)
    sender.send_frame(b"\x00\x01")
    sender.send_event("stop")
    await asyncio.wait_for(sender.close(), WAIT)
    assert sender.stats.reconnects == 1
    assert tokens[0] != tokens[1]
    assert [c["tenant"] for c in gate.accepted] == ["acme", "acme"]
    assert len({c["jti"] for c in gate.accepted}) == 2
    assert gate.messages == ["start", "start", b"\x00\x01", "stop"]


async def test_a_wrong_key_is_rejected_and_counted(gates: list[Gate]) -> None:
    def check(request: Request) -> None:
        jwt.decode(bearer(request), SECRET, algorithms=["HS256"])

    gate = Gate(check)
    gates.append(gate)
    url = await gate.start()
    auth = ConsumerAuth(jwt=JwtOptions("HS256", "another secret of 32 bytes or more!!"))
    sender = await deliver(url, 0.3, auth=auth.bind(call_id=CALL_ID, session_id=SESSION_ID))
    assert gate.messages == [] and gate.rejected
    assert "Signature verification failed" in gate.rejected[0]
    assert sender.stats.connect_failures == len(gate.rejected)
    assert (sender.stats.dropped_frames, sender.stats.dropped_events) == (2, 1)


async def test_bearer_token_and_static_headers(gates: list[Gate]) -> None:
    gate = Gate(lambda request: (bearer(request), request.headers["X-Api-Key"]))
    gates.append(gate)
    url = await gate.start()
    auth = ConsumerAuth(bearer_token="t0ken", headers={"X-Api-Key": "k"})
    await deliver(url, auth=auth.bind(call_id=CALL_ID, session_id=SESSION_ID))
    assert gate.accepted == [("t0ken", "k")]
    assert gate.messages[0] == "start"


def test_weak_or_unusable_settings_are_configuration_errors(rsa_pem: bytes, tmp_path: Path) -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    small_pem = small_rsa.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    bad: list[dict[str, Any]] = [
        {"jwt": JwtOptions("HS256", "short")},
        {"jwt": JwtOptions("RS256", small_pem)},
        {"jwt": JwtOptions("RS256", ec_pem)},
        {"jwt": JwtOptions("RS256", b"not a pem")},
        {"jwt": JwtOptions("RS256", tmp_path / "missing.pem")},
        {"jwt": JwtOptions("HS256", SECRET, ttl_s=0)},
        {"jwt": JwtOptions("HS256", SECRET, extra_claims={"exp": 1})},
        {"jwt": JwtOptions("ES256", SECRET)},  # type: ignore[arg-type]
        {"jwt": JwtOptions("HS256", SECRET), "bearer_token": "t"},
        {"headers": {"X-Bad": "a\r\nInjected: yes"}},
        {"headers": {"Bad Name": "v"}},
    ]
    for options in bad:
        with pytest.raises(ConfigurationError):
            ConsumerAuth(**options)
    headers = ConsumerAuth(jwt=JwtOptions("RS256", rsa_pem.decode(), header="X-Token", scheme=""))
    token = headers.bind(call_id="c", session_id="s").headers()["X-Token"]
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    ticks = iter([1000.0])
    fixed = ConsumerAuth(
        jwt=JwtOptions("HS256", SECRET.encode(), ttl_s=60), clock=lambda: next(ticks)
    )
    claims = jwt.decode(
        bearer_value(fixed.bind(call_id="c", session_id="s").headers()),
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert (claims["iat"], claims["exp"]) == (1000, 1060)


def bearer_value(headers: dict[str, str]) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


async def test_wss_with_a_custom_ca(gates: list[Gate], pki: Pki) -> None:
    gate = Gate(ssl_context=server_context(pki.server_cert, pki.server_key))
    gates.append(gate)
    url = await gate.start()
    assert url.startswith("wss://")
    await deliver(url, ssl=client_context(ca_file=pki.ca))
    assert gate.messages == ["start", b"\x00\x01", b"\x00\x02", "stop"]
    # Verification is on by default: the system store does not know our CA.
    refused = await deliver(url, 0.3)
    assert refused.stats.connect_failures >= 1 and refused.stats.sent_frames == 0
    # Another CA does not vouch for this server either.
    other = make_pki(pki.ca.parent / "other", "other-ca")
    refused = await deliver(url, 0.3, ssl=client_context(ca_file=other.ca))
    assert refused.stats.connect_failures >= 1 and refused.stats.sent_frames == 0
    assert len(gate.messages) == 4


async def test_mtls_required_by_the_consumer(gates: list[Gate], pki: Pki) -> None:
    context = server_context(pki.server_cert, pki.server_key, client_ca_file=pki.ca)
    gate = Gate(ssl_context=context)
    gates.append(gate)
    url = await gate.start()
    without = await deliver(url, 0.3, ssl=client_context(ca_file=pki.ca))
    assert without.stats.sent_frames == 0 and without.stats.connect_failures >= 1
    assert gate.messages == []
    with_cert = await deliver(
        url,
        ssl=client_context(ca_file=pki.ca, cert_file=pki.client_cert, key_file=pki.client_key),
    )
    assert with_cert.stats.sent_frames == 2
    assert gate.messages == ["start", b"\x00\x01", b"\x00\x02", "stop"]


async def test_verification_can_be_turned_off_for_tests(
    gates: list[Gate], pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    gate = Gate(ssl_context=server_context(pki.server_cert, pki.server_key))
    gates.append(gate)
    url = await gate.start()
    with caplog.at_level(logging.WARNING, "ws_out.tls"):
        context = client_context(verify=False)
    assert "verification" in caplog.text and "OFF" in caplog.text
    sender = await deliver(url, ssl=context)
    assert sender.stats.sent_frames == 2


def test_tls_configuration_errors(pki: Pki, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    makers: list[Callable[[], ssl.SSLContext]] = [
        lambda: client_context(ca_file=missing),
        lambda: client_context(ca_file=garbage),
        lambda: client_context(key_file=pki.client_key),
        lambda: client_context(verify=False, ca_file=pki.ca),
        lambda: client_context(cert_file=pki.client_cert, key_file=pki.server_key),
        lambda: server_context(missing),
        lambda: server_context(pki.server_cert, pki.server_key, client_ca_file=garbage),
    ]
    for make in makers:
        with pytest.raises(ConfigurationError):
            make()
    context = client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
