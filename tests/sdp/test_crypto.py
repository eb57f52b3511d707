"""sdp.crypto: the a=crypto attribute of SDP security descriptions (RFC 4568 §9.1)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

import sdp
from sdp.crypto import (
    MAX_CRYPTO_SIZE,
    SUITES,
    Crypto,
    KeyParams,
    format_crypto,
    new_crypto,
    parse_crypto,
)

# RFC 4568 §9.1 / §6.1 example key (30 octets).
KEY = "PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"
KEY_BYTES = base64.b64decode(KEY)


def test_rfc_4568_example() -> None:
    value = f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^20|1:4"
    crypto = parse_crypto(value)
    assert crypto == Crypto(1, "AES_CM_128_HMAC_SHA1_80", (KeyParams(KEY_BYTES, 1 << 20, 1, 4),))
    assert crypto.key.key_b64 == KEY
    assert format_crypto(crypto) == value == str(crypto)


def test_several_keys_and_session_parameters() -> None:
    other = base64.b64encode(bytes(range(30))).decode()
    value = (
        f"123456789 AES_CM_128_HMAC_SHA1_32 inline:{KEY}|2^20|1:4;inline:{other}|2^20|2:4 "
        "KDR=1 UNENCRYPTED_SRTCP"
    )
    crypto = parse_crypto(value)
    assert crypto.tag == 123456789
    assert [k.mki for k in crypto.keys] == [1, 2]
    assert crypto.keys[1].key_salt == bytes(range(30))
    assert crypto.session_params == ("KDR=1", "UNENCRYPTED_SRTCP")
    assert format_crypto(crypto) == value


@pytest.mark.parametrize(
    ("suffix", "lifetime", "mki", "mki_length"),
    [
        ("", None, None, 0),
        ("|2^31", 1 << 31, None, 0),
        ("|1048576", 1 << 20, None, 0),
        ("|3000", 3000, None, 0),
        ("|7:1", None, 7, 1),
        ("|2^48|65536:3", 1 << 48, 65536, 3),
    ],
)
def test_lifetime_and_mki(
    suffix: str, lifetime: int | None, mki: int | None, mki_length: int
) -> None:
    key = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}{suffix}").key
    assert (key.lifetime, key.mki, key.mki_length) == (lifetime, mki, mki_length)
    assert parse_crypto(str(Crypto(1, "AES_CM_128_HMAC_SHA1_80", (key,)))).key == key


def test_unknown_suite_parses_without_length_check() -> None:
    crypto = parse_crypto("5 SEED_CTR_128_HMAC_SHA1_80 inline:AAAA")
    assert crypto.suite == "SEED_CTR_128_HMAC_SHA1_80" and crypto.key.key_salt == bytes(3)


def test_gcm_key_without_padding() -> None:
    key = base64.b64encode(bytes(range(28))).decode()
    assert key.endswith("=")
    crypto = parse_crypto(f"1 AEAD_AES_128_GCM inline:{key.rstrip('=')}")
    assert crypto.key.key_salt == bytes(range(28))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "bad a=crypto tag"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{KEY}", "bad a=crypto tag"),
        (f"1 AES-CM inline:{KEY}", "bad crypto suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{KEY}", "key method"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:@@@@", "not base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:", "bad inline key length"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "needs 30"),
        (f"1 AEAD_AES_128_GCM inline:{KEY}", "needs 28"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^x", "bad key lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|2^65", "out of range"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:0", "does not fit"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:129", "does not fit"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|256:1", "does not fit"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|a:1", "bad MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1:1|2^20", "bad inline key field"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}|1|2|3", "too many"),
        ("1 AES_CM_128_HMAC_SHA1_80 " + ";".join([f"inline:{KEY}"] * 17), "too many"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{KEY}" + " WSH=64" * 17, "too many"),
        ("1 X inline:" + "A" * MAX_CRYPTO_SIZE, "longer than"),
    ],
)
def test_invalid(value: str, message: str) -> None:
    with pytest.raises(sdp.SdpError, match=message):
        parse_crypto(value)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_new_crypto_for_every_suite(suite: str) -> None:
    spec = SUITES[suite]
    crypto = new_crypto(3, suite, lambda n: bytes(range(n)), ("KDR=0",))
    assert crypto.tag == 3 and crypto.suite == suite and crypto.session_params == ("KDR=0",)
    assert crypto.key.key_salt == bytes(range(spec.key_length + spec.salt_length))
    assert crypto.key.lifetime is None and crypto.key.mki is None
    assert parse_crypto(str(crypto)) == crypto


def test_new_crypto_errors() -> None:
    with pytest.raises(sdp.SdpError, match="unknown crypto suite"):
        new_crypto(1, "NULL_HMAC_SHA1_80", bytes)
    with pytest.raises(sdp.SdpError, match="wrong number"):
        new_crypto(1, "AES_CM_128_HMAC_SHA1_80", lambda n: bytes(n - 1))


def test_media_cryptos_skip_malformed_lines() -> None:
    offer = sdp.parse(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nm=audio 4000 RTP/SAVP 0\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:short\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:{KEY}\r\n"
        "a=crypto\r\n"
    )
    assert [c.tag for c in offer.media[0].cryptos()] == [2]


@given(st.text(max_size=200))
def test_fuzz_raises_only_sdp_error(value: str) -> None:
    try:
        crypto = parse_crypto(value)
    except sdp.SdpError:
        return
    assert parse_crypto(format_crypto(crypto)).suite == crypto.suite


@given(
    st.integers(0, 999_999_999),
    st.sampled_from(sorted(SUITES)),
    st.none() | st.integers(1, 1 << 64),
    st.none() | st.tuples(st.integers(1, 128), st.integers(0, 1 << 64)),
)
def test_round_trip(
    tag: int, suite: str, lifetime: int | None, mki: tuple[int, int] | None
) -> None:
    spec = SUITES[suite]
    mki_length, mki_value = mki if mki is not None else (0, None)
    if mki_value is not None:
        mki_value %= 1 << (8 * mki_length)
    key = KeyParams(bytes(spec.key_length + spec.salt_length), lifetime, mki_value, mki_length)
    crypto = Crypto(tag, suite, (key,))
    assert parse_crypto(format_crypto(crypto)) == crypto
