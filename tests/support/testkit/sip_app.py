"""A minimal application on a real ``SipServer``: records events, accepts every INVITE."""

from __future__ import annotations

import asyncio
import ssl

from siprec_bridge.admission import Admission
from siprec_bridge.sip.events import Event, InviteReceived
from siprec_bridge.sip.transport import SipServer
from siprec_bridge.sip.ua import UserAgent

SDP = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


class SipApp:
    """Answers every INVITE with 200 + ``SDP`` from the callback; ``wait_for`` an event kind."""

    def __init__(self, admission: Admission | None = None, *, guard: float = 5.0) -> None:
        screen = admission.screen if admission is not None else None
        self.ua = UserAgent(local_host="127.0.0.1", local_port=0, screen=screen)
        self.server = SipServer(self.ua, self.on_events)
        self.events: list[Event] = []
        self.changed = asyncio.Event()
        self.guard = guard  # seconds; only a guard against hangs, nothing is timed

    def on_events(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, InviteReceived):
                self.ua.respond(event, 200, body=SDP, content_type="application/sdp")
        self.events.extend(events)
        self.changed.set()

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        """UDP and TCP on an ephemeral port (and TLS on another when ``tls`` is given)."""
        await self.server.start("127.0.0.1", 0)
        self.ua.local_port = self.server.port
        if tls is not None:
            await self.server.start_tls("127.0.0.1", 0, tls)

    async def wait_for(self, kind: type[Event]) -> Event:
        async def poll() -> Event:
            while True:
                for event in self.events:
                    if isinstance(event, kind):
                        return event
                self.changed.clear()
                await self.changed.wait()

        return await asyncio.wait_for(poll(), self.guard)
