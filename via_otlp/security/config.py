"""Configuration of listener TLS and intake authentication (no I/O: files are read at start).

>>> from via_otlp.configload import load_dataclass
>>> load_dataclass(ServerTlsConfig, {"cert_file": "srv.pem", "key_file": "srv.key"}).enabled
True
>>> load_dataclass(BearerAuthConfig, {"bearer_token": ["old", "new", ""]}, environ={}).tokens
('old', 'new')
"""

from __future__ import annotations

from dataclasses import dataclass, field

from via_otlp.configload import spec
from via_otlp.errors import ConfigError

TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class ServerTlsConfig:
    """TLS of one listener, as the Collector's receivers write it; no ``cert_file`` = plaintext.

    ``client_ca_file`` turns on mutual TLS: a client must present a certificate that CA signed.
    The files are read at start and again whenever one of them changes (rotation).
    """

    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    min_version: str = field(default="1.2", metadata=spec(choices=TLS_VERSIONS))

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca_file)

    def check(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(
                "cert_file" if not self.cert_file else "key_file",
                "cert_file and key_file must be set together",
            )
        if self.client_ca_file and not self.cert_file:
            raise ConfigError(
                "client_ca_file", "needs cert_file and key_file (mutual TLS is TLS first)"
            )

    def check_grpc(self, path: str) -> None:
        """What grpcio's server credentials can enforce: a TLS 1.2 floor, not 1.3 (`path` is
        this block's key path relative to the caller)."""
        if self.enabled and self.min_version != "1.2":
            raise ConfigError(
                f"{path}.min_version",
                f"{self.min_version!r} cannot be enforced on a gRPC listener: grpcio's server "
                "credentials have no minimum-version setting (TLS 1.2 is the floor, 1.3 is "
                "negotiated with every client that offers it); use '1.2'",
            )


def check_token(token: str, path: str) -> None:
    """A bearer token must fit in a header value: printable ASCII, no spaces."""
    if any(not (0x21 <= ord(c) <= 0x7E) for c in token):
        raise ConfigError(
            path, "must be printable ASCII without spaces or line breaks (a header value)"
        )


@dataclass(frozen=True)
class BearerAuthConfig:
    """Bearer-token authentication of the intake (gRPC and HTTP); none configured = open.

    ``bearer_token`` is one token or a list (several are accepted at once while rotating); empty
    entries are ignored, so ``["${env:TOKEN}", "${env:NEXT_TOKEN:-}"]`` works.
    """

    bearer_token: str | tuple[str, ...] = field(
        default="", metadata=spec(env="VIA_RECEIVE_BEARER_TOKEN")
    )

    @property
    def tokens(self) -> tuple[str, ...]:
        raw = (self.bearer_token,) if isinstance(self.bearer_token, str) else self.bearer_token
        return tuple(t for t in raw if t)

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def check(self) -> None:
        if isinstance(self.bearer_token, str):
            check_token(self.bearer_token, "bearer_token")
        else:
            for i, token in enumerate(self.bearer_token):
                check_token(token, f"bearer_token[{i}]")
