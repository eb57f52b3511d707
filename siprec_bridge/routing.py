"""Which consumers a recording session goes to (``[[routes]]`` in the configuration).

Routes are tried in order; the first whose every condition matches wins and the call goes to
each of its targets at once (fan-out), each with its own dialect, mode, format, headers and
credentials. Conditions are regular expressions (``re.search``) on:

- ``request_user``: the user part of the INVITE's Request-URI (``rec-sales`` in
  ``sip:rec-sales@srs.example.com``);
- ``from_uri`` / ``to_uri``: the URI of the From / To header;
- ``headers``: any SIP header of the INVITE, by name (case-insensitive);
- ``metadata``: recording metadata values, by name: the session's correlation ids
  (``ucid``, ``cisco_guid``, ``session_id``, …, see ``docs/protocol.md``), any metadata extension
  element by local name (e.g. ``callingParty``), ``group_id``, and ``participant_aor`` (matches
  when any participant's AoR matches).

No route matching: the ``[output]`` target (``routing.unmatched = "output"``) or a rejection
with ``routing.reject_status`` (404 or 480).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from sdp.answer import SrtpPolicy

from .settings import ResolvedTarget, Route, RouteMatch, Settings
from .sip.errors import SipParseError
from .sip.message import SipRequest, parse_name_addr
from .siprec.metadata import RecordingMetadata


@dataclass(frozen=True)
class RouteDecision:
    """Where a session goes: ``name`` of the route (``None``: the default output)."""

    name: str | None
    targets: tuple[ResolvedTarget, ...]
    srtp: SrtpPolicy


@dataclass(frozen=True)
class RouteRejection:
    status: int
    reason: str


def route_call(
    settings: Settings,
    request: SipRequest,
    metadata: RecordingMetadata | None,
    correlation: Mapping[str, str],
) -> RouteDecision | RouteRejection:
    """The first matching route's targets, else the default (or a rejection)."""
    values = _metadata_values(metadata, correlation)
    for route in settings.routes:
        if _matches(route.match, request, values, metadata):
            return _decision(settings, route)
    if settings.routes and settings.routing.unmatched == "reject":
        return RouteRejection(settings.routing.reject_status, "no route matches this call")
    return RouteDecision(None, (settings.default_target(),), settings.srtp_policy(None))


def _decision(settings: Settings, route: Route) -> RouteDecision:
    targets = tuple(settings.resolve(target) for target in route.targets)
    return RouteDecision(route.name, targets, settings.srtp_policy(route))


def _matches(
    match: RouteMatch,
    request: SipRequest,
    values: Mapping[str, str],
    metadata: RecordingMetadata | None,
) -> bool:
    checks: list[tuple[str | None, str | None]] = [
        (match.request_user, _user_of(request.uri)),
        (match.from_uri, _uri_of(request.headers.get("From"))),
        (match.to_uri, _uri_of(request.headers.get("To"))),
    ]
    checks += [(pattern, request.headers.get(name)) for name, pattern in match.headers.items()]
    for key, regex in match.metadata.items():
        if key == "participant_aor":
            aors = [p.aor for p in metadata.participants if p.aor] if metadata else []
            if not any(re.search(regex, aor) for aor in aors):
                return False
            continue
        checks.append((regex, values.get(key.lower())))
    return all(
        pattern is None or (value is not None and re.search(pattern, value) is not None)
        for pattern, value in checks
    )


def _metadata_values(
    metadata: RecordingMetadata | None, correlation: Mapping[str, str]
) -> dict[str, str]:
    values = {key.lower(): value for key, value in correlation.items()}
    if metadata is not None:
        for key, value in metadata.extensions.items():
            values.setdefault(key.lower(), value)
        for info in metadata.sessions:
            if info.group_id:
                values.setdefault("group_id", info.group_id)
    return values


def _uri_of(header: str | None) -> str | None:
    if header is None:
        return None
    try:
        return parse_name_addr(header).uri
    except SipParseError:
        return header


def _user_of(uri: str) -> str:
    """``sip:user@host;params`` → ``user`` (RFC 3261 §19.1.1); no user part → ``""``."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    user, at, _ = rest.partition("@")
    return user.split(";", 1)[0] if at else ""
