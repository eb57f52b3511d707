"""Settings: TOML + environment + overrides, validation errors that name the key, the example."""

from __future__ import annotations

import json
import ssl
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Union

import pytest
from pydantic import BaseModel
from testkit.certs import CertAuthority

from siprec_bridge.settings import (
    ENV_PREFIX,
    Settings,
    SettingsError,
    check_config,
    env_variables,
    load_settings,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "config.example.toml"


def problems(text: str, tmp_path: Path, env: dict[str, str] | None = None) -> list[str]:
    path = tmp_path / "bridge.toml"
    path.write_text(text)
    return check_config(path, env=env or {})


# -- defaults and derived values ------------------------------------------------------------


def test_defaults_are_valid_and_derived_values_follow_them() -> None:
    s = load_settings(env={})
    assert (s.sip_host, s.sip_port) == ("127.0.0.1", 5060)
    assert s.advertise_host == s.media_host == s.rtp_bind_host == "127.0.0.1"
    assert s.rtp_range == (40000, 40999)
    target = s.default_target()
    assert (target.url, target.dialect, target.mode, target.encoding) == (
        "ws://127.0.0.1:8765/",
        "native",
        "stereo",
        "L16",
    )


def test_wildcard_listen_advertises_loopback_unless_told() -> None:
    s = load_settings(env={}, overrides={"sip.listen": "0.0.0.0:5060"})
    assert s.advertise_host == "127.0.0.1" and s.rtp_bind_host == "0.0.0.0"
    s = load_settings(env={}, overrides={"sip.listen": "[::]:5060", "sip.advertise": "2001:db8::7"})
    assert (s.sip_host, s.advertise_host, s.media_host) == ("::", "2001:db8::7", "2001:db8::7")
    s = load_settings(env={}, overrides={"rtp.advertise": "198.51.100.8"})
    assert s.media_host == "198.51.100.8" and s.advertise_host == "127.0.0.1"


def test_route_targets_inherit_from_output(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[output]\nencoding = "PCMA"\nrate = 8000\nheaders = { "X-A" = "1" }\n'
        '[output.auth]\ntype = "bearer"\ntoken = "t"\n'
        '[[routes]]\nname = "r"\nsrtp = "require"\n'
        'targets = [{ url = "ws://a/", mode = "per-leg" }, { encoding = "L16", rate = 16000 }]\n'
    )
    s = load_settings(path, env={})
    first, second = (s.resolve(t) for t in s.routes[0].targets)
    assert (first.url, first.mode, first.encoding, first.headers) == (
        "ws://a/",
        "per-leg",
        "PCMA",
        {"X-A": "1"},
    )
    assert first.auth.token == "t"
    assert (second.url, second.encoding, second.rate) == (s.output.url, "L16", 16000)
    assert s.srtp_policy(s.routes[0]) == "require" and s.srtp_policy(None) == "allow"


# -- the annotated example ------------------------------------------------------------------


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation


def _model(annotation: Any) -> type[BaseModel] | None:
    inner = _unwrap(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def _all_keys(model: type[BaseModel], seen: set[tuple[str, str]]) -> None:
    for name, info in model.model_fields.items():
        if (model.__name__, name) in seen:
            continue
        seen.add((model.__name__, name))
        sub = _model(info.annotation)
        if sub is not None:
            _all_keys(sub, seen)


def _keys_in(model: type[BaseModel], value: Any, out: set[tuple[str, str]]) -> None:
    for item in value if isinstance(value, list) else [value]:
        for name, nested in item.items():
            out.add((model.__name__, name))
            sub = _model(model.model_fields[name].annotation)
            if sub is not None:
                _keys_in(sub, nested, out)


def test_example_is_valid_and_shows_every_key() -> None:
    s = load_settings(EXAMPLE, env={}, check_files=False)
    assert s.routes[0].targets[1].url == "ws://archive.internal:8765/"
    shown: set[tuple[str, str]] = set()
    _keys_in(Settings, tomllib.loads(EXAMPLE.read_text()), shown)
    schema: set[tuple[str, str]] = set()
    _all_keys(Settings, schema)
    assert schema - shown == set()


def test_example_fails_only_on_the_files_it_names() -> None:
    found = check_config(EXAMPLE, env={})
    assert found and all("is not a readable file" in p for p in found)
    assert any(p.startswith("output.tls.ca_file:") for p in found)


# -- environment ----------------------------------------------------------------------------


def test_environment_variable_names() -> None:
    names = env_variables()
    assert names["SIPREC_BRIDGE_SIP_LISTEN"] == ("sip", "listen")
    assert names["SIPREC_BRIDGE_SIP_TLS_CERT"] == ("sip", "tls", "cert")
    assert names["SIPREC_BRIDGE_LIMITS_MAX_CALLS"] == ("limits", "max_calls")
    assert names["SIPREC_BRIDGE_OUTPUT_AUTH_TOKEN"] == ("output", "auth", "token")
    assert names["SIPREC_BRIDGE_ROUTES"] == ("routes",)
    assert all(name.startswith(ENV_PREFIX) and name.isupper() for name in names)
    assert len(set(names.values())) == len(names)  # one variable per key, no collisions


def test_precedence_defaults_file_environment_overrides(tmp_path: Path) -> None:
    path = tmp_path / "bridge.toml"
    path.write_text('[limits]\nmax_calls = 10\ninvite_burst = 7\n[log]\nlevel = "debug"\n')
    env = {"SIPREC_BRIDGE_LIMITS_MAX_CALLS": "20", "SIPREC_BRIDGE_LOG_FORMAT": "json"}
    s = load_settings(path, env=env, overrides={"limits.max_calls": 30, "log.level": None})
    assert (s.limits.max_calls, s.limits.invite_burst) == (30, 7)
    assert (s.log.level, s.log.format) == ("debug", "json")
    assert load_settings(path, env=env).limits.max_calls == 20
    assert load_settings(env={"SIPREC_BRIDGE_CONFIG": str(path)}).limits.max_calls == 10


def test_environment_value_forms() -> None:
    env = {
        "SIPREC_BRIDGE_LIMITS_ALLOW_SOURCES": "10.0.0.0/8, 192.0.2.7",
        "SIPREC_BRIDGE_SIP_AUTH_ALGORITHMS": '["MD5"]',
        "SIPREC_BRIDGE_SIP_AUTH_USERS": '{"sbc": "pw"}',
        "SIPREC_BRIDGE_SIP_AUTH_ENABLED": "yes",
        "SIPREC_BRIDGE_SIP_ADVERTISE": "",
        "SIPREC_BRIDGE_MEDIA_TIMEOUT_S": "12.5",
        "SIPREC_BRIDGE_ROUTING_REJECT_STATUS": "404",
        "SIPREC_BRIDGE_ROUTES": json.dumps([{"name": "a", "targets": [{"url": "ws://x/"}]}]),
    }
    s = load_settings(env=env)
    assert s.limits.allow_sources == ["10.0.0.0/8", "192.0.2.7"]
    assert s.sip.auth.algorithms == ["MD5"] and s.sip.auth.users == {"sbc": "pw"}
    assert s.sip.auth.enabled and s.sip.advertise is None
    assert s.media.timeout_s == 12.5 and s.routing.reject_status == 404
    assert s.routes[0].targets[0].url == "ws://x/"


def test_environment_errors_name_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            env={
                "SIPREC_BRIDGE_SIP_LISTN": "x",
                "SIPREC_BRIDGE_LIMITS_MAX_CALLS": "many",
                "SIPREC_BRIDGE_ROUTES": "[{",
                "OTHER_VARIABLE": "ignored",
            }
        )
    assert info.value.problems == [
        "SIPREC_BRIDGE_SIP_LISTN: unknown environment variable"
        " (did you mean SIPREC_BRIDGE_SIP_LISTEN?)",
        "SIPREC_BRIDGE_ROUTES: expected JSON (Expecting property name enclosed in double"
        " quotes: line 1 column 3 (char 2))",
        "limits.max_calls: Input should be a valid integer, unable to parse string as an"
        " integer, got 'many' [from environment SIPREC_BRIDGE_LIMITS_MAX_CALLS]",
    ]


def test_unknown_override_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        load_settings(env={}, overrides={"sip.lisen": "x"})


# -- errors name the key --------------------------------------------------------------------


def test_file_errors_name_each_key(tmp_path: Path) -> None:
    found = problems(
        '[sip]\nlisten = "0.0.0.0:99999"\nudp = "maybe"\n[sip.tls]\nenabld = true\n'
        '[limits]\nallow_sources = ["10.0.0.0/8", "10.1.2.300"]\n'
        '[[routes]]\nname = "r"\ntargets = [{ url = "http://x/" }, { frame_ms = 15 }]\n'
        '[[routes]]\nname = "empty"\n',
        tmp_path,
    )
    assert found == [
        "sip.listen: port 99999 out of range 0-65535, got '0.0.0.0:99999'",
        "sip.udp: Input should be a valid boolean, unable to interpret input, got 'maybe'",
        "sip.tls.enabld: unknown key (did you mean 'enabled'?)",
        "limits.allow_sources[1]: '10.1.2.300' is not an IP network (CIDR): '10.1.2.300'"
        " does not appear to be an IPv4 or IPv6 network",
        "routes[0].targets[0].url: expected a ws:// or wss:// URL, got 'http://x/'",
        "routes[0].targets[1].frame_ms: expected a multiple of 10 from 10 to 200, got 15",
        "routes[1].targets: required key is missing",
    ]


def test_checks_across_keys(tmp_path: Path) -> None:
    found = problems(
        '[sip]\nudp = false\ntcp = false\nlisten = "127.0.0.1:5060"\n'
        "[sip.auth]\nenabled = true\n"
        '[output]\nencoding = "PCMU"\nrate = 16000\nreconnect_min_s = 20.0\n'
        '[output.auth]\ntype = "bearer"\n'
        '[[routes]]\nname = "x"\ntargets = [{ url = "ws://a/" }]\n'
        '[[routes]]\nname = "x"\n'
        'targets = [{ auth = { type = "jwt", algorithm = "RS256" }, tls = { cert = "c" } }]\n',
        tmp_path,
    )
    assert found == [
        "sip.udp: enable at least one of sip.udp, sip.tcp and sip.tls.enabled",
        "sip.auth.users: at least one user is required when auth is enabled",
        "output.reconnect_min_s: larger than output.reconnect_max_s",
        "output.rate: PCMU is 8000 Hz only, got 16000",
        "output.auth.token: required for auth type 'bearer'",
        "routes[1].name: duplicate route name 'x'",
        "routes[1].targets[0].auth.key_file: required for a RS256 JWT",
        "routes[1].targets[0].tls.cert: cert and key go together",
    ]


def test_tls_needs_certificate_and_key(tmp_path: Path) -> None:
    found = problems('[sip.tls]\nenabled = true\nlisten = "127.0.0.1:5060"\n', tmp_path)
    assert found == [
        "sip.tls.cert: required when sip.tls.enabled is true",
        "sip.tls.key: required when sip.tls.enabled is true",
        "sip.tls.listen: port 5060 is already the SIP TCP port",
    ]


def test_tls_files_are_loaded(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path / "pki")
    server = ca.issue("localhost")
    other = ca.issue("other")
    base = f'[sip.tls]\nenabled = true\ncert = "{server.cert}"\nclient_ca = "{ca.cert}"\n'
    assert problems(base + f'key = "{server.key}"\n', tmp_path) == []
    context = load_settings(tmp_path / "bridge.toml", env={}).tls_context()
    assert context is not None and context.verify_mode is ssl.CERT_REQUIRED
    assert load_settings(env={}).tls_context() is None
    (mismatch,) = problems(base + f'key = "{other.key}"\n', tmp_path)
    assert mismatch.startswith("sip.tls.cert: cannot load the certificate/key:")
    missing = tmp_path / "nope.key"
    assert problems(base + f'key = "{missing}"\n', tmp_path) == [
        f"sip.tls.key: {missing} is not a readable file"
    ]


def test_unreadable_or_invalid_files(tmp_path: Path) -> None:
    assert check_config(tmp_path / "absent.toml", env={}) == [
        f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory"
    ]
    (error,) = problems("[sip\n", tmp_path)
    assert error.startswith(f"{tmp_path / 'bridge.toml'}: not valid TOML:")
    (error,) = problems("x = 1\n" + "#" * (1 << 20), tmp_path)
    assert "exceeds" in error


def test_errors_from_flags_say_so() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(env={}, overrides={"sip.listen": "nowhere"})
    assert info.value.problems == [
        "sip.listen: expected HOST:PORT, got 'nowhere' [from the command line]"
    ]
