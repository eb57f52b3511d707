"""Routing rules: first matching route wins, fan-out to every target, defaults inherited."""

from __future__ import annotations

from typing import Any

import pytest

from siprec_bridge.routing import RouteDecision, RouteRejection, route_call
from siprec_bridge.settings import Settings, load_settings
from siprec_bridge.sip.message import Headers, SipRequest
from siprec_bridge.siprec.metadata import Participant, RecordingMetadata

ROUTES: list[dict[str, Any]] = [
    {
        "name": "sales",
        "srtp": "require",
        "match": {"request_user": "^rec-sales", "headers": {"X-Tenant": "^acme$"}},
        "targets": [
            {"url": "wss://stt.example.com/a", "dialect": "twilio", "mode": "mixed"},
            {"url": "ws://archive.example.com/"},
        ],
    },
    {
        "name": "vip",
        "match": {"metadata": {"ucid": "^00FA", "participant_aor": "@vip\\.example\\.com$"}},
        "targets": [{"url": "ws://vip.example.com/"}],
    },
    {"name": "bob", "match": {"from_uri": "^sip:bob@"}, "targets": [{"dialect": "voxology"}]},
]


def settings(unmatched: str = "output") -> Settings:
    return load_settings(
        env={},
        overrides={
            "routes": ROUTES,
            "routing.unmatched": unmatched,
            "output.url": "ws://default.example.com/",
            "output.mode": "per-leg",
        },
    )


def invite(
    uri: str, *, headers: dict[str, str] | None = None, from_: str = "<sip:sbc@x>"
) -> SipRequest:
    h = Headers()
    h.add("From", f"{from_};tag=1")
    h.add("To", "<sip:srs@y>")
    for name, value in (headers or {}).items():
        h.add(name, value)
    return SipRequest("INVITE", uri, h, b"")


def metadata(*aors: str) -> RecordingMetadata:
    return RecordingMetadata(
        datamode="complete",
        dialect="rfc7865",
        participants=[Participant(f"p{i}", aor) for i, aor in enumerate(aors)],
    )


def test_first_matching_route_fans_out_with_inherited_defaults() -> None:
    decision = route_call(
        settings(), invite("sip:rec-sales-1@srs", headers={"X-Tenant": "acme"}), None, {}
    )
    assert isinstance(decision, RouteDecision)
    assert decision.name == "sales" and decision.srtp == "require"
    first, second = decision.targets
    assert (first.url, first.dialect, first.mode) == ("wss://stt.example.com/a", "twilio", "mixed")
    assert (second.url, second.dialect, second.mode) == (
        "ws://archive.example.com/",
        "native",
        "per-leg",
    )


def test_every_condition_of_a_route_must_match() -> None:
    decision = route_call(
        settings(), invite("sip:rec-sales-1@srs", headers={"X-Tenant": "other"}), None, {}
    )
    assert isinstance(decision, RouteDecision) and decision.name is None


def test_metadata_values_and_participant_aors() -> None:
    md = metadata("sip:alice@example.com", "sip:ceo@vip.example.com")
    decision = route_call(settings(), invite("sip:srs@srs"), md, {"ucid": "00FA080019"})
    assert isinstance(decision, RouteDecision) and decision.name == "vip"
    miss = route_call(settings(), invite("sip:srs@srs"), metadata("sip:a@b"), {"ucid": "00FA0800"})
    assert isinstance(miss, RouteDecision) and miss.name is None


def test_from_uri_and_unmatched_default_or_reject() -> None:
    bob = route_call(settings(), invite("sip:srs@srs", from_='"Bob" <sip:bob@pbx>'), None, {})
    assert isinstance(bob, RouteDecision) and bob.targets[0].dialect == "voxology"
    default = route_call(settings(), invite("sip:srs@srs"), None, {})
    assert isinstance(default, RouteDecision)
    assert default.targets[0].url == "ws://default.example.com/"
    rejected = route_call(settings("reject"), invite("sip:srs@srs"), None, {})
    assert rejected == RouteRejection(480, "no route matches this call")


@pytest.mark.parametrize("status", [404, 480])
def test_reject_status_is_configurable(status: int) -> None:
    s = load_settings(
        env={},
        overrides={
            "routes": ROUTES,
            "routing.unmatched": "reject",
            "routing.reject_status": status,
        },
    )
    rejected = route_call(s, invite("sip:nobody@srs"), None, {})
    assert isinstance(rejected, RouteRejection) and rejected.status == status
