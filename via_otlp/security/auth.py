"""Bearer-token authentication: one gRPC interceptor and one aiohttp middleware, nothing else.

A call is let through when it carries ``authorization: Bearer <token>`` with one of the
configured tokens (compared in constant time, every token tried), or when it goes to an open
method or path (health checks, reflection). Otherwise gRPC answers UNAUTHENTICATED and HTTP 401
with ``WWW-Authenticate: Bearer``, and `on_denied` is called so the refusal is counted. What the
call would have done is never started, so a refused request costs no decoding.

>>> tokens = BearerTokens(["s3cret", "next"])
>>> tokens.accepts("Bearer next"), tokens.accepts("bearer  s3cret "), tokens.accepts("Basic s3cret")
(True, True, False)
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc
import grpc.aio
from aiohttp import web

DENIED_MESSAGE = "missing or wrong bearer token (send the header 'authorization: Bearer <token>')"


class BearerTokens:
    """The tokens a listener accepts (several at once while one is being rotated out)."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens if t)
        if not self._tokens:
            raise ValueError("BearerTokens needs at least one token")

    def accepts(self, authorization: str | None) -> bool:
        """Whether an ``authorization`` header value carries one of the tokens."""
        if not authorization:
            return False
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        presented = credentials.strip().encode()
        ok = False
        for token in self._tokens:  # no early exit: the time does not say which one matched
            ok |= hmac.compare_digest(presented, token)
        return ok

    def accepts_metadata(self, metadata: Any) -> bool:
        """Whether gRPC invocation metadata carries one of the tokens."""
        for key, value in metadata or ():
            if key.lower() == "authorization" and isinstance(value, str) and self.accepts(value):
                return True
        return False


class GrpcBearerAuth(grpc.aio.ServerInterceptor):
    """UNAUTHENTICATED for every call without a good token, but those to `open_prefixes`."""

    def __init__(
        self,
        tokens: BearerTokens,
        *,
        open_prefixes: tuple[str, ...] = (),
        on_denied: Callable[[str], None] | None = None,
    ) -> None:
        self._tokens = tokens
        self._open = open_prefixes
        self._on_denied = on_denied

        async def deny(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, DENIED_MESSAGE)
            raise AssertionError("unreachable: context.abort raises")

        # Raw bytes in and out: a refused call is never deserialised. (Every guarded method of
        # ours is unary; the streaming ones, reflection, are open.)
        self._deny = grpc.unary_unary_rpc_method_handler(deny)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        if method.startswith(self._open) or self._tokens.accepts_metadata(
            handler_call_details.invocation_metadata
        ):
            return await continuation(handler_call_details)
        if self._on_denied is not None:
            self._on_denied(method)
        return self._deny


Middleware = Callable[
    [web.Request, Callable[[web.Request], Awaitable[web.StreamResponse]]],
    Awaitable[web.StreamResponse],
]


def http_bearer_auth(
    tokens: BearerTokens,
    *,
    open_paths: frozenset[str],
    deny: Callable[[web.Request], web.StreamResponse],
    on_denied: Callable[[web.Request], None] | None = None,
) -> Middleware:
    """An aiohttp middleware: `deny(request)` (a 401 the caller shapes) unless the request has a
    good token or its path is open. Nothing of the body is read for a refused request."""

    @web.middleware
    async def bearer_auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path in open_paths or tokens.accepts(request.headers.get("Authorization")):
            return await handler(request)
        if on_denied is not None:
            on_denied(request)
        response = deny(request)
        response.headers["WWW-Authenticate"] = 'Bearer realm="via-otlp"'
        return response

    return bearer_auth
