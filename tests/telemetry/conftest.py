"""The recording OTLP downstreams of the emit tests, for the self-metrics push."""

from tests.emit.conftest import grpc_server, grpc_server_factory, http_server  # noqa: F401
