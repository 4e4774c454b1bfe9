"""The edge's HTTP/1.1 connections, below the application: how long a client may take to send its
request headers, and how requests that fail before they reach the application (bad framing,
oversized headers or URL) are answered: as every edge error is, google.rpc.Status JSON without the
Server banner, and logged as a warning, never an ERROR traceback nor the input echoed.

aiohttp (pinned) builds its connections in web.Server.__call__ and answers such requests in
RequestHandler.handle_error; the classes here take those two places."""
from __future__ import annotations

import asyncio

from aiohttp import http_exceptions, web
from aiohttp.streams import StreamReader
from google.protobuf import json_format
import structlog

from gateway.rest import API_CSP, SECURITY_HEADERS
from mesh import errors
from mesh.interceptor import request_id_from

log = structlog.get_logger("edge.http")

# What went wrong, in words of our own: aiohttp's messages quote the request back.
_MALFORMED = (
    (http_exceptions.LineTooLong, "the request line or a header is too long"),
    (http_exceptions.BadHttpMethod, "not an HTTP method"),
    (http_exceptions.InvalidURLError, "malformed URL"),
    (http_exceptions.InvalidHeader, "malformed header"),
    (http_exceptions.PayloadEncodingError, "malformed body framing"),
    (http_exceptions.BadStatusLine, "malformed request line"),
)


class EdgeRunner(web.AppRunner):
    """AppRunner whose connections are EdgeConnections."""

    def __init__(self, app: web.Application, *, header_timeout: float, **kwargs):
        super().__init__(app, **kwargs)
        self.header_timeout = header_timeout

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts and freezes the application, as AppRunner does
        return _Server(made.request_handler, request_factory=made.request_factory,
                       handler_cancellation=made.handler_cancellation, header_timeout=self.header_timeout,
                       **made._kwargs)


class _Server(web.Server):
    def __init__(self, handler, *, header_timeout: float, **kwargs):
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout

    def __call__(self) -> EdgeConnection:
        return EdgeConnection(self, loop=self._loop, header_timeout=self.header_timeout, **self._kwargs)


class EdgeConnection(web.RequestHandler):
    """Idle connections close after aiohttp's keepalive_timeout. Here: once a request's first byte has
    come, its headers must be complete within header_timeout, or the connection is closed."""

    def __init__(self, manager: web.Server, *, header_timeout: float, **kwargs):
        super().__init__(manager, **kwargs)
        self.header_timeout = header_timeout
        self.header_deadline: asyncio.TimerHandle | None = None
        self.body: StreamReader | None = None  # of the last request whose headers were complete

    def data_received(self, data: bytes) -> None:
        complete = self._request_count
        super().data_received(data)
        if self._request_count > complete:  # headers complete (or refused)
            self._stop_header_deadline()
            self.body = self._messages[-1][1] if self._messages else None
        elif data and self.header_deadline is None and (self.body is None or self.body.is_eof()):
            # Not part of a body: the first bytes of the next request.
            self.header_deadline = self._loop.call_later(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._stop_header_deadline()
        super().connection_lost(exc)

    def _stop_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_too_slow(self) -> None:
        self.header_deadline = None
        log.warning("request headers too slow: connection closed", timeout_seconds=self.header_timeout,
                    client=_address(self.peername))
        self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status >= 500:
            self.logger.error("edge failure outside the application", exc_info=exc)
            err = errors.internal()
        else:
            what = next((text for cls, text in _MALFORMED if isinstance(exc, cls)), "malformed HTTP request")
            log.warning("malformed HTTP request", reason=what, client=request.remote)
            err = errors.invalid_argument(("request", what), reason="MALFORMED_HTTP")
        if request.writer.output_size > 0:  # as aiohttp: a response has begun, the connection is broken
            raise ConnectionError("response already started")
        headers = {**SECURITY_HEADERS, "Content-Security-Policy": API_CSP, "X-Request-Id": request_id_from(None)}
        response = _Bannerless(text=json_format.MessageToJson(err.to_status(), indent=None), status=status,
                               content_type="application/json", headers=headers)
        response.force_close()
        return response


class _Bannerless(web.Response):
    """aiohttp adds its Server banner while it prepares headers; errors it answers itself never reach
    the application's on_response_prepare, which drops it everywhere else."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self.headers.popall("Server", None)



def _address(peername) -> str | None:
    return peername[0] if isinstance(peername, tuple) else peername
