# The worker image: `streams` and its dependencies on a slim Python, run as a non-root user.
# Two stages: the venv is built in the first, only the venv and the contracts are copied into
# the second, so no pip cache, no build tools and no sources beyond the package end up there.
# Every dependency installs from a manylinux wheel (confluent-kafka, rocksdict, fastavro), so
# the builder needs no compiler either.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/streams
WORKDIR /src
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN /opt/streams/bin/pip install --no-compile . && /opt/streams/bin/python -m compileall -q /opt/streams

FROM python:3.11.13-slim-bookworm
ENV PATH=/opt/streams/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STREAMS_STATE_DIR=/var/lib/streams \
    STREAMS_SCHEMAS_DIR=/app/schemas \
    STREAMS_WEB_HOST=0.0.0.0 \
    STREAMS_WEB_PORT=6066
RUN groupadd --system --gid 10001 streams \
 && useradd --system --uid 10001 --gid streams --home-dir /app --shell /usr/sbin/nologin streams \
 && mkdir -p /var/lib/streams /app \
 && chown streams:streams /var/lib/streams
COPY --from=build /opt/streams /opt/streams
COPY schemas /app/schemas
WORKDIR /app
USER 10001:10001
# RocksDB ledgers live here: mount a volume so a restarted worker keeps its state.
VOLUME ["/var/lib/streams"]
EXPOSE 6066
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["streams"]
CMD ["worker"]
