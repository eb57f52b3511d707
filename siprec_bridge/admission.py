"""Admission control for new SIP requests: who may send, how often, and whether there is room.

Sans-I/O: :meth:`Admission.screen` is the :data:`~siprec_bridge.sip.screen.Screen` hook of the
user agent — ``screen(request, source, now)`` returns ``None`` or a
:class:`~siprec_bridge.sip.screen.Refusal`, which the user agent answers statelessly so a
refused SRC holds no transaction, dialog, RTP port or WebSocket.  The checks, in order, with
the answer an SBC fails over on (403: RFC 3261 §21.4.4; 503 + Retry-After: §21.5.4, §20.33;
401: §22.2):

==========================  ===========================  ===================================
check                       applies to                   refusal (``cause``)
==========================  ===========================  ===================================
source allow-list (CIDRs)   every request                403, or dropped (``source-denied``)
draining                    every request                503 + Retry-After (``draining``)
per-source INVITE rate      INVITE                       503 + Retry-After (``rate-limited``)
``max_calls``               INVITE                       503 + Retry-After (``max-calls``)
digest authentication       INVITE                       401 / 403 (``auth-*``, see auth.py)
==========================  ===========================  ===================================

In-dialog requests (re-INVITE, UPDATE, BYE, in-dialog OPTIONS) are never screened: a running
call keeps working while the service drains.  The rate limit is a token bucket per source
address (RFC 2697 style: ``rate`` tokens per second, ``burst`` deep) with the clock passed in.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal

from .auth import DigestAuthenticator
from .sip.message import SipRequest, warning_header
from .sip.screen import Refusal
from .sip.transaction import Source

if TYPE_CHECKING:
    from .settings import Settings

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DenyAction = Literal["reject", "drop"]

__all__ = ["Admission", "AllowList", "DenyAction", "TokenBuckets", "admission_from_settings"]


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address of ``host`` (IPv4-mapped IPv6 unwrapped), None if not an address."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class AllowList:
    """Source address allow-list of CIDR networks; an empty list allows every source.

    Raises ``ValueError`` naming the bad entry for an unparsable network.
    """

    def __init__(self, networks: Iterable[str]) -> None:
        parsed: list[IPNetwork] = []
        for entry in networks:
            try:
                parsed.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP network: {exc}") from None
        self.networks: tuple[IPNetwork, ...] = tuple(parsed)

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        address = _address(host)
        if address is None:
            return False
        return any(address in network for network in self.networks)


class TokenBuckets:
    """One token bucket per key (source address); least recently used keys are evicted.

    ``take(key, now)`` spends one token and returns 0.0, or returns the seconds until a
    token is available (nothing spent).  At most ``max_keys`` buckets are kept: an evicted
    key starts again with a full bucket, which only errs on the side of admitting.
    """

    def __init__(self, rate: float, burst: int, *, max_keys: int = 10000) -> None:
        if rate <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("need rate > 0, burst >= 1 and max_keys >= 1")
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, time

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, key: str, now: float) -> float:
        entry = self._buckets.pop(key, None)
        if entry is None:
            tokens = float(self.burst)
        else:
            tokens = min(float(self.burst), entry[0] + max(0.0, now - entry[1]) * self.rate)
        if tokens >= 1.0:
            tokens -= 1.0
            wait = 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait


class Admission:
    """The admission screen of the SRS (see the module docstring for the order of checks).

    ``active_calls()`` returns the number of recording sessions in progress; set
    :attr:`draining` to True when the service starts draining.  ``counts`` tallies refusals
    by cause (the metrics module exports them).
    """

    def __init__(
        self,
        *,
        allow_sources: Sequence[str] = (),
        deny_action: DenyAction = "reject",
        invite_rate: float | None = None,
        invite_burst: int = 10,
        max_calls: int | None = None,
        active_calls: Callable[[], int] = lambda: 0,
        retry_after: int = 5,
        drain_retry_after: int = 30,
        authenticator: DigestAuthenticator | None = None,
        max_sources: int = 10000,
        agent: str = "siprec-bridge",
    ) -> None:
        self.allow = AllowList(allow_sources)
        self.deny_action: DenyAction = deny_action
        self.buckets = (
            TokenBuckets(invite_rate, invite_burst, max_keys=max_sources)
            if invite_rate is not None
            else None
        )
        self.max_calls = max_calls
        self._active_calls = active_calls
        self.retry_after = retry_after
        self.drain_retry_after = drain_retry_after
        self.authenticator = authenticator
        self.agent = agent
        self.draining = False
        self.counts: dict[str, int] = {}

    def screen(self, request: SipRequest, source: Source, now: float) -> Refusal | None:
        """The user agent's screen hook (``UserAgent(screen=admission.screen)``)."""
        refusal = self._check(request, source, now)
        if refusal is not None:
            self.counts[refusal.cause] = self.counts.get(refusal.cause, 0) + 1
        return refusal

    def _check(self, request: SipRequest, source: Source, now: float) -> Refusal | None:
        host = source.addr[0]
        if not self.allow.allows(host):
            if self.deny_action == "drop":
                return Refusal(None, "source-denied")
            return self._refusal(403, "source-denied", f"source {host} is not allowed")
        if self.draining:
            return self._busy("draining", "service is draining", self.drain_retry_after)
        if request.method != "INVITE":
            return None
        if self.buckets is not None:
            wait = self.buckets.take(host, now)
            if wait > 0:
                retry = max(1, math.ceil(wait))
                return self._busy("rate-limited", f"INVITE rate limit for {host}", retry)
        if self.max_calls is not None and self._active_calls() >= self.max_calls:
            return self._busy("max-calls", "too many calls", self.retry_after)
        if self.authenticator is not None:
            return self.authenticator.check(request, now)
        return None

    def _refusal(
        self, status: int, cause: str, warning: str, extra: Sequence[tuple[str, str]] = ()
    ) -> Refusal:
        headers = (*extra, ("Warning", warning_header(warning, self.agent)))
        return Refusal(status, cause, headers=headers)

    def _busy(self, cause: str, warning: str, retry_after: int) -> Refusal:
        return self._refusal(503, cause, warning, [("Retry-After", str(retry_after))])


def admission_from_settings(settings: Settings, active_calls: Callable[[], int]) -> Admission:
    """The :class:`Admission` that ``[limits]``, ``[drain]`` and ``[sip.auth]`` describe."""
    limits, auth = settings.limits, settings.sip.auth
    authenticator = None
    if auth.enabled:
        authenticator = DigestAuthenticator(
            auth.realm, auth.users, algorithms=auth.algorithms, nonce_ttl=auth.nonce_ttl_s
        )
    return Admission(
        allow_sources=limits.allow_sources,
        deny_action=limits.deny_action,
        invite_rate=limits.invite_rate or None,
        invite_burst=limits.invite_burst,
        max_calls=limits.max_calls,
        active_calls=active_calls,
        retry_after=limits.retry_after_s,
        drain_retry_after=settings.drain.retry_after_s,
        authenticator=authenticator,
        max_sources=limits.max_sources,
        agent=settings.advertise_host,
    )
