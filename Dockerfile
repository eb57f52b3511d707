# siprec-bridge image: the bridge, the demo consumer and the replayer are the same image.
# (No Docker engine runs on the development machines: this file is kept correct by reading,
# and CI validates docker-compose.yml with `docker-compose config`.)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY siprec_bridge ./siprec_bridge
COPY sdp ./sdp
COPY rtp ./rtp
COPY ws_out ./ws_out
COPY pcaps ./pcaps
# The default configuration (docker-compose.yml mounts its own copy over it).
COPY docker/bridge.toml /etc/siprec-bridge/bridge.toml
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 siprec \
    && mkdir -p /var/lib/siprec-bridge/spool \
    && chown -R siprec /var/lib/siprec-bridge
USER siprec

# SIP (UDP/TCP), SIP over TLS when [sip.tls] is enabled, the operations endpoint
# (/metrics /healthz /readyz /calls), RTP/RTCP (rtp.ports).
EXPOSE 5060/udp 5060/tcp 5061/tcp 9464/tcp 40000-40199/udp
ENTRYPOINT ["siprec-bridge"]
CMD ["serve", "--config", "/etc/siprec-bridge/bridge.toml"]
