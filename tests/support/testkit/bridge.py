"""Settings for a bridge under test: loopback, ephemeral SIP port, no metrics endpoint."""

from __future__ import annotations

from typing import Any

from siprec_bridge.settings import Settings, load_settings


def bridge_settings(ws_port: int, *, rtp_low: int, mode: str = "stereo", **extra: Any) -> Settings:
    """``extra`` maps dotted keys to values (``{"rtp.srtp": "require"}`` as ``rtp__srtp=...``)."""
    overrides: dict[str, Any] = {
        "sip.listen": "127.0.0.1:0",
        "rtp.ports": f"{rtp_low}-{rtp_low + 199}",
        "output.url": f"ws://127.0.0.1:{ws_port}/",
        "output.mode": mode,
        "metrics.enabled": False,
    }
    overrides.update({key.replace("__", "."): value for key, value in extra.items()})
    return load_settings(env={}, overrides=overrides)
