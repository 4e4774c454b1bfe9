"""What the three edge protocols share about calling a service: finding the method, the deadline,
the status of a failed call, and knowing when a server stream has opened."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import re

from google.protobuf import descriptor, descriptor_pool
from google.rpc import status_pb2
import grpc
from grpc_status import rpc_status

from mesh import errors
from mesh.interceptor import method_access

# Unary calls without a client deadline get this one; streams get none (a watch may stay open for hours).
UNARY_DEADLINE = 30.0
_UNITS = {"H": 3600, "M": 60, "S": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_TIMEOUT = re.compile(r"[0-9]{1,8}[HMSmun]")  # the gRPC spec: at most 8 ASCII digits and a unit


@functools.lru_cache(maxsize=1024)  # the contracts do not change while the edge runs; bounded: the path is the client's
def lookup(path: str, prefixes: tuple[str, ...] = ("petplatform.",)) -> descriptor.MethodDescriptor | None:
    """The method descriptor of '/pkg.Service/Method' if its service is one the edge exposes."""
    service_name, _, method_name = path.lstrip("/").partition("/")
    if not service_name.startswith(prefixes):
        return None
    try:
        return descriptor_pool.Default().FindServiceByName(service_name).methods_by_name.get(method_name)
    except KeyError:
        return None


@functools.cache  # asked with the paths lookup() found only: one entry per method
def access_of(path: str) -> int:
    """method_access, read from the contract once per method."""
    return method_access(path)


def deadline(grpc_timeout: str | None, streaming: bool) -> float | None:
    """Seconds from a `grpc-timeout` header (e.g. `500m`, `2S`), capped for unary calls."""
    cap = None if streaming else UNARY_DEADLINE
    if grpc_timeout is None or not _TIMEOUT.fullmatch(grpc_timeout):
        return cap
    asked = int(grpc_timeout[:-1]) * _UNITS[grpc_timeout[-1]]
    return asked if cap is None else min(cap, asked)


def status_of(e: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status of a failed call, details included when the service sent them."""
    return rpc_status.from_call(e) or status_pb2.Status(code=e.code().value[0], message=e.details() or "")


async def stream_opened(call) -> bool:
    """Waits for a server stream's headers. False means the service refused the call outright
    (trailers-only), so the caller can answer with an ordinary error instead of an open stream."""
    await call.initial_metadata()
    return not call.done()


def edge_shutting_down() -> errors.ApiError:
    """How the edge ends the streams it relays when it stops: the client should reconnect."""
    return errors.ApiError(grpc.StatusCode.UNAVAILABLE, "the edge is shutting down; reconnect", "EDGE_SHUTTING_DOWN")


class OpenStreams:
    """The server streams the edge relays, on every protocol, so stopping can end them with a status
    rather than hang on them; once stopping, new ones are refused."""

    def __init__(self):
        self._calls: set = set()
        self.closing = False

    @contextlib.contextmanager
    def relaying(self, call):
        if self.closing:
            call.cancel()
            raise edge_shutting_down()
        self._calls.add(call)
        try:
            yield
        finally:
            self._calls.discard(call)
            call.cancel()  # the client went away or the stream ended: so does the upstream call

    def end_all(self) -> None:
        self.closing = True
        for call in list(self._calls):
            call.cancel()

    def ended_by_shutdown(self) -> bool:
        """Inside a relay that just saw CancelledError: was it the shutdown (not the client leaving)?"""
        task = asyncio.current_task()
        return self.closing and task is not None and not task.cancelling()

    def __len__(self) -> int:
        return len(self._calls)
