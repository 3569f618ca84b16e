# syntax=docker/dockerfile:1
# via-otlp: wheels built in one stage, run as a non-root user in a slim one.
#
#   docker build -t via-otlp .
#   docker run -p 4317:4317 -p 4318:4318 -v via-data:/var/lib/via via-otlp
#
# Every setting comes from the environment (VIA_GRPC_ENDPOINT, VIA_HTTP_ENDPOINT, VIA_DATA_DIR,
# VIA_EMIT_ENDPOINT, VIA_REGISTRY_DSN, ...; see README "Configuration"); a config file can be
# mounted and named with `serve --config FILE`. Learned state and the embedded PostgreSQL live
# in the VOLUME /var/lib/via: recreate the container, keep the baselines.

FROM python:3.11-slim AS build
# A C compiler for the optional compiled walker (setup.py): without it the wheel would quietly
# lack via_otlp/receive/_wirewalk and the image normalise in pure Python, ~5x slower.
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Dependencies first, in their own layer: a change of the source does not rebuild them.
COPY pyproject.toml README.md ./
RUN mkdir via_otlp && echo '__version__ = "0.0.0"' > via_otlp/__init__.py \
 && pip wheel --no-cache-dir --wheel-dir /wheels . \
 && rm /wheels/via_otlp-*.whl
# Then the source (setup.py: the compiled walker, built into the wheel here).
COPY setup.py ./
COPY via_otlp ./via_otlp
COPY config ./config
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# tini as PID 1: it forwards SIGTERM to via-otlp and reaps orphans. via-otlp as PID 1 waits only
# for its own children, so the embedded PostgreSQL's backends, orphaned when its server is
# killed, would stay as zombies.
RUN apt-get update && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 via
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/via.json5 /etc/via/via.json5
# The standard scenario suite, for `via-otlp simulate` inside the container.
COPY config/scenarios /usr/share/via-otlp/scenarios
ENV VIA_DATA_DIR=/var/lib/via \
    VIA_SCENARIOS_DIR=/usr/share/via-otlp/scenarios \
    VIA_GRPC_ENDPOINT=0.0.0.0:4317 \
    VIA_HTTP_ENDPOINT=0.0.0.0:4318
RUN mkdir -p /var/lib/via && chown via:via /var/lib/via && chmod 0700 /var/lib/via
VOLUME /var/lib/via
USER via
WORKDIR /home/via
# 4317 OTLP/gRPC, 4318 OTLP/HTTP + NDJSON + /healthz + /status + /metrics
EXPOSE 4317 4318
# Follows the configured HTTP endpoint (VIA_HTTP_ENDPOINT, or the config file's), not a fixed
# address: `via-otlp healthcheck` asks /healthz where `serve` listens.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["via-otlp", "healthcheck"]
ENTRYPOINT ["tini", "--", "via-otlp"]
CMD ["serve"]
