"""stunnel4 as a TLS client in front of SIPp (Debian's SIPp is built without TLS)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from pathlib import Path

from .certs import Issued
from .sipp import free_port

STUNNEL = shutil.which("stunnel4") or shutil.which("stunnel")


async def start_stunnel(
    folder: Path, ca_cert: Path, client: Issued, tls_port: int, *, guard: float = 15.0
) -> tuple[asyncio.subprocess.Process, int]:
    """Listen on a free 127.0.0.1 port and forward over mutual TLS to ``tls_port``; return the
    process and the port SIPp should send to, once stunnel's listener is up."""
    assert STUNNEL is not None, "stunnel4 not installed (apt install stunnel4)"
    accept = free_port(socket.SOCK_STREAM)
    conf = folder / "stunnel.conf"
    conf.write_text(
        "foreground = yes\npid =\ndebug = 5\nsyslog = no\n"
        "[sip]\nclient = yes\n"
        f"accept = 127.0.0.1:{accept}\nconnect = 127.0.0.1:{tls_port}\n"
        f"CAfile = {ca_cert}\nverifyChain = yes\ncheckHost = localhost\n"
        f"cert = {client.cert}\nkey = {client.key}\nsslVersionMin = TLSv1.2\n"
    )
    proc = await asyncio.create_subprocess_exec(
        STUNNEL, str(conf), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    assert proc.stdout is not None
    seen = []
    while True:  # wait for its listener
        line = await asyncio.wait_for(proc.stdout.readline(), guard)
        seen.append(line.decode(errors="replace"))
        if not line:
            raise AssertionError("stunnel exited:\n" + "".join(seen))
        if b"Configuration successful" in line:
            return proc, accept
