"""The control server in-process: lifecycle, the token check, and errors mapped to gRPC codes.

The registry here is a fake that fails on purpose (an outage is hard to stage on demand); the
end-to-end tests use the real one.
"""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import pytest

from tests.conftest import CLIENT_TIMEOUT
from via_otlp.control.config import ControlConfig
from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.control.gen.via.v1 import control_pb2_grpc as pb2_grpc
from via_otlp.control.server import ControlServer
from via_otlp.correlate.model import SimilarEpisode, SimilarIncident, SimilarResult
from via_otlp.correlate.service import EpisodeNotFound
from via_otlp.errors import StartupError, UpstreamError


class DownRegistry:
    """A registry whose PostgreSQL is away."""

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise UpstreamError("PostgreSQL: registry query failed: connection refused", retryable=True)

    async def list_anomalies(self, **kwargs: Any) -> Any:
        self._fail()

    async def list_patches(self, **kwargs: Any) -> Any:
        self._fail()

    async def delete_patch(self, patch_id: str) -> bool:
        return False

    async def list_incidents(self, **kwargs: Any) -> Any:
        self._fail()

    async def get_incident(self, incident_id: str) -> Any:
        return None


class FakeCorrelation:
    """`search_similar` answers from a script: a result, or an exception to raise."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def search_similar(self, text: str = "", **kwargs: Any) -> Any:
        self.calls.append((text, kwargs))
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


def fake_app(registry: Any, correlation: Any = None) -> Any:
    return SimpleNamespace(registry=registry, correlation=correlation)


async def started(app: Any, **config: Any) -> ControlServer:
    server = ControlServer(ControlConfig(endpoint="127.0.0.1:0", **config), app)
    await server.start()
    return server


async def test_stop_is_idempotent_and_safe_without_start() -> None:
    server = ControlServer(ControlConfig(endpoint="127.0.0.1:0"), fake_app(None))
    await server.stop()
    await server.start()
    assert server.port > 0
    await server.stop()
    await server.stop()


async def test_disabled_does_not_listen() -> None:
    server = await started(fake_app(None), enabled=False)
    assert server.port == 0
    await server.stop()


async def test_a_port_in_use_is_a_startup_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = ControlServer(ControlConfig(endpoint=f"127.0.0.1:{port}"), fake_app(None))
        with pytest.raises(StartupError, match=f"control API on 127.0.0.1:{port}"):
            await server.start()
        await server.stop()


async def call(server: ControlServer, method: str, request: Any, token: str = "") -> Any:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb2_grpc.ControlStub(channel)
        metadata = (("authorization", token),) if token else None
        return await getattr(stub, method)(request, metadata=metadata, timeout=CLIENT_TIMEOUT)


async def code_of(server: ControlServer, method: str, request: Any, token: str = "") -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(server, method, request, token)
    return info.value.code()


async def test_registry_outage_is_unavailable_and_no_registry_is_failed_precondition() -> None:
    server = await started(fake_app(DownRegistry()))
    try:
        assert await code_of(server, "ListAnomalies", pb2.ListAnomaliesRequest()) is (
            grpc.StatusCode.UNAVAILABLE
        )
        assert await code_of(server, "ListPatches", pb2.ListPatchesRequest()) is (
            grpc.StatusCode.UNAVAILABLE
        )
        assert await code_of(server, "DeletePatch", pb2.DeletePatchRequest(id="x")) is (
            grpc.StatusCode.NOT_FOUND
        )
        assert await code_of(server, "DeletePatch", pb2.DeletePatchRequest()) is (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        bad = pb2.UpsertPatchRequest(patch=pb2.Patch(rule=pb2.PATCH_RULE_DROP))
        assert await code_of(server, "UpsertPatch", bad) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop()
    server = await started(fake_app(None))
    try:
        assert await code_of(server, "GetSchema", pb2.GetSchemaRequest(source="x")) is (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await server.stop()


async def test_the_token_is_checked_on_every_control_call() -> None:
    server = await started(fake_app(None), token="t0k")
    try:
        request = pb2.GetSchemaRequest(source="x")
        for wrong in ("", "Bearer nope", "t0k", "Basic t0k"):
            assert await code_of(server, "GetSchema", request, wrong) is (
                grpc.StatusCode.UNAUTHENTICATED
            ), wrong
        for right in ("Bearer t0k", "bearer t0k"):  # past the check: the registry is disabled
            assert await code_of(server, "GetSchema", request, right) is (
                grpc.StatusCode.FAILED_PRECONDITION
            )
    finally:
        await server.stop()


async def test_incident_calls_map_their_errors() -> None:
    server = await started(fake_app(DownRegistry()))
    try:
        assert await code_of(server, "ListIncidents", pb2.ListIncidentsRequest()) is (
            grpc.StatusCode.UNAVAILABLE
        )
        assert await code_of(server, "GetIncident", pb2.GetIncidentRequest(id="ab")) is (
            grpc.StatusCode.NOT_FOUND
        )
        bad_state = pb2.ListIncidentsRequest(state=99)  # type: ignore[arg-type]
        assert await code_of(server, "ListIncidents", bad_state) is (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # correlation off: no similarity search
        search = pb2.SearchSimilarRequest(text="pool exhausted")
        assert await code_of(server, "SearchSimilar", search) is (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await server.stop()
    server = await started(fake_app(None))
    try:
        assert await code_of(server, "GetIncident", pb2.GetIncidentRequest(id="ab")) is (
            grpc.StatusCode.FAILED_PRECONDITION
        )
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (EpisodeNotFound("episode 'e9' has no stored vector"), grpc.StatusCode.NOT_FOUND),
        (UpstreamError("Qdrant: connection refused", retryable=True), grpc.StatusCode.UNAVAILABLE),
        (UpstreamError("the vector store is off", retryable=False), grpc.StatusCode.INTERNAL),
    ],
)
async def test_search_similar_errors(error: Exception, code: grpc.StatusCode) -> None:
    server = await started(fake_app(None, FakeCorrelation(error)))
    try:
        request = pb2.SearchSimilarRequest(episode_id="e9")
        assert await code_of(server, "SearchSimilar", request) is code
        both = pb2.SearchSimilarRequest(episode_id="e9", text="x")
        assert await code_of(server, "SearchSimilar", both) is grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop()


async def test_search_similar_passes_the_query_and_converts_the_answer() -> None:
    result = SimilarResult(
        (SimilarEpisode("e1", 0.97, "i1", "shop/db/prod", "spike", "pool exhausted", 5, 80.0),
         SimilarEpisode("e2", 0.5, "", "shop/web/prod", "bogus", "x", 6, 10.0)),
        (SimilarIncident("i1", 0.97, "e1", "spike in db: pool exhausted"),),
    )  # fmt: skip
    correlation = FakeCorrelation(result)
    server = await started(fake_app(None, correlation))
    try:
        answer = await call(
            server, "SearchSimilar", pb2.SearchSimilarRequest(episode_id=" e7 ", limit=3)
        )
        assert correlation.calls == [
            ("", {"episode_id": "e7", "limit": 3, "exclude_same_incident": True})
        ]
        first, second = answer.episodes
        assert (first.episode_id, first.kind, first.similarity) == (
            "e1",
            pb2.ANOMALY_KIND_SPIKE,
            pytest.approx(0.97),
        )
        assert second.kind == pb2.ANOMALY_KIND_UNSPECIFIED
        (inc,) = answer.incidents
        assert (inc.incident_id, inc.best_episode_id, inc.title) == (
            "i1",
            "e1",
            "spike in db: pool exhausted",
        )
        await call(
            server,
            "SearchSimilar",
            pb2.SearchSimilarRequest(text="pool", include_same_incident=True),
        )
        assert correlation.calls[-1] == (
            "pool",
            {"episode_id": "", "limit": 10, "exclude_same_incident": False},
        )
    finally:
        await server.stop()
