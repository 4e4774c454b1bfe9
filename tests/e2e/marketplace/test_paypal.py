"""The PayPal adapter against a local stand-in of PayPal's REST API (no network): the OAuth token
it gets and keeps, what it sends (PayPal-Request-Id, amounts in the currency's decimals, a vaulted
payment source, the capture, the refund of the capture, a one-item Payouts batch) and how it reads
PayPal's answers (a decline, a payer action, an outage, an expired token, a request id reused with
other parameters); then a platform with payment_provider=paypal running the booking flows."""
from __future__ import annotations

import datetime as dt

import pytest

from mesh.config import ConfigError, load_settings
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.payment.paypal_provider import PayPalProvider, money
from services.payment.providers import Outcome, ProviderDown, ProviderRefused
from tests.e2e.marketplace.conftest import OPTIONS, admin_session
from tests.support.market import (
    B, P, a_slot, balanced, book, booking_reaches, business, owner_with_dog, payment_reaches,
)
from tests.support.paypal_standin import CLIENT_ID, CLIENT_SECRET, PayPalStandIn
from tests.support.platform import Api, embedded_settings, module_of, start_platform

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
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, payment_provider="paypal", paypal_client_id="id",
                      paypal_client_secret="s", paypal_api_base="ftp://x")
    assert load_settings(data_dir=tmp_path, payment_provider="paypal", paypal_client_id="id",
                         paypal_client_secret="s").payment_provider == "paypal"


# --- a platform on PayPal ---

@pytest.fixture(scope="module")
async def on_paypal(tmp_path_factory, smtp_sink):
    standin = PayPalStandIn()
    await standin.start()
    settings = embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **{
        **OPTIONS, "payment_provider": "paypal", "paypal_client_id": CLIENT_ID, "paypal_client_secret": CLIENT_SECRET,
        "paypal_api_base": standin.url})
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
