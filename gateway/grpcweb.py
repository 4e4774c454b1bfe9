"""gRPC-Web (binary and base64 text) on the edge's HTTP port: unary and server-streaming calls."""
from __future__ import annotations

import asyncio
import base64
import struct
import urllib.parse

from aiohttp import web
from google.rpc import status_pb2
import grpc

from mesh.limits import check_message_shape, decode
from gateway.request_keys import EDGE_HEADERS
from gateway.upstream import access_of, deadline, edge_shutting_down, lookup, status_of, stream_opened
from mesh import errors

DATA, TRAILERS = 0x00, 0x80


def frame(flag: int, payload: bytes) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


def first_message(body: bytes) -> bytes:
    if len(body) < 5:
        raise errors.invalid_argument(("body", "a gRPC-Web request needs one length-prefixed message"),
                                      reason="MALFORMED_GRPC_WEB")
    flag, length = struct.unpack(">BI", body[:5])
    if flag & 0x01:
        raise errors.invalid_argument(("body", "compressed messages are not supported"), reason="MALFORMED_GRPC_WEB")
    if flag != DATA or len(body) < 5 + length:
        raise errors.invalid_argument(("body", "truncated or malformed gRPC-Web frame"), reason="MALFORMED_GRPC_WEB")
    return body[5:5 + length]


def trailer_lines(status: status_pb2.Status, trailing: tuple = ()) -> list[tuple[str, str]]:
    lines = [("grpc-status", str(status.code)), ("grpc-message", urllib.parse.quote(status.message, safe=" "))]
    if status.details:
        lines.append(("grpc-status-details-bin", base64.b64encode(status.SerializeToString()).decode().rstrip("=")))
    lines += [(k, v) for k, v in trailing if isinstance(v, str) and not k.startswith("grpc-")]
    return lines


async def handle(edge, request: web.Request) -> web.StreamResponse:
    text = request.content_type.startswith("application/grpc-web-text")
    content_type = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"

    def encode(chunk: bytes) -> bytes:
        return base64.b64encode(chunk) if text else chunk

    edge_headers = request[EDGE_HEADERS]
    response = web.StreamResponse(status=200, headers={**edge_headers, "Content-Type": content_type})
    admission = None
    try:
        method = lookup(request.path)
        if method is None or method.client_streaming or request.method != "POST":
            raise errors.ApiError(grpc.StatusCode.UNIMPLEMENTED, f"unknown method {request.path}", "UNKNOWN_METHOD")
        admission = await edge.policy.admit(edge.client_ip(request), request.headers.get("Authorization"),
                                            access_of(request.path), streaming=method.server_streaming)
        response.headers.update(admission.headers())
        try:
            raw = await edge.read_body(request)
        except errors.ApiError as e:
            if e.reason != "BODY_TOO_LARGE":
                raise
            # as a gRPC server answers an oversized message
            raise errors.ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, e.message, e.reason) from None
        if text:
            try:
                raw = base64.b64decode(raw, validate=True)
            except ValueError:
                raise errors.invalid_argument(("body", "not base64"), reason="MALFORMED_GRPC_WEB") from None
        message = first_message(raw)
        await decode(edge.decoder, len(message), check_message_shape, method.input_type, message)
        kwargs = dict(metadata=edge.forward_metadata(request),
                      timeout=deadline(request.headers.get("grpc-timeout"), method.server_streaming))
        if method.server_streaming:
            call = edge.raw_callable(method)(message, **kwargs)
            with edge.streams.relaying(call):
                try:
                    if await stream_opened(call):
                        await response.prepare(request)  # headers now: the browser sees the stream open
                    async for item in call:
                        if not response.prepared:  # a stream that ended, with messages, before it opened
                            await response.prepare(request)
                        await response.write(encode(frame(DATA, item)))
                except asyncio.CancelledError:
                    if not edge.streams.ended_by_shutdown():
                        raise  # the browser went away
                    raise edge_shutting_down() from None
            trailing = tuple(await call.trailing_metadata() or ())
        else:
            call = edge.raw_callable(method)(message, **kwargs)
            reply = await call
            await response.prepare(request)
            await response.write(encode(frame(DATA, reply)))
            trailing = tuple(await call.trailing_metadata() or ())
        status = status_pb2.Status(code=0)
    except grpc.aio.AioRpcError as e:
        status, trailing = status_of(e), tuple(e.trailing_metadata() or ())
    except errors.ApiError as e:
        status, trailing = e.to_status(), ()
        if adm := getattr(e, "admission", None):
            response.headers.update(adm.headers())
    finally:
        if admission:
            admission.release()
    lines = trailer_lines(status, trailing)
    if not response.prepared:
        # Trailers-only: nothing was sent yet, so the status travels in the HTTP headers.
        response.headers.update(dict(lines))
        response.headers["Content-Length"] = "0"
        await response.prepare(request)
    else:
        await response.write(encode(frame(TRAILERS, "".join(f"{k}: {v}\r\n" for k, v in lines).encode())))
    await response.write_eof()
    return response
