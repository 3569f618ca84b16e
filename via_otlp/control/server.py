"""The via.v1.Control gRPC server: read what the running service learned, and steer it.

It serves on its own port (`control.endpoint`, loopback by default) with server reflection, so
`grpcurl` needs no .proto file. With `control.token` set (required beyond loopback: the config
does not load without it), an interceptor answers every call but reflection UNAUTHENTICATED
unless it carries ``authorization: Bearer <token>``. Reflection stays open: it reveals the API's
shape, which README documents anyway, and lets grpcurl describe the service before the user has
the token at hand. `control.tls` is served like the intake's (rotation, mutual TLS).

Reads of memory (status, profiles, templates) never wait on PostgreSQL; registry calls map our
errors to gRPC codes at this boundary: a malformed argument (`InputError`) is INVALID_ARGUMENT,
PostgreSQL, Qdrant or the embeddings provider away (a retryable `UpstreamError`) is UNAVAILABLE,
a missing item (or an episode with no stored vector) is NOT_FOUND and a disabled registry or
correlate stage is FAILED_PRECONDITION. Translation lives in `convert.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
import grpc.aio
from grpc_reflection.v1alpha import reflection

from via_otlp.control import convert
from via_otlp.control.config import ControlConfig
from via_otlp.control.gen.via.v1 import control_pb2 as pb2
from via_otlp.control.gen.via.v1 import control_pb2_grpc as pb2_grpc
from via_otlp.correlate.model import SimilarIncident
from via_otlp.correlate.service import EpisodeNotFound
from via_otlp.errors import InputError, StartupError, UpstreamError
from via_otlp.paging import decode_token, encode_token
from via_otlp.security.auth import BearerTokens, GrpcBearerAuth
from via_otlp.security.tls import CertificateFiles, grpc_server_credentials

if TYPE_CHECKING:
    from via_otlp.app import App
    from via_otlp.correlate.service import Correlation
    from via_otlp.registry import Registry

log = logging.getLogger(__name__)

SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["Control"].full_name
_OPEN_METHOD_PREFIXES = ("/grpc.reflection.",)

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


class NotFoundError(InputError):
    """The item asked for does not exist (answered NOT_FOUND)."""


def _classified(method: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Answer our exceptions with the gRPC code that says whether to retry."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await method(self, request, context)
        except (NotFoundError, EpisodeNotFound) as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        except InputError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except (_RegistryDisabled, _CorrelateDisabled) as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        except UpstreamError as exc:
            code = grpc.StatusCode.UNAVAILABLE if exc.retryable else grpc.StatusCode.INTERNAL
            await context.abort(code, str(exc))
        raise AssertionError("unreachable: context.abort raises")

    return wrapper


class _RegistryDisabled(Exception):
    def __str__(self) -> str:
        return (
            "the registry is disabled (registry.enabled is false): no anomalies, patches or schemas"
        )


class _CorrelateDisabled(Exception):
    def __str__(self) -> str:
        return "correlation is disabled (correlate.enabled is false): no similarity search"


class ControlService(pb2_grpc.ControlServicer):
    """The handlers of via.v1.Control over a running `App`."""

    def __init__(self, config: ControlConfig, app: App) -> None:
        self.config = config
        self.app = app

    def _size(self, requested: int) -> int:
        return convert.page_size(
            requested, self.config.default_page_size, self.config.max_page_size
        )

    def _registry(self) -> Registry:
        if self.app.registry is None:
            raise _RegistryDisabled()
        return self.app.registry

    def _correlation(self) -> Correlation:
        correlation = getattr(self.app, "correlation", None)
        if correlation is None:
            raise _CorrelateDisabled()
        return correlation

    # -- memory ------------------------------------------------------------------------------

    @_classified
    async def GetStatus(
        self, request: pb2.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> pb2.GetStatusResponse:
        return convert.status_to_proto(self.app.read_status(), self.app.config.detect.bucket)

    @_classified
    async def ListProfiles(
        self, request: pb2.ListProfilesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListProfilesResponse:
        page = convert.page_profiles(
            await self.app.pipeline.profiles(),
            request.source,
            request.order_by,
            self._size(request.page_size),
            request.page_token,
        )
        return pb2.ListProfilesResponse(
            profiles=[convert.profile_to_proto(p) for p in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total,
        )

    @_classified
    async def GetProfile(
        self, request: pb2.GetProfileRequest, context: grpc.aio.ServicerContext
    ) -> pb2.GetProfileResponse:
        rhythm_hash = request.rhythm_hash.strip().lower()
        if not rhythm_hash:
            raise InputError("rhythm_hash is required")
        summary, recent = await self.app.pipeline.profile(rhythm_hash)
        if summary is None:
            raise NotFoundError(f"no profile with rhythm hash {rhythm_hash!r} is tracked")
        return pb2.GetProfileResponse(
            profile=convert.profile_to_proto(summary),
            recent_buckets=convert.recent_to_proto(recent),
        )

    @_classified
    async def ListTemplates(
        self, request: pb2.ListTemplatesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListTemplatesResponse:
        pipeline = self.app.pipeline
        page = convert.page_templates(
            await pipeline.templates(),
            request.source,
            self._size(request.page_size),
            request.page_token,
        )
        hashes: dict[tuple[str, str], list[str]] = defaultdict(list)
        if page.items:
            for p in await pipeline.profiles():
                hashes[(p.source_key, p.template_id)].append(p.rhythm_hash)
        return pb2.ListTemplatesResponse(
            templates=[
                convert.template_to_proto(t, hashes.get((t.source_key, t.template_id), ()))
                for t in page.items
            ],
            next_page_token=page.next_page_token,
            total_size=page.total,
        )

    # -- registry ----------------------------------------------------------------------------

    @_classified
    async def ListAnomalies(
        self, request: pb2.ListAnomaliesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListAnomaliesResponse:
        kind = convert.kind_from_proto(request.kind)
        state = convert.state_from_proto(request.state)
        page = await self._registry().list_anomalies(
            since_ns=request.since_unix_nano or None,
            kind=kind,
            source=request.source or None,
            state=state,
            limit=self._size(request.page_size),
            page_token=request.page_token,
        )
        return pb2.ListAnomaliesResponse(
            anomalies=[convert.anomaly_to_proto(a) for a in page.items],
            next_page_token=page.next_page_token,
        )

    @_classified
    async def ListPatches(
        self, request: pb2.ListPatchesRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListPatchesResponse:
        patches = await self._registry().list_patches(include_inactive=request.include_inactive)
        now = time.time_ns()
        return pb2.ListPatchesResponse(patches=[convert.patch_to_proto(p, now) for p in patches])

    @_classified
    async def UpsertPatch(
        self, request: pb2.UpsertPatchRequest, context: grpc.aio.ServicerContext
    ) -> pb2.UpsertPatchResponse:
        registry = self._registry()
        now = time.time_ns()
        patch = convert.patch_from_proto(request.patch, now, request.ttl_seconds)
        stored = await registry.upsert_patch(patch)
        log.info(
            "patch %s %s (source=%r template=%r rhythm_hash=%r) stored via the control API",
            stored.id, stored.rule, stored.source, stored.template, stored.rhythm_hash,
        )  # fmt: skip
        return pb2.UpsertPatchResponse(patch=convert.patch_to_proto(stored, now))

    @_classified
    async def DeletePatch(
        self, request: pb2.DeletePatchRequest, context: grpc.aio.ServicerContext
    ) -> pb2.DeletePatchResponse:
        if not request.id:
            raise InputError("id is required")
        if not await self._registry().delete_patch(request.id):
            raise NotFoundError(f"no patch with id {request.id!r}")
        log.info("patch %s deleted via the control API", request.id)
        return pb2.DeletePatchResponse()

    @_classified
    async def GetSchema(
        self, request: pb2.GetSchemaRequest, context: grpc.aio.ServicerContext
    ) -> pb2.GetSchemaResponse:
        if not request.source:
            raise InputError("source is required (a source key such as 'shop/checkout@prod')")
        record = await self._registry().get_schema(request.source)
        if record is None:
            raise NotFoundError(f"no schema stored for source {request.source!r}")
        return pb2.GetSchemaResponse(schema=convert.schema_to_proto(record))

    @_classified
    async def ListSchemas(
        self, request: pb2.ListSchemasRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListSchemasResponse:
        size = self._size(request.page_size)
        after = ""
        if request.page_token:
            (after,) = decode_token(request.page_token, "schemas", (str,))
        records = await self._registry().list_schemas(limit=size + 1, after=after)
        page = records[:size]
        token = encode_token("schemas", [page[-1].schema.source.key]) if len(records) > size else ""
        return pb2.ListSchemasResponse(
            schemas=[convert.schema_to_proto(r) for r in page], next_page_token=token
        )

    @_classified
    async def ListIncidents(
        self, request: pb2.ListIncidentsRequest, context: grpc.aio.ServicerContext
    ) -> pb2.ListIncidentsResponse:
        state = convert.incident_state_from_proto(request.state)
        page = await self._registry().list_incidents(
            since_ns=request.since_unix_nano or None,
            state=state,
            source=request.source or None,
            include_merged=request.include_merged,
            limit=self._size(request.page_size),
            page_token=request.page_token,
        )
        return pb2.ListIncidentsResponse(
            incidents=[
                convert.incident_to_proto(i, graph=request.include_graph) for i in page.items
            ],
            next_page_token=page.next_page_token,
        )

    @_classified
    async def GetIncident(
        self, request: pb2.GetIncidentRequest, context: grpc.aio.ServicerContext
    ) -> pb2.GetIncidentResponse:
        incident_id = request.id.strip().lower()
        if not incident_id:
            raise InputError("id is required (an incident id, 16 hex digits)")
        incident = await self._registry().get_incident(incident_id)
        if incident is None:
            raise NotFoundError(f"no incident with id {incident_id!r}")
        return pb2.GetIncidentResponse(incident=convert.incident_to_proto(incident))

    @_classified
    async def SearchSimilar(
        self, request: pb2.SearchSimilarRequest, context: grpc.aio.ServicerContext
    ) -> pb2.SearchSimilarResponse:
        text, episode_id = request.text.strip(), request.episode_id.strip()
        if bool(text) == bool(episode_id):
            raise InputError("give exactly one of text and episode_id")
        result = await self._correlation().search_similar(
            text,
            episode_id=episode_id,
            limit=convert.search_limit(request.limit),
            exclude_same_incident=not request.include_same_incident,
        )
        untitled = [i for i in result.incidents if not i.title]
        if untitled and self.app.registry is not None:
            # Resolved incidents are no longer in the correlator's memory: ask the registry.
            titles: dict[str, str] = {}
            for i in untitled:
                with contextlib.suppress(UpstreamError):
                    stored = await self.app.registry.get_incident(i.incident_id)
                    if stored is not None:
                        titles[i.incident_id] = stored.title
            result = dataclasses.replace(
                result,
                incidents=tuple(
                    SimilarIncident(
                        i.incident_id,
                        i.similarity,
                        i.best_episode_id,
                        i.title or titles.get(i.incident_id, ""),
                    )
                    for i in result.incidents
                ),
            )
        return convert.similar_to_proto(result)


class ControlServer:
    """Serves via.v1.Control on its own port; `app` is the running `via_otlp.app.App`."""

    def __init__(self, config: ControlConfig, app: Any) -> None:
        self.config = config
        self.app = app
        self.port = 0
        self._server: grpc.aio.Server | None = None

    async def start(self) -> None:
        """Bind and serve; a port that cannot be bound is a `StartupError`."""
        if not self.config.enabled or self._server is not None:
            return
        interceptors = (
            [GrpcBearerAuth(BearerTokens([self.config.token]), open_prefixes=_OPEN_METHOD_PREFIXES)]
            if self.config.token
            else []
        )
        server = grpc.aio.server(interceptors=interceptors, options=[("grpc.so_reuseport", 0)])
        pb2_grpc.add_ControlServicer_to_server(ControlService(self.config, self.app), server)
        reflection.enable_server_reflection((SERVICE_NAME, reflection.SERVICE_NAME), server)
        endpoint = self.config.endpoint
        tls = self.config.tls
        try:
            if tls.enabled:
                credentials = grpc_server_credentials(CertificateFiles(tls, "control.tls"))
                port = server.add_secure_port(endpoint, credentials)
            else:
                port = server.add_insecure_port(endpoint)
        except RuntimeError as exc:
            raise StartupError(
                f"cannot listen for the control API on {endpoint}: {exc}",
                hint="set control.endpoint to a free HOST:PORT, or control.enabled to false",
            ) from None
        if port == 0:
            raise StartupError(
                f"cannot listen for the control API on {endpoint}: address in use or not available",
                hint="set control.endpoint to a free HOST:PORT, or control.enabled to false",
            )
        await server.start()
        self._server, self.port = server, port
        log.info(
            "control API (via.v1.Control) on %s:%d%s%s",
            endpoint.rpartition(":")[0],
            port,
            (", mutual TLS" if tls.mutual else ", TLS") if tls.enabled else "",
            ", bearer token required" if self.config.token else "",
        )

    async def stop(self, grace: float = 1.0) -> None:
        """Stop serving; idempotent and safe without start."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
