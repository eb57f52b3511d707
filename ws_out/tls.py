"""TLS contexts for ``wss://`` consumers (RFC 6455 §11.1.2 over TLS 1.2+, RFC 8446 / RFC 5246).

Client side (the bridge toward its consumers), :func:`client_context`:

* certificate verification and host name checking (RFC 6125) are **on** by default, against
  the system trust store or a custom CA file (a private PKI);
* a client certificate and key for mutual TLS when the consumer requires one;
* ``verify=False`` turns verification off (testing only; it is logged as a warning).

Server side, :func:`server_context`, is for consumers written in Python (the reference consumer
``siprec_bridge.consumer`` and the tests): a certificate chain, and optionally a CA whose client
certificates are *required* (mTLS).

Build a context once per target at configuration time and share it between connections: loading
certificates costs milliseconds. Unusable files raise :exc:`ws_out.errors.ConfigurationError`
naming the file.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from ws_out.errors import ConfigurationError

__all__ = ["client_context", "server_context"]

logger = logging.getLogger(__name__)

_MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2


def _load_chain(
    context: ssl.SSLContext,
    cert_file: Path | str,
    key_file: Path | str | None,
    password: str | None,
) -> None:
    try:
        context.load_cert_chain(cert_file, key_file, password)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(
            f"cannot load certificate {cert_file} / key {key_file or cert_file}: {exc}"
        ) from None


def _load_ca(context: ssl.SSLContext, ca_file: Path | str) -> None:
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"cannot load CA file {ca_file}: {exc}") from None


def client_context(
    *,
    verify: bool = True,
    ca_file: Path | str | None = None,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """A client context for ``wss://`` targets: TLS 1.2 or later, verification on by default.

    ``ca_file`` (PEM) replaces the system trust store; ``cert_file``/``key_file`` (PEM; the key
    may be inside ``cert_file``) are presented to consumers that ask for a client certificate.
    """
    if key_file is not None and cert_file is None:
        raise ConfigurationError("key_file given without cert_file")
    # PROTOCOL_TLS_CLIENT: CERT_REQUIRED and check_hostname are on from the start.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        if ca_file is not None:  # trust only the configured CA, not the system store as well
            _load_ca(context, ca_file)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        if ca_file is not None:
            raise ConfigurationError("ca_file given with verify=False")
        logger.warning("TLS certificate verification toward consumers is OFF")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = _MINIMUM_VERSION
    if cert_file is not None:
        _load_chain(context, cert_file, key_file, key_password)
    return context


def server_context(
    cert_file: Path | str,
    key_file: Path | str | None = None,
    *,
    client_ca_file: Path | str | None = None,
    key_password: str | None = None,
) -> ssl.SSLContext:
    """A server context (TLS 1.2+); with ``client_ca_file`` a client certificate is required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _MINIMUM_VERSION
    _load_chain(context, cert_file, key_file, key_password)
    if client_ca_file is not None:
        _load_ca(context, client_ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
