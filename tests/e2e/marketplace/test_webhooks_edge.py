"""Webhooks through the edge (`POST /v1/webhooks/{provider}`), verified against the raw body: replayed,
forged, stale and out of order; 3-D Secure over REST; and a booking over REST and gRPC-Web."""
from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

from google.protobuf import field_mask_pb2
import grpc
import pytest
import sonora.protocol

from mesh.config import LOCAL_BANK_PATH
from petplatform.marketplace.v1 import marketplace_pb2 as m
from petplatform.marketplace.v1 import marketplace_pb2_grpc
from mesh import webhook_signature as webhooks
from tests.e2e.marketplace.conftest import LOCAL_SECRET, STRIPE_SECRET
from tests.support.web import WebChannel
from tests.support.market import (
    B, P, a_slot, balanced, book, booking_reaches, business, eur, owner_with_dog, payment_reaches, payments, slots,
)
from tests.support.platform import EdgeClient, module_of


def event(event_id: str, kind: str, obj: dict) -> bytes:
    return json.dumps({"id": event_id, "object": "event", "type": kind, "created": int(time.time()),
                       "data": {"object": obj}}).encode()


async def post(edge: EdgeClient, provider: str, body: bytes, signature: str | None):
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    async with edge.http.post(f"{edge.url}/v1/webhooks/{provider}", data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_forged_stale_and_unsigned_webhooks_are_refused(market_edge: EdgeClient):
    body = event("evt_forged", "payment_intent.succeeded", {"id": "pi_x", "metadata": {}})
    now = int(time.time())
    for signature in (webhooks.sign(body, b"not the secret", now),  # forged
                      webhooks.sign(body, STRIPE_SECRET.encode(), now - 301),  # stale
                      "", None, "t=abc,v1=zz"):
        status, answer = await post(market_edge, "stripe", body, signature)
        assert status == 403, (signature, answer)
        assert answer["details"][0]["reason"] == "INVALID_SIGNATURE"
    # Signed right but the body changed on the way.
    status, _ = await post(market_edge, "stripe", body + b" ", webhooks.sign(body, STRIPE_SECRET.encode(), now))
    assert status == 403
    status, answer = await post(market_edge, "stripe", b"not json", webhooks.sign(b"not json", STRIPE_SECRET.encode(),
                                                                                   now))
    assert status == 400
    status, answer = await post(market_edge, "paypal", body, "")
    assert status == 400 and answer["details"][0]["reason"] == "PROVIDER_NOT_CONFIGURED"
    status, _ = await post(market_edge, "nobody", body, "")
    assert status == 404


async def test_an_async_charge_settles_once_whatever_the_order_or_repeats(market_edge: EdgeClient):
    api = market_edge.api
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_async")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_PROCESSING)
    obj = {"id": charge.provider_reference, "object": "payment_intent", "status": "succeeded",
           "metadata": {"idempotency_key": charge.idempotency_key}}
    secret = LOCAL_SECRET.encode()
    succeeded = event("evt_ok_1", "payment_intent.succeeded", obj)
    status, answer = await post(market_edge, "local", succeeded, webhooks.sign(succeeded, secret, int(time.time())))
    assert (status, answer) == (200, {"received": True, "duplicate": False})
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    # Replayed (a fresh signature, the same event id): recognised, nothing moves.
    status, answer = await post(market_edge, "local", succeeded, webhooks.sign(succeeded, secret, int(time.time())))
    assert (status, answer["duplicate"]) == (200, True)
    # An older event arriving late, and a failure report for a charge already settled: ignored.
    for n, kind in enumerate(("payment_intent.processing", "payment_intent.payment_failed")):
        late = event(f"evt_late_{n}", kind, {**obj, "status": "processing"})
        status, answer = await post(market_edge, "local", late, webhooks.sign(late, secret, int(time.time())))
        assert (status, answer["duplicate"]) == (200, False)
    # The local provider's own webhook for the same charge comes too: still one charge, one posting.
    await module_of(api, "payment").local.settle(charge.provider_reference)
    (settled,) = [x for x in await payments(api, owner, b.name) if x.kind == P.KIND_CHARGE]
    assert settled.state == P.STATE_SUCCEEDED
    got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    assert got.state == B.STATE_ACCEPTED
    ledger = (await balanced(api, api.admin))["EUR"]
    assert ledger["cash"] == 2500 and ledger["escrow"] == -2500


async def test_delete_business_over_rest(market_edge: EdgeClient):
    """DELETE /v1/businesses/{id}: refused (400, BUSINESS_HAS_OPEN_BOOKINGS) with a request open,
    then with ?force=true the business and its answer carry delete_time; others get 404."""
    api = market_edge.api
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=23)).start_time, [pet])
    auth = {"Authorization": f"Bearer {seller.access_token}"}
    async with market_edge.http.delete(f"{market_edge.url}/v1/{biz.name}", headers=auth) as r:
        assert r.status == 400 and (await r.json())["details"][0]["reason"] == "BUSINESS_HAS_OPEN_BOOKINGS", \
            await r.text()
    async with market_edge.http.delete(f"{market_edge.url}/v1/{biz.name}", headers=auth,
                                       params={"force": "true"}) as r:
        assert r.status == 200, await r.text()
        gone = await r.json()
    assert gone["name"] == biz.name and gone["deleteTime"]
    async with market_edge.http.get(f"{market_edge.url}/v1/{biz.name}") as r:
        assert r.status == 404


async def test_booking_over_rest(market_edge: EdgeClient):
    api = market_edge.api
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    day = (await a_slot(api, svc.name)).start_time.ToDatetime().date()
    async with market_edge.http.get(f"{market_edge.url}/v1/{svc.name}:availableSlots", params={
            "start_date.year": day.year, "start_date.month": day.month, "start_date.day": day.day,
            "end_date.year": day.year, "end_date.month": day.month, "end_date.day": day.day}) as r:
        assert r.status == 200, await r.text()
        slots = (await r.json())["slots"]
    auth = {"Authorization": f"Bearer {owner.access_token}"}
    async with market_edge.http.post(f"{market_edge.url}/v1/bookings", headers=auth, json={
            "service": svc.name, "pets": [pet], "startTime": slots[0]["startTime"],
            "paymentMethod": "pm_card_visa"}) as r:
        assert r.status == 200, await r.text()
        made = await r.json()
    assert made["state"] == "STATE_REQUESTED" and made["price"] == {"currencyCode": "EUR", "units": "25"}
    stranger = await api.signup("Stranger")
    async with market_edge.http.get(f"{market_edge.url}/v1/{made['name']}",
                                    headers={"Authorization": f"Bearer {stranger.access_token}"}) as r:
        assert r.status == 404
    async with market_edge.http.post(f"{market_edge.url}/v1/bookings", headers=auth, json={
            "service": svc.name, "pets": [pet], "startTime": slots[0]["startTime"],
            "paymentMethod": "pm_card_visa"}) as r:
        assert r.status == 400 and (await r.json())["details"][0]["reason"] == "SLOT_FULL"


async def test_a_3d_secure_charge_over_rest_gives_the_payer_its_client_secret(market_edge: EdgeClient):
    """The local provider asks for 3-D Secure as Stripe does: the booking says REQUIRES_ACTION, the
    payer reads the client secret over REST (the business does not), and the payer's step, reported
    by a webhook, settles the charge once."""
    api = market_edge.api
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_authenticationRequired")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REQUIRES_ACTION)

    async def over_rest(who) -> dict:
        async with market_edge.http.get(f"{market_edge.url}/v1/payments", params={"booking": b.name},
                                        headers={"Authorization": f"Bearer {who.access_token}"}) as r:
            assert r.status == 200, await r.text()
            return next(x for x in (await r.json())["payments"] if x["kind"] == "KIND_CHARGE")
    mine = await over_rest(owner)
    assert mine["state"] == "STATE_REQUIRES_ACTION"
    assert mine["clientSecret"] == charge.client_secret and mine["clientSecret"].startswith(charge.provider_reference)
    assert "clientSecret" not in await over_rest(seller)
    async with market_edge.http.get(f"{market_edge.url}/v1/{b.name}",
                                    headers={"Authorization": f"Bearer {owner.access_token}"}) as r:
        assert (await r.json())["paymentStatus"] == "PAYMENT_STATUS_REQUIRES_ACTION"

    await module_of(api, "payment").local.authenticate(charge.provider_reference)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    assert "clientSecret" not in await over_rest(owner)
    ledger = (await balanced(api, api.admin))["EUR"]
    assert ledger["cash"] + ledger["escrow"] == 0


async def test_booking_over_grpc_web(market_edge: EdgeClient):
    """The marketplace through the edge's gRPC-Web, with an off-the-shelf client (sonora): free
    slots, a booking, the business accepting (the local provider charges), a full slot refused as
    FAILED_PRECONDITION, and a service changed with an update mask."""
    api = market_edge.api
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    rival, rival_pet = await owner_with_dog(api, "Rival")
    day = (await a_slot(api, svc.name)).start_time.ToDatetime().date()
    async with WebChannel(market_edge.url) as channel:
        market = marketplace_pb2_grpc.MarketplaceServiceStub(channel)
        free = (await market.ListAvailableSlots(m.ListAvailableSlotsRequest(
            service=svc.name, start_date={"year": day.year, "month": day.month, "day": day.day},
            end_date={"year": day.year, "month": day.month, "day": day.day}))).slots
        assert free == await slots(api, svc.name, day, day)
        made = (await market.CreateBooking(m.CreateBookingRequest(booking=m.Booking(
            service=svc.name, pets=[pet], start_time=free[0].start_time, payment_method="pm_card_visa"),
            request_id="web-1"), metadata=owner.md)).booking
        assert made.state == B.STATE_REQUESTED and made.price == eur(2500)
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await market.CreateBooking(m.CreateBookingRequest(booking=m.Booking(
                service=svc.name, pets=[rival_pet], start_time=free[0].start_time, payment_method="pm_card_visa")),
                metadata=rival.md)
        # sonora keeps no trailers but grpc-status and grpc-message (the ErrorInfo reason is in the
        # grpc-status-details-bin trailer, which tests/e2e/edge reads from raw frames).
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "no room left" in e.value.details()
        accepted = (await market.AcceptBooking(m.AcceptBookingRequest(name=made.name), metadata=seller.md)).booking
        assert accepted.state == B.STATE_ACCEPTED
        changed = (await market.UpdateService(m.UpdateServiceRequest(
            service=m.Service(name=svc.name, price=eur(3000)), update_mask=field_mask_pb2.FieldMask(paths=["price"])),
            metadata=seller.md)).service
        assert changed.price == eur(3000)
        with pytest.raises(sonora.protocol.WebRpcError) as e:
            await market.UpdateService(m.UpdateServiceRequest(
                service=m.Service(name=svc.name, price=eur(1)), update_mask=field_mask_pb2.FieldMask(paths=["price"])),
                metadata=rival.md)
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await booking_reaches(api, owner, made.name, payment_status=B.PAYMENT_STATUS_PAID, price=eur(2500))


async def test_3d_secure_at_the_local_providers_bank_page(market_edge: EdgeClient):
    """A charge the local provider answers `requires_action` has an action_url on the edge's bank page: the
    payer confirms there and the booking is paid; refusing fails the charge and cancels the booking. A
    reference that is not a payment intent's is no page."""
    api = market_edge.api
    seller = await api.signup("Seller")
    _, svc = await business(api, seller)
    owner, pet = await owner_with_dog(api)
    outcomes = {}
    for decision, days in (("approve", 10), ("refuse", 11)):
        b = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=days)).start_time, [pet],
                       pm="pm_card_threeDSecure2Required")
        await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
        charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
        path = urlsplit(charge.action_url).path
        assert path == f"{LOCAL_BANK_PATH}/{charge.provider_reference}"
        async with market_edge.http.get(f"{market_edge.url}{path}") as r:
            assert r.status == 200 and "Confirm payment" in await r.text()
        async with market_edge.http.post(f"{market_edge.url}{path}", data={"decision": decision}) as r:
            assert r.status == 200, await r.text()
        outcomes[decision] = b
    await booking_reaches(api, owner, outcomes["approve"].name, payment_status=B.PAYMENT_STATUS_PAID)
    await booking_reaches(api, owner, outcomes["refuse"].name, state=B.STATE_CANCELLED,
                          payment_status=B.PAYMENT_STATUS_FAILED)
    async with market_edge.http.get(f"{market_edge.url}{LOCAL_BANK_PATH}/not-a-reference") as r:
        assert r.status == 404
    async with market_edge.http.post(f"{market_edge.url}{LOCAL_BANK_PATH}/pi_0123456789abcdef1",
                                     data={"decision": "maybe"}) as r:
        assert r.status == 400
