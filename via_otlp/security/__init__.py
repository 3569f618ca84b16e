"""Security at the edges: TLS for every listener, bearer tokens, private files.

Shared by the intake (`receive/`) and the control API (`control/`), so both are configured the
same way, as the OpenTelemetry Collector's receivers are:

- `config.py`: the ``tls`` block of a listener (`ServerTlsConfig`: ``cert_file``, ``key_file``,
  ``client_ca_file`` for mutual TLS, ``min_version``) and intake authentication
  (`BearerAuthConfig`: ``bearer_token``, one or a list). Plain dataclasses, no I/O.
- `tls.py`: server credentials for grpcio and an `ssl.SSLContext` for aiohttp that reload the
  certificate files when they change on disk, checked at each TLS handshake, so a rotated
  certificate is served without a restart.
- `auth.py`: one gRPC interceptor and one aiohttp middleware that answer UNAUTHENTICATED / 401
  unless a call carries ``authorization: Bearer <token>``; health stays open; refusals counted.
- `files.py`: the data directory private to its owner (0700) and files created 0600.

Secrets in text (DSNs, tokens) are hidden by `via_otlp.redact`, the one place for that.
"""
