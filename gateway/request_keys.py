"""Per-request state the REST envelope sets for every HTTP handler (REST and gRPC-Web)."""
from aiohttp import web

REQUEST_ID = web.RequestKey("request_id", str)
EDGE_HEADERS = web.RequestKey("edge_headers", dict[str, str])  # headers every response carries
CLIENT_IP = web.RequestKey("client_ip", str)
# The body was not read to its end (too slow, or undecodable): answer, then close the connection.
BODY_ABANDONED = web.RequestKey("body_abandoned", bool)
