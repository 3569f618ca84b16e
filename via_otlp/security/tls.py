"""Server TLS for grpcio and aiohttp, with certificates reloaded when their files change.

Both libraries ask us at each TLS handshake, so rotation needs no timer and no restart:

- grpcio: `grpc.dynamic_ssl_server_credentials` calls a *certificate configuration fetcher*
  before every handshake (from one of grpc-core's threads); it returns a new configuration, or
  None to keep the current one.
- `ssl` (aiohttp): the context's ``sni_callback`` runs at every ClientHello, with or without a
  server name; it may switch the connection to another `ssl.SSLContext` built from the new files.

`CertificateFiles.reload_if_changed` is what both call: a `stat` of each file (size, mtime,
inode, so an atomic rename or a Kubernetes secret's symlink swap counts) and nothing more while
nothing changed. A change is read and validated first; files that do not load (a half-written
certificate, a key that does not match) leave the previous certificate in service, with one
warning per change. Connections already open keep their session.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from via_otlp.errors import StartupError
from via_otlp.security.config import ServerTlsConfig

if TYPE_CHECKING:
    import grpc

log = logging.getLogger(__name__)

_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
Signature = tuple[tuple[int, int, int, int], ...]


@dataclass(frozen=True, slots=True)
class CertificateMaterial:
    """One load of the files: the PEM bytes (certificate chain, key, client CA for mutual TLS)
    and the TLS server context built from them, which proves they load."""

    cert_chain: bytes
    key: bytes
    client_ca: bytes | None
    context: ssl.SSLContext


class CertificateFiles:
    """The PEM files of one listener's ``tls`` block (`where` is its key path, for messages)."""

    def __init__(self, config: ServerTlsConfig, where: str) -> None:
        if not config.enabled:
            raise ValueError(f"{where}: TLS is not configured")
        self.config = config
        self.where = where
        self._lock = threading.Lock()
        self._signature: Signature | None = None
        self._failed_key: object = None  # what the last failure was about, reported once

    @property
    def paths(self) -> tuple[tuple[str, str], ...]:
        c = self.config
        named = (("cert_file", c.cert_file), ("key_file", c.key_file))
        return (*named, ("client_ca_file", c.client_ca_file)) if c.client_ca_file else named

    def _stat(self) -> Signature:
        out = []
        for _, path in self.paths:
            st = os.stat(path)
            out.append((st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev))
        return tuple(out)

    def _read(self) -> CertificateMaterial:
        """Read the files and build a server context from them (which validates them).

        `ssl` loads a certificate chain from paths only, so the bytes (for grpcio) and the
        context are two reads; a file replaced between them changes the signature taken before
        both, so the next handshake loads again and the two agree from then on.
        """
        data = {}
        for name, path in self.paths:
            try:
                data[name] = Path(path).read_bytes()
            except OSError as exc:
                raise _TlsFilesError(f"cannot read {name} {path}: {exc.strerror}") from None
        context = build_ssl_context(self.config, data.get("client_ca_file"))
        return CertificateMaterial(
            data["cert_file"], data["key_file"], data.get("client_ca_file"), context
        )

    def load(self) -> CertificateMaterial:
        """The files now, for the start of a listener: a `StartupError` naming the key when
        they are missing or do not load."""
        with self._lock:
            try:
                signature = self._stat()
                material = self._read()
            except OSError as exc:
                raise StartupError(
                    f"{self.where}: cannot read {exc.filename}: {exc.strerror}",
                    hint=f"fix the paths in {self.where}",
                ) from None
            except _TlsFilesError as exc:
                raise StartupError(f"{self.where}: {exc}", hint="check the PEM files") from None
            self._signature = signature
            return material

    def reload_if_changed(self) -> CertificateMaterial | None:
        """New material when a file changed since the last load and loads correctly, else None.

        Cheap when nothing changed (one `stat` per file); safe from any thread.
        """
        with self._lock:
            try:
                signature = self._stat()
            except OSError as exc:
                self._failed(
                    ("missing", exc.filename), f"cannot stat {exc.filename}: {exc.strerror}"
                )
                return None
            if signature == self._signature:
                self._failed_key = None
                return None
            if signature == self._failed_key:
                return None  # the same broken files: already reported
            try:
                material = self._read()
            except _TlsFilesError as exc:
                self._failed(signature, str(exc))
                return None
            self._signature = signature
            self._failed_key = None
            log.info(
                "%s: certificate files changed, reloaded (new connections use them)", self.where
            )
            return material

    def _failed(self, key: object, reason: str) -> None:
        if key != self._failed_key:
            log.warning(
                "%s: cannot reload the certificate files (%s); still serving the previous ones",
                self.where, reason,
            )  # fmt: skip
        self._failed_key = key


class _TlsFilesError(Exception):
    """The files exist but do not make a TLS server (bad PEM, key and certificate differ)."""


def build_ssl_context(config: ServerTlsConfig, client_ca: bytes | None) -> ssl.SSLContext:
    """A TLS server context from the configured files: certificate and key (read from their
    paths), the client CA (mutual TLS, from `client_ca` bytes) and the minimum version."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _VERSIONS[config.min_version]
    try:
        context.load_cert_chain(config.cert_file, config.key_file)
        if client_ca is not None:
            context.load_verify_locations(cadata=client_ca.decode("ascii", "replace"))
            context.verify_mode = ssl.CERT_REQUIRED
    except (ssl.SSLError, ValueError) as exc:  # before OSError: SSLError is one
        raise _TlsFilesError(f"the certificate files do not load: {exc}") from None
    except OSError as exc:
        raise _TlsFilesError(f"cannot read the certificate files: {exc.strerror or exc}") from None
    return context


def ssl_server_context(files: CertificateFiles) -> ssl.SSLContext:
    """The `ssl.SSLContext` of an aiohttp listener; it serves the newest loadable files.

    A `StartupError` when the files do not load now.
    """
    base = files.load().context
    current = base

    def on_client_hello(sslobj: Any, server_name: str | None, context: ssl.SSLContext) -> None:
        nonlocal current
        material = files.reload_if_changed()
        if material is not None:
            current = material.context
        if current is not base:
            sslobj.context = current
        return None

    base.sni_callback = on_client_hello
    return base


def grpc_server_credentials(files: CertificateFiles) -> grpc.ServerCredentials:
    """grpcio credentials serving the newest loadable files (mutual TLS with a client CA).

    A `StartupError` when the files do not load now.
    """
    import grpc

    def configuration(material: CertificateMaterial) -> Any:
        return grpc.ssl_server_certificate_configuration(
            [(material.key, material.cert_chain)], root_certificates=material.client_ca
        )

    def fetch() -> Any:
        material = files.reload_if_changed()
        return None if material is None else configuration(material)

    return grpc.dynamic_ssl_server_credentials(
        configuration(files.load()), fetch, require_client_authentication=files.config.mutual
    )
