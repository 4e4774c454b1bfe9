"""What a gRPC error carries: the google.rpc.Status, its ErrorInfo reason and BadRequest field violations."""
from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2


def status_of(err: grpc.aio.AioRpcError):
    """The google.rpc.Status a server attached to an error."""
    from grpc_status import rpc_status
    return rpc_status.from_call(err)


def error_reason(err: grpc.aio.AioRpcError) -> str:
    for d in status_of(err).details:
        info = error_details_pb2.ErrorInfo()
        if d.Unpack(info):
            return info.reason
    return ""


async def expect(code: grpc.StatusCode, call, reason: str | None = None) -> grpc.aio.AioRpcError:
    """Awaits `call`, which must fail with `code` (and the ErrorInfo `reason`, if given); the error."""
    with pytest.raises(grpc.aio.AioRpcError) as e:
        await call
    assert e.value.code() == code, e.value.details()
    if reason:
        assert error_reason(e.value) == reason
    return e.value


def violations(err) -> dict[str, str]:
    """field -> description of every BadRequest field violation of an error."""
    out = {}
    for d in status_of(err).details:
        br = error_details_pb2.BadRequest()
        if d.Unpack(br):
            out.update({v.field: v.description for v in br.field_violations})
    return out
