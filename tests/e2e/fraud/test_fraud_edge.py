"""FraudService through the edge over real HTTP: REST/JSON and gRPC-Web with the caller's token, refusals as
HTTP codes."""
from __future__ import annotations

from petplatform.fraud.v1 import fraud_pb2, fraud_pb2_grpc
from tests.support.platform import EdgeClient
from tests.support.web import WebChannel, call, signup

SCAM = {"displayName": "Max", "species": "SPECIES_DOG", "breed": "labrador",
        "description": "Puppy for $80, pay with a gift card, no visits, he will be delivered to you"}


async def test_score_listing_and_message_over_rest_and_grpc_web(edge: EdgeClient):
    user, token = await signup(edge, "Seller")
    status, body, _ = await call(edge, "POST", "/v1/fraud:scoreListing", {"listing": SCAM}, token)
    assert status == 200, body
    assessed = body["assessment"]
    assert assessed["action"] in ("RISK_ACTION_REVIEW", "RISK_ACTION_HOLD") and assessed["user"] == user
    assert "factors" not in assessed  # a user is not told what to change
    status, body, _ = await call(edge, "POST", "/v1/fraud:scoreMessage", {"text": "Is she good with cats?"}, token)
    assert status == 200 and body["assessment"]["action"] == "RISK_ACTION_NONE"

    status, err, _ = await call(edge, "POST", f"/v1/{user}:scoreFraud", {}, token)
    assert status == 403 and err["code"] == 7  # ScoreUser is for staff
    status, err, _ = await call(edge, "POST", "/v1/fraud:scoreMessage", {"text": ""}, token)
    assert status == 400 and err["details"][0]["reason"] == "MISSING_FIELD"  # a REQUIRED field, by the interceptor
    status, _, _ = await call(edge, "POST", "/v1/fraud:scoreListing", {"listing": SCAM})
    assert status == 401

    async with WebChannel(edge.url) as web:
        reply = await fraud_pb2_grpc.FraudServiceStub(web).ScoreMessage(
            fraud_pb2.ScoreMessageRequest(text="Western Union only, today"),
            metadata=(("authorization", f"Bearer {token}"),))
    assert reply.assessment.action in (fraud_pb2.RISK_ACTION_REVIEW, fraud_pb2.RISK_ACTION_HOLD)
