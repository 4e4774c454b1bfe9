"""Per-request state the REST envelope sets for every HTTP handler (REST and gRPC-Web)."""
from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
EDGE_HEADERS = web.RequestKey("edge_headers", dict)  # headers every response carries
CLIENT_IP = web.RequestKey("client_ip", str)
BODY_TIMED_OUT = web.RequestKey("body_timed_out", bool)  # the rest of the body may still come
