"""The PayPal adapter against a local stand-in of PayPal's REST API (no network): the OAuth token
it gets and keeps, what it sends (PayPal-Request-Id, amounts in the currency's decimals, a vaulted
payment source, the capture, the refund of the capture, a one-item Payouts batch) and how it reads
PayPal's answers (a decline, a payer action, an outage, an expired token, a request id reused with
other parameters), and how it has PayPal verify a webhook; then a platform with
payment_provider=paypal running the booking flows, and PayPal's webhooks through the edge over HTTP
(forged, replayed, out of order: a payer action completed or denied, payout items)."""
from __future__ import annotations

import datetime as dt

import pytest

from mesh.config import ConfigError, load_settings
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.payment.paypal_provider import PayPalProvider, money
from services.payment.providers import Outcome, ProviderDown, ProviderRefused
from tests.e2e.marketplace.conftest import OPTIONS, admin_session
from tests.support.market import (
    B, P, a_slot, balanced, book, booking_reaches, business, owner_with_dog, payment_reaches, payments,
)
from tests.support.matching import until
from tests.support.paypal_standin import CLIENT_ID, CLIENT_SECRET, WEBHOOK_ID, PayPalStandIn
from tests.support.platform import Api, EdgeClient, embedded_settings, module_of, start_edge, start_platform

META = {"booking": "bookings/b1", "payment": "payments/p1"}
CAPTURE = r"/v2/checkout/orders/[^/]+/capture"


@pytest.fixture
async def standin():
    s = PayPalStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def paypal(standin):
    provider = PayPalProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_base=standin.url)
    yield provider
    await provider.close()


def test_amounts_are_decimal_strings_in_the_currencys_own_decimals():
    assert money(2500, "EUR") == {"currency_code": "EUR", "value": "25.00"}
    assert money(2507, "usd") == {"currency_code": "USD", "value": "25.07"}
    assert money(2000, "JPY") == {"currency_code": "JPY", "value": "2000"}
    assert money(5, "EUR")["value"] == "0.05"


async def test_a_charge_is_an_order_on_the_vaulted_source_captured_with_the_flows_keys(paypal, standin):
    out = await paypal.charge(key="bookings/b1:charge", amount=2500, currency="EUR", payment_method="vault_ok",
                              metadata=META)
    assert out.state == "succeeded" and out.reference.startswith("CAP")
    (order,) = standin.posts("/v2/checkout/orders")
    assert order.headers["PayPal-Request-Id"] == "bookings/b1:charge"
    assert order.body["intent"] == "CAPTURE" and order.body["payment_source"] == {"paypal": {"vault_id": "vault_ok"}}
    unit = order.body["purchase_units"][0]
    assert (unit["amount"], unit["custom_id"], unit["reference_id"]) == (
        {"currency_code": "EUR", "value": "25.00"}, "bookings/b1:charge", "bookings/b1")
    (capture,) = standin.posts(CAPTURE)
    assert capture.headers["PayPal-Request-Id"] == "bookings/b1:charge:capture"
    # One token, asked for once, used for both calls.
    (token,) = standin.posts("/v1/oauth2/token")
    assert token.body == {"grant_type": "client_credentials"}
    assert order.headers["Authorization"] == capture.headers["Authorization"]

    again = await paypal.charge(key="bookings/b1:charge", amount=2500, currency="EUR", payment_method="vault_ok",
                                metadata=META)
    assert again == out and [r.replayed for r in standin.posts(CAPTURE)] == [False, True]
    assert len([o for o in standin.created.values() if o["id"].startswith("ORD")]) == 1


async def test_a_decline_and_a_payer_action_are_outcomes(paypal, standin):
    declined = await paypal.charge(key="k2", amount=1000, currency="EUR", payment_method="vault_declined",
                                   metadata=META)
    assert (declined.state, declined.failure) == ("failed", "INSTRUMENT_DECLINED")
    action = await paypal.charge(key="k3", amount=1000, currency="EUR", payment_method="vault_payer_action",
                                 metadata=META)
    assert action.state == "requires_action" and action.reference.startswith("ORD")
    assert action.action_url == f"https://www.paypal.test/checkoutnow?token={action.reference}"
    assert not [r for r in standin.posts(CAPTURE) if action.reference in r.path]  # nothing captured


async def test_an_outage_and_an_expired_token_are_provider_down_and_the_retry_charges_once(paypal, standin):
    standin.fail_next = 1
    with pytest.raises(ProviderDown):
        await paypal.charge(key="k4", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
    standin.expire_tokens = True
    with pytest.raises(ProviderDown, match="401"):
        await paypal.charge(key="k4", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
    out = await paypal.charge(key="k4", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
    assert out.state == "succeeded"
    assert len(standin.posts("/v1/oauth2/token")) == 2  # a fresh token after the 401
    assert len([o for o in standin.created.values() if o["id"].startswith("CAP")]) == 1


async def test_no_answer_wrong_credentials_and_a_reused_key_are_told_apart(standin):
    await standin.stop()
    down = PayPalProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_base=standin.url)
    try:
        with pytest.raises(ProviderDown):
            await down.charge(key="k5", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
    finally:
        await down.close()
    await standin.start()
    wrong = PayPalProvider(client_id=CLIENT_ID, client_secret="wrong", api_base=standin.url)
    right = PayPalProvider(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, api_base=standin.url)
    try:
        with pytest.raises(ProviderRefused, match="401"):
            await wrong.charge(key="k6", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
        await right.charge(key="k7", amount=1000, currency="EUR", payment_method="vault_ok", metadata=META)
        with pytest.raises(ProviderRefused, match="422"):
            await right.charge(key="k7", amount=2000, currency="EUR", payment_method="vault_ok", metadata=META)
    finally:
        await wrong.close()
        await right.close()


async def test_a_refund_refunds_the_capture_in_its_currency(paypal, standin):
    charge = await paypal.charge(key="b:charge", amount=3000, currency="EUR", payment_method="vault_ok",
                                 metadata=META)
    out = await paypal.refund(key="b:refund", charge=charge.reference, amount=1500, currency="EUR", metadata=META)
    assert out.state == "succeeded" and out.reference.startswith("REF")
    (sent,) = standin.posts(r"/v2/payments/captures/[^/]+/refund")
    assert sent.path == f"/v2/payments/captures/{charge.reference}/refund"
    assert (sent.headers["PayPal-Request-Id"], sent.body["amount"]) == ("b:refund", {"currency_code": "EUR",
                                                                                      "value": "15.00"})
    with pytest.raises(ProviderRefused, match="422"):
        await paypal.refund(key="b:refund-2", charge=charge.reference, amount=2000, currency="EUR", metadata=META)


async def test_a_payout_is_a_one_item_batch_to_the_business_paypal_account(paypal, standin):
    out = await paypal.payout(key="b:payout", account="PAYERID000001", amount=2250, currency="JPY", metadata=META)
    assert out == Outcome("succeeded", out.reference) and out.reference.startswith("BATCH")
    (sent,) = standin.posts("/v1/payments/payouts")
    assert sent.headers["PayPal-Request-Id"] == "b:payout"
    assert sent.body["sender_batch_header"]["sender_batch_id"] == "b:payout"
    assert sent.body["items"] == [{"recipient_type": "PAYPAL_ID", "receiver": "PAYERID000001",
                                   "amount": {"value": "2250", "currency": "JPY"}, "sender_item_id": "payments/p1",
                                   "note": "bookings/b1"}]
    bad = await paypal.payout(key="c:payout", account="NOSUCHPAYER00", amount=100, currency="EUR", metadata=META)
    assert bad.state == "failed" and "RECEIVER_UNREGISTERED" in bad.failure


def test_the_paypal_provider_needs_its_credentials(tmp_path):
    with pytest.raises(ConfigError, match="PAYPAL_CLIENT_ID"):
        load_settings(data_dir=tmp_path, payment_provider="paypal")
    with pytest.raises(ConfigError, match="PAYPAL_WEBHOOK_ID"):
        load_settings(data_dir=tmp_path, payment_provider="paypal", paypal_client_id="id", paypal_client_secret="s")
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, payment_provider="paypal", paypal_client_id="id",
                      paypal_client_secret="s", paypal_webhook_id="w", paypal_api_base="ftp://x")
    assert load_settings(data_dir=tmp_path, payment_provider="paypal", paypal_client_id="id",
                         paypal_client_secret="s", paypal_webhook_id="w").payment_provider == "paypal"


async def test_a_webhook_is_verified_by_paypal_with_the_event_sent_back_verbatim(paypal, standin):
    body, headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", {"id": "CAP1", "status": "COMPLETED"})
    lowered = {k.lower(): v for k, v in headers.items()}
    assert await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    (sent,) = standin.posts("/v1/notifications/verify-webhook-signature")
    assert sent.headers["Authorization"].startswith("Bearer ")
    assert sent.body["webhook_id"] == WEBHOOK_ID and sent.body["webhook_event"]["resource"]["id"] == "CAP1"
    assert sent.body["transmission_sig"] == headers["PAYPAL-TRANSMISSION-SIG"]
    # Another body under these headers, another webhook id, a header missing: not verified.
    tampered = body.replace(b"CAP1", b"CAP2")
    assert not await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=tampered)
    assert not await paypal.verify_webhook(webhook_id="WH-OTHER", headers=lowered, body=body)
    calls = len(standin.received)
    del lowered["paypal-cert-url"]
    assert not await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    assert len(standin.received) == calls  # refused without asking PayPal
    # PayPal unavailable, or our token expired: it cannot say (the webhook comes again).
    lowered["paypal-cert-url"] = headers["PAYPAL-CERT-URL"]
    standin.fail_next = 1
    with pytest.raises(ProviderDown):
        await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    standin.expire_tokens = True
    standin.tokens.clear()
    with pytest.raises(ProviderDown, match="401"):
        await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    assert await paypal.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    wrong = PayPalProvider(client_id=CLIENT_ID, client_secret="wrong", api_base=standin.url)
    try:
        with pytest.raises(ProviderRefused, match="401"):
            await wrong.verify_webhook(webhook_id=WEBHOOK_ID, headers=lowered, body=body)
    finally:
        await wrong.close()


# --- a platform on PayPal ---

@pytest.fixture(scope="module")
async def on_paypal(tmp_path_factory, smtp_sink):
    standin = PayPalStandIn()
    await standin.start()
    settings = embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **{
        **OPTIONS, "payment_provider": "paypal", "paypal_client_id": CLIENT_ID, "paypal_client_secret": CLIENT_SECRET,
        "paypal_api_base": standin.url, "paypal_webhook_id": WEBHOOK_ID})
    platform = await start_platform(settings)
    api = Api(platform, smtp_sink)
    api.admin = await admin_session(api)
    api.standin = standin  # type: ignore[attr-defined]
    yield api
    await api.channel.close()
    await platform.stop(grace=1)
    await standin.stop()


async def test_on_paypal_accept_captures_cancel_refunds_complete_pays_out(on_paypal: Api):
    api, standin = on_paypal, on_paypal.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, price=2500, payout_account="PAYERID000042")
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name)).start_time, [pet], pm="vault_ok")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert charge.provider == "paypal" and charge.provider_reference in standin.created
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    refund = await payment_reaches(api, owner, b.name, P.KIND_REFUND, P.STATE_SUCCEEDED)
    assert standin.created[refund.provider_reference]["capture"] == charge.provider_reference
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REFUNDED)

    b2 = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=11)).start_time, [pet],
                    pm="vault_ok")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b2.name), metadata=seller.md)
    await payment_reaches(api, owner, b2.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    await booking_reaches(api, owner, b2.name, payment_status=B.PAYMENT_STATUS_PAID)
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b2.name), metadata=seller.md)
    await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b2.name), metadata=seller.md)
    await payment_reaches(api, seller, b2.name, P.KIND_PAYOUT, P.STATE_PENDING)
    payment = module_of(api, "payment")
    base = payment.clock
    payment.clock = lambda: base() + dt.timedelta(hours=48, minutes=1)
    try:
        payout = await payment_reaches(api, seller, b2.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    finally:
        payment.clock = base
    item = standin.created[payout.provider_reference]["item"]
    assert (item["receiver"], item["amount"]) == ("PAYERID000042", {"value": "22.50", "currency": "EUR"})
    assert (await balanced(api, api.admin))["EUR"][f"business/{biz.name.removeprefix('businesses/')}"] == 0


async def test_on_paypal_a_declined_source_cancels_and_a_payer_action_waits(on_paypal: Api):
    api = on_paypal
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, payout_account="PAYERID000043")
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name)).start_time, [pet], pm="vault_declined")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    failed = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)
    assert failed.failure_reason == "INSTRUMENT_DECLINED"
    await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED, payment_status=B.PAYMENT_STATUS_FAILED)

    b2 = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=11)).start_time, [pet],
                    pm="vault_payer_action")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b2.name), metadata=seller.md)
    waiting = await payment_reaches(api, owner, b2.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    assert waiting.action_url.endswith(f"token={waiting.provider_reference}")
    await booking_reaches(api, owner, b2.name, payment_status=B.PAYMENT_STATUS_REQUIRES_ACTION)
    await balanced(api, api.admin)


# --- PayPal's webhooks through the edge ---

@pytest.fixture(scope="module")
async def paypal_edge(on_paypal: Api):
    import aiohttp
    e = await start_edge(on_paypal.platform)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(on_paypal, e, http)
    await e.stop(grace=1)


async def deliver(edge: EdgeClient, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    async with edge.http.post(f"{edge.url}/v1/webhooks/paypal", data=body,
                              headers={**headers, "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def charge_waiting(api: Api, days_ahead: int = 7):
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, payout_account="PAYERID000044")
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=days_ahead)).start_time, [pet],
                   pm="vault_payer_action")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    return owner, b, charge


async def test_paypal_webhooks_forged_malformed_or_unverifiable_are_refused(paypal_edge: EdgeClient):
    api, standin = paypal_edge.api, paypal_edge.api.standin  # type: ignore[attr-defined]
    owner, b, charge = await charge_waiting(api)
    capture = standin.captured(charge.provider_reference)
    body, headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", capture)
    other, other_headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", {**capture, "id": "CAP-FORGED"})
    forged = {**headers, "PAYPAL-TRANSMISSION-SIG": other_headers["PAYPAL-TRANSMISSION-SIG"]}
    unsigned = {k: v for k, v in headers.items() if k != "PAYPAL-TRANSMISSION-SIG"}
    for sent, with_headers in ((body, forged), (body, unsigned), (other, headers), (body, {})):
        status, answer = await deliver(paypal_edge, sent, with_headers)
        assert (status, answer["details"][0]["reason"]) == (403, "INVALID_SIGNATURE"), answer
    status, answer = await deliver(paypal_edge, b"not json", headers)
    assert status == 400
    status, answer = await deliver(paypal_edge, b'{"id": "WH-1", "event_type": "X"}', headers)
    assert status == 400
    standin.fail_next = 1  # PayPal cannot verify now: 503, and PayPal sends it again later
    status, answer = await deliver(paypal_edge, body, headers)
    assert (status, answer["details"][0]["reason"]) == (503, "PROVIDER_UNAVAILABLE")
    waiting = next(x for x in await payments(api, owner, b.name) if x.kind == P.KIND_CHARGE)
    assert waiting.state == P.STATE_REQUIRES_ACTION  # nothing changed
    # The same event, verified: applied.
    assert await deliver(paypal_edge, body, headers) == (200, {"received": True, "duplicate": False})
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)


async def test_a_payer_action_completes_by_webhook_once_whatever_the_order(paypal_edge: EdgeClient):
    api, standin = paypal_edge.api, paypal_edge.api.standin  # type: ignore[attr-defined]
    owner, b, charge = await charge_waiting(api)
    capture = standin.captured(charge.provider_reference)
    pending, pending_headers = standin.webhook("PAYMENT.CAPTURE.PENDING", {**capture, "status": "PENDING"})
    body, headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", capture)
    assert await deliver(paypal_edge, body, headers) == (200, {"received": True, "duplicate": False})
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    # Replayed, then an older PENDING and a DENIED arriving late: nothing moves.
    assert (await deliver(paypal_edge, body, headers))[1]["duplicate"] is True
    assert (await deliver(paypal_edge, pending, pending_headers))[1]["duplicate"] is False
    denied, denied_headers = standin.webhook("PAYMENT.CAPTURE.DENIED", {**capture, "status": "DECLINED"})
    assert (await deliver(paypal_edge, denied, denied_headers))[0] == 200
    (paid,) = [x for x in await payments(api, owner, b.name) if x.kind == P.KIND_CHARGE]
    assert (paid.state, paid.provider_reference, paid.action_url) == (P.STATE_SUCCEEDED, capture["id"], "")
    await balanced(api, api.admin)
    # The capture id is the charge's reference: a cancellation refunds that capture.
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    refund = await payment_reaches(api, owner, b.name, P.KIND_REFUND, P.STATE_SUCCEEDED)
    assert standin.created[refund.provider_reference]["capture"] == capture["id"]
    # PayPal's REFUNDED for it comes after our call's answer: already applied, nothing moves.
    body, headers = standin.webhook("PAYMENT.CAPTURE.REFUNDED", {
        "id": refund.provider_reference, "status": "COMPLETED", "custom_id": f"{b.name}:refund"})
    assert (await deliver(paypal_edge, body, headers))[0] == 200
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REFUNDED)
    await balanced(api, api.admin)


async def test_an_approved_order_is_captured_by_the_worker_once(paypal_edge: EdgeClient):
    """PayPal's order of events: the payer approves (CHECKOUT.ORDER.APPROVED), our worker's retry
    finds the order APPROVED and captures it with `<key>:capture`; PAYMENT.CAPTURE.COMPLETED for it
    then changes nothing."""
    api, standin = paypal_edge.api, paypal_edge.api.standin  # type: ignore[attr-defined]
    owner, b, charge = await charge_waiting(api, days_ahead=14)
    order = standin.approve(charge.provider_reference)
    body, headers = standin.webhook("CHECKOUT.ORDER.APPROVED", order)
    assert await deliver(paypal_edge, body, headers) == (200, {"received": True, "duplicate": False})
    paid = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert paid.provider_reference.startswith("CAP") and paid.action_url == ""
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    (capture,) = standin.posts(f"/v2/checkout/orders/{charge.provider_reference}/capture")
    assert capture.headers["PayPal-Request-Id"] == f"{b.name}:charge:capture"
    assert (await deliver(paypal_edge, body, headers))[1]["duplicate"] is True
    again, again_headers = standin.webhook("CHECKOUT.ORDER.APPROVED", order)  # a new event id, late
    completed, completed_headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", {
        **standin.created[paid.provider_reference], "custom_id": f"{b.name}:charge"})
    for sent, with_headers in ((again, again_headers), (completed, completed_headers)):
        assert (await deliver(paypal_edge, sent, with_headers))[0] == 200
    assert len(standin.posts(f"/v2/checkout/orders/{charge.provider_reference}/capture")) == 1
    (still,) = [x for x in await payments(api, owner, b.name) if x.kind == P.KIND_CHARGE]
    assert (still.state, still.provider_reference) == (P.STATE_SUCCEEDED, paid.provider_reference)
    await balanced(api, api.admin)


async def test_a_payer_action_denied_by_webhook_fails_the_charge(paypal_edge: EdgeClient):
    api, standin = paypal_edge.api, paypal_edge.api.standin  # type: ignore[attr-defined]
    owner, b, charge = await charge_waiting(api, days_ahead=12)
    capture = standin.captured(charge.provider_reference, succeed=False)
    body, headers = standin.webhook("PAYMENT.CAPTURE.DENIED", capture)
    assert (await deliver(paypal_edge, body, headers))[0] == 200
    failed = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)
    assert failed.failure_reason == "DECLINED_BY_RISK_FRAUD_FILTERS"
    await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED, payment_status=B.PAYMENT_STATUS_FAILED)
    # A COMPLETED for it after all (out of order, or forged with another id): the charge stays failed.
    late, late_headers = standin.webhook("PAYMENT.CAPTURE.COMPLETED", {**capture, "status": "COMPLETED"})
    assert (await deliver(paypal_edge, late, late_headers))[0] == 200
    assert (await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)).failure_reason == \
        "DECLINED_BY_RISK_FRAUD_FILTERS"
    await balanced(api, api.admin)


async def test_payout_items_move_the_bank_state_forward_only(paypal_edge: EdgeClient):
    api, standin = paypal_edge.api, paypal_edge.api.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, payout_account="PAYERID000045")
    owner, pet = await owner_with_dog(api)
    b = await book(api, owner, svc.name, (await a_slot(api, svc.name, days_ahead=13)).start_time, [pet],
                   pm="vault_ok")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)  # the marketplace knows
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)
    await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_PENDING)  # its hold counted from now
    payment = module_of(api, "payment")
    base = payment.clock
    payment.clock = lambda: base() + dt.timedelta(hours=48, minutes=1)
    try:
        payout = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    finally:
        payment.clock = base
    assert payout.bank_payout == P.BANK_PAYOUT_UNSPECIFIED

    async def item(kind: str, status: str, **changes) -> None:
        body, headers = standin.webhook(f"PAYMENT.PAYOUTS-ITEM.{kind}",
                                        {**standin.payout_item(payout.provider_reference, status), **changes})
        assert (await deliver(paypal_edge, body, headers))[0] == 200

    async def bank(state: int):
        async def check():
            (x,) = [x for x in await payments(api, seller, b.name) if x.name == payout.name]
            return x if x.bank_payout == state else None
        return await until(check, what=f"the payout item in {P.BankPayout.Name(state)}")

    # Someone else's receiver named on our payment: ignored.
    await item("SUCCEEDED", "SUCCESS", payout_item={"receiver": "PAYERID000099", "sender_item_id": payout.name})
    await item("UNCLAIMED", "UNCLAIMED")
    unclaimed = await bank(P.BANK_PAYOUT_UNCLAIMED)
    assert unclaimed.bank_payout_reference.startswith("ITEM")
    await item("HELD", "ONHOLD")  # older: stays unclaimed
    await item("SUCCEEDED", "SUCCESS")
    await bank(P.BANK_PAYOUT_PAID)
    await item("UNCLAIMED", "UNCLAIMED")  # late: stays paid
    assert (await bank(P.BANK_PAYOUT_PAID)).failure_reason == ""
    await item("RETURNED", "RETURNED")
    returned = await bank(P.BANK_PAYOUT_FAILED)
    assert returned.failure_reason == "RECEIVER_UNCONFIRMED"
    # PayPal credited the item back to the platform's balance: reversed in the ledger (owed to the
    # business again), and paid again to the account the business gives next.
    account = f"business/{biz.name.removeprefix('businesses/')}"

    async def retry():
        return next((x for x in await payments(api, seller, b.name) if x.retry_of == payout.name), None)
    pending = await until(retry, what="the retry of the returned payout")
    assert pending.state == P.STATE_PENDING and pending.amount == payout.amount
    assert (await balanced(api, api.admin))["EUR"][account] == -(payout.amount.units * 100
                                                                 + payout.amount.nanos // 10_000_000)
    await api.marketplace.UpdateBusiness(m.UpdateBusinessRequest(
        business=m.Business(name=biz.name, payout_account="PAYERID000046"), update_mask={"paths": ["payout_account"]}),
        metadata=seller.md)

    async def repaid():
        x = await retry()
        return x if x and x.state == P.STATE_SUCCEEDED else None
    assert (await until(repaid, what="the retry paid")).payout_account == "PAYERID000046"
    assert (await balanced(api, api.admin))["EUR"][account] == 0
