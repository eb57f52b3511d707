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
RUN pip install --no-cache-dir . && useradd --system --uid 10001 siprec
USER siprec

EXPOSE 5060/udp 5060/tcp
ENTRYPOINT ["siprec-bridge"]
CMD ["serve", "--sip-listen", "0.0.0.0:5060", "--rtp-ports", "40000-40199"]
