# syntax=docker/dockerfile:1
# via-otlp: build wheels in one stage, run as a non-root user in a slim one.

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY via_otlp ./via_otlp
COPY config ./config
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 via
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY config/via.json5 /etc/via/via.json5
ENV VIA_DATA_DIR=/var/lib/via
RUN mkdir -p /var/lib/via && chown via:via /var/lib/via
USER via
WORKDIR /home/via
# 4317 OTLP/gRPC, 4318 OTLP/HTTP + NDJSON + /healthz + /status
EXPOSE 4317 4318
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:4318/healthz', timeout=2).status == 200 else 1)"
ENTRYPOINT ["via-otlp"]
CMD ["serve", "--config", "/etc/via/via.json5"]
