"""Payment providers' webhooks at `POST /v1/webhooks/{provider}`: not transcoded from JSON, because
the signature covers the raw bytes. The body goes to PaymentService.ReceiveWebhook untouched, with
the provider's signature headers, under the edge's policy for public calls (IP lists, rate limit)."""
from __future__ import annotations

from aiohttp import web
from google.api import httpbody_pb2
import grpc

from gateway.rest import RestEdge, error_response
from gateway.upstream import status_of
from petplatform.common.v1 import access_pb2
from petplatform.payment.v1 import payment_pb2, payment_pb2_grpc

PAYMENT_SERVICE = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name
PATH = "/v1/webhooks/{provider}"
DEADLINE_SECONDS = 10
# PayPal's transmission headers, which its verify-webhook-signature API checks (lowercased).
PASSED_HEADERS = ("paypal-transmission-id", "paypal-transmission-time", "paypal-transmission-sig",
                  "paypal-cert-url", "paypal-auth-algo")


class Webhooks:
    def __init__(self, rest: RestEdge):
        self.rest = rest

    async def receive(self, request: web.Request) -> web.Response:
        rest = self.rest
        admission = await rest.policy.admit(rest.client_ip(request), None, access_pb2.ACCESS_PUBLIC)
        try:
            body = await rest.read_body(request)
            message = payment_pb2.ReceiveWebhookRequest(
                provider=request.match_info["provider"],
                body=httpbody_pb2.HttpBody(content_type=request.content_type, data=body),
                signature=request.headers.get("Stripe-Signature", ""),
                headers={h: v for h in PASSED_HEADERS if (v := request.headers.get(h))})
            stub = payment_pb2_grpc.PaymentServiceStub(rest.channel_for(PAYMENT_SERVICE))
            try:
                answer = await stub.ReceiveWebhook(message, metadata=rest.forward_metadata(request),
                                                   timeout=DEADLINE_SECONDS)
            except grpc.aio.AioRpcError as e:
                return error_response(status_of(e), admission.headers())
            return web.json_response({"received": True, "duplicate": answer.duplicate}, headers=admission.headers())
        finally:
            admission.release()
