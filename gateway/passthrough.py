"""gRPC pass-through for mobile apps: every RPC kind is relayed to its service with metadata,
deadline and cancellation carried through, behind the same edge policy as REST and gRPC-Web."""
from __future__ import annotations

import asyncio
from concurrent.futures import Executor

import grpc
from grpc_status import rpc_status

from mesh.limits import check_message_shape, decode
from gateway.upstream import OpenStreams, access_of, edge_shutting_down, lookup, stream_opened
from gateway.policy import EdgePolicy
from mesh import client_address, errors

# The platform's services; health and reflection are answered by the edge itself (see edge.py).
EXPOSED = ("petplatform.",)

# Hop-by-hop or set by gRPC itself; everything else (authorization, x-request-id, custom keys) goes through.
# (traceparent goes through too: the service's span continues the app's trace.)
_DROP = {"user-agent", "grpc-accept-encoding", "grpc-encoding", "content-type", "te", "grpc-timeout", "x-forwarded-for"}


def _identity(b: bytes) -> bytes:
    return b


async def abort_with(context, e: errors.ApiError) -> None:
    s = rpc_status.to_status(e.to_status())
    await context.abort(s.code, s.details, s.trailing_metadata)


class PassThrough(grpc.GenericRpcHandler):
    def __init__(self, policy: EdgePolicy, channel_for, streams: OpenStreams, decoder: Executor):
        self.policy = policy
        self.streams = streams
        self.channel_for = channel_for
        self.decoder = decoder  # where large requests are checked (limits.decode)
        self._handlers: dict[str, grpc.RpcMethodHandler] = {}  # method path -> its relay (made once)

    def service(self, details: grpc.HandlerCallDetails):
        """Asked by gRPC for every call: the method's relay, made on its first call."""
        handler = self._handlers.get(details.method)
        if handler is None:
            method = lookup(details.method, EXPOSED)
            if method is None:
                return None  # grpc answers UNIMPLEMENTED
            handler = self._relay(details.method, method)
            if details.method == f"/{method.containing_service.full_name}/{method.name}":
                self._handlers[details.method] = handler  # one per method, whatever paths clients make up
        return handler

    def _relay(self, path: str, method) -> grpc.RpcMethodHandler:
        service = method.containing_service.full_name
        channel = self.channel_for(service)
        access = access_of(path)

        async def admit(context, streaming: bool = False) -> tuple:
            md = dict(context.invocation_metadata() or ())
            ip = self.policy.client_ip(client_address.peer_host(context.peer()),
                                       [v for k, v in context.invocation_metadata() or () if k == "x-forwarded-for"])
            try:
                admission = await self.policy.admit(ip, md.get("authorization"), access, streaming=streaming)
            except errors.ApiError as e:
                await abort_with(context, e)
            forward = self.policy.forward(((k, v) for k, v in md.items() if k not in _DROP), ip)
            remaining = context.time_remaining()
            return forward, (remaining if remaining is not None and remaining < 3600 else None), admission

        async def check(context, request: bytes) -> None:
            """What the request may cost its service, as for gRPC-Web (limits.check_message_shape)."""
            try:
                await decode(self.decoder, len(request), check_message_shape, method.input_type, request)
            except errors.ApiError as e:
                await abort_with(context, e)

        async def relay_error(context, e: grpc.aio.AioRpcError):
            await context.abort(e.code(), e.details() or "", tuple(e.trailing_metadata() or ()))

        async def relay(context, call, admission, headers_first: bool):
            """Relays a response stream; if the edge stops meanwhile, ends it with EDGE_SHUTTING_DOWN."""
            try:
                with self.streams.relaying(call):
                    try:
                        # A refused call stays trailers-only, as the service answered it.
                        if headers_first or await stream_opened(call):
                            await context.send_initial_metadata(tuple(await call.initial_metadata() or ()))
                        async for item in call:
                            yield item
                        context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                    except asyncio.CancelledError:
                        if not self.streams.ended_by_shutdown():
                            raise  # the client went away
                        raise edge_shutting_down() from None
            except grpc.aio.AioRpcError as e:
                await relay_error(context, e)
            except errors.ApiError as e:
                await abort_with(context, e)
            finally:
                admission.release()

        # Registered: gRPC interns the method's path once, not on every call.
        kind = ("stream" if method.client_streaming else "unary") + ("_stream" if method.server_streaming else "_unary")
        upstream = getattr(channel, kind)(path, _identity, _identity, _registered_method=True)

        if not method.client_streaming and not method.server_streaming:
            async def unary_unary(request, context):
                md, timeout, _ = await admit(context)
                await check(context, request)
                call = upstream(request, metadata=md, timeout=timeout)
                try:
                    reply = await call
                except grpc.aio.AioRpcError as e:
                    await relay_error(context, e)
                await context.send_initial_metadata(tuple(await call.initial_metadata() or ()))
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                return reply
            return grpc.unary_unary_rpc_method_handler(unary_unary, _identity, _identity)

        if not method.client_streaming:
            async def unary_stream(request, context):
                md, timeout, admission = await admit(context, streaming=True)
                try:  # whatever ends the call (a refusal, the client leaving) gives the stream slot back
                    await check(context, request)
                    call = upstream(request, metadata=md, timeout=timeout)
                    async for item in relay(context, call, admission, headers_first=False):
                        yield item
                finally:
                    admission.release()
            return grpc.unary_stream_rpc_method_handler(unary_stream, _identity, _identity)

        if not method.server_streaming:
            async def stream_unary(request_iterator, context):
                md, timeout, _ = await admit(context)
                call = upstream(request_iterator, metadata=md, timeout=timeout)
                try:
                    reply = await call
                except grpc.aio.AioRpcError as e:
                    await relay_error(context, e)
                await context.send_initial_metadata(tuple(await call.initial_metadata() or ()))
                context.set_trailing_metadata(tuple(await call.trailing_metadata() or ()))
                return reply
            return grpc.stream_unary_rpc_method_handler(stream_unary, _identity, _identity)

        async def stream_stream(request_iterator, context):
            md, timeout, admission = await admit(context, streaming=True)
            try:
                call = upstream(request_iterator, metadata=md, timeout=timeout)
                async for item in relay(context, call, admission, headers_first=True):
                    yield item
            finally:
                admission.release()
        return grpc.stream_stream_rpc_method_handler(stream_stream, _identity, _identity)
