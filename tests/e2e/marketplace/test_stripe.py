"""The Stripe adapter against a local stand-in of the Stripe API (no network): what it sends
(Idempotency-Key, amount, currency, a confirmed PaymentIntent with the payment method, Connect
transfers and payouts) and how it reads Stripe's answers (success, a card decline, an outage, a key
reused with other parameters); then a platform with payment_provider=stripe running the booking
flows through it."""
from __future__ import annotations

import datetime as dt
import json
import time

import grpc
import pytest

from mesh.config import ConfigError, load_settings
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.payment.providers import Outcome, ProviderDown, ProviderRefused
from services.payment.stripe_provider import StripeProvider
from tests.e2e.marketplace.conftest import OPTIONS, STRIPE_SECRET, admin_session
from tests.support.errors import expect
from tests.support.market import B, P, a_slot, balanced, book, booking, booking_reaches, business, owner_with_dog, \
    payment_reaches, payments
from tests.support.matching import until
from tests.support.platform import Api, embedded_settings, module_of, start_platform
from tests.support.stripe_standin import API_KEY, StripeStandIn

META = {"booking": "bookings/b1", "payment": "payments/p1"}
CONNECT_SECRET = "whsec_test_secret_of_the_connect_endpoint"


@pytest.fixture
async def standin():
    s = StripeStandIn()
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def stripe(standin):
    provider = StripeProvider(api_key=API_KEY, api_base=standin.url)
    yield provider
    await provider.close()


async def test_a_charge_is_a_confirmed_payment_intent_with_the_flows_key(stripe, standin):
    out = await stripe.charge(key="bookings/b1:charge", amount=2500, currency="EUR", payment_method="pm_card_visa",
                              metadata=META)
    assert out.state == "succeeded" and out.reference.startswith("pi_")
    (sent,) = standin.posts("/v1/payment_intents")
    assert sent.headers["Idempotency-Key"] == "bookings/b1:charge"
    assert sent.headers["Authorization"] == f"Bearer {API_KEY}"
    assert (sent.form["amount"], sent.form["currency"], sent.form["payment_method"], sent.form["confirm"]) == \
        ("2500", "eur", "pm_card_visa", "true")
    assert sent.form["automatic_payment_methods[allow_redirects]"] == "never"
    # Webhooks find the payment by the key in the metadata.
    assert sent.form["metadata[idempotency_key]"] == "bookings/b1:charge"
    assert sent.form["metadata[booking]"] == "bookings/b1"


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_charges_once(stripe, standin):
    first = await stripe.charge(key="k1", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    again = await stripe.charge(key="k1", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    assert again == first
    assert [r.replayed for r in standin.posts("/v1/payment_intents")] == [False, True]
    assert len([o for o in standin.created.values() if o["object"] == "payment_intent"]) == 1


async def test_a_card_decline_is_a_failed_outcome_with_the_decline_code(stripe, standin):
    out = await stripe.charge(key="k2", amount=1000, currency="EUR", payment_method="pm_card_chargeDeclined",
                              metadata=META)
    assert out.state == "failed" and out.failure == "generic_decline" and out.reference.startswith("pi_")
    assert standin.created[out.reference]["status"] == "requires_payment_method"
    insufficient = await stripe.charge(key="k3", amount=1000, currency="EUR",
                                       payment_method="pm_card_visa_chargeDeclinedInsufficientFunds", metadata=META)
    assert insufficient.failure == "insufficient_funds"


async def test_an_outage_is_provider_down_and_the_retry_with_the_key_charges_once(stripe, standin):
    standin.fail_next = 1
    with pytest.raises(ProviderDown):
        await stripe.charge(key="k4", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    out = await stripe.charge(key="k4", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    assert out.state == "succeeded"
    assert [r.status for r in standin.posts("/v1/payment_intents")] == [500, 200]


async def test_no_answer_at_all_is_provider_down(standin):
    await standin.stop()
    provider = StripeProvider(api_key=API_KEY, api_base=standin.url)
    try:
        with pytest.raises(ProviderDown):
            await provider.charge(key="k5", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    finally:
        await provider.close()


async def test_a_key_reused_with_other_parameters_or_a_wrong_api_key_is_refused(stripe, standin):
    await stripe.charge(key="k6", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    with pytest.raises(ProviderRefused, match="400"):
        await stripe.charge(key="k6", amount=2000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    wrong = StripeProvider(api_key="sk_test_wrong", api_base=standin.url)
    try:
        with pytest.raises(ProviderRefused, match="401"):
            await wrong.charge(key="k7", amount=1000, currency="EUR", payment_method="pm_card_visa", metadata=META)
    finally:
        await wrong.close()


async def test_a_refund_of_the_payment_intent_carries_its_key_and_amount(stripe, standin):
    charge = await stripe.charge(key="b:charge", amount=3000, currency="EUR", payment_method="pm_card_visa",
                                 metadata=META)
    out = await stripe.refund(key="b:refund", charge=charge.reference, amount=1500, currency="EUR", metadata=META)
    assert out.state == "succeeded" and out.reference.startswith("re_")
    (sent,) = standin.posts("/v1/refunds")
    assert sent.headers["Idempotency-Key"] == "b:refund"
    assert (sent.form["payment_intent"], sent.form["amount"]) == (charge.reference, "1500")
    assert standin.created[charge.reference]["amount_refunded"] == 1500
    # More than what is left is Stripe refusing the request, not an outage.
    with pytest.raises(ProviderRefused):
        await stripe.refund(key="b:refund-2", charge=charge.reference, amount=2000, currency="EUR", metadata=META)


async def test_a_payout_is_a_connect_transfer_to_the_account(stripe, standin):
    out = await stripe.payout(key="b:payout", account="acct_1", amount=2250, currency="EUR", metadata=META)
    assert out == Outcome("succeeded", out.reference) and out.reference.startswith("tr_")
    (sent,) = standin.posts("/v1/transfers")
    assert sent.headers["Idempotency-Key"] == "b:payout"
    assert (sent.form["destination"], sent.form["amount"], sent.form["currency"], sent.form["transfer_group"]) == \
        ("acct_1", "2250", "eur", "bookings/b1")
    assert not standin.posts("/v1/payouts")  # Stripe's schedule pays the account out
    bad = await stripe.payout(key="c:payout", account="acct_invalid", amount=100, currency="EUR", metadata=META)
    assert bad.state == "failed" and "destination" in bad.failure


async def test_manual_payouts_pay_the_connected_account_out_after_the_transfer(standin):
    provider = StripeProvider(api_key=API_KEY, api_base=standin.url, manual_payouts=True)
    try:
        out = await provider.payout(key="b:payout", account="acct_1", amount=2250, currency="EUR", metadata=META)
        again = await provider.payout(key="b:payout", account="acct_1", amount=2250, currency="EUR", metadata=META)
    finally:
        await provider.close()
    assert out == again and out.reference.startswith("tr_") and out.bank_payout.startswith("po_")
    payouts = standin.posts("/v1/payouts")
    assert [(r.headers["Stripe-Account"], r.headers["Idempotency-Key"], r.form["amount"], r.replayed)
            for r in payouts] == [("acct_1", "b:payout:payout", "2250", False), ("acct_1", "b:payout:payout", "2250",
                                                                                 True)]


async def test_a_card_needing_3d_secure_is_an_outcome_with_what_the_payers_app_needs(stripe, standin):
    out = await stripe.charge(key="k8", amount=1000, currency="EUR", payment_method="pm_card_authenticationRequired",
                              metadata=META)
    intent = standin.created[out.reference]
    assert out == Outcome("requires_action", intent["id"], client_secret=intent["client_secret"])
    assert out.client_secret.startswith(f"{intent['id']}_secret_")


async def test_a_charge_waiting_on_its_payer_is_cancelled_or_found_finished(stripe, standin):
    waiting = await stripe.charge(key="w:charge", amount=2500, currency="EUR",
                                  payment_method="pm_card_authenticationRequired", metadata=META)
    out = await stripe.cancel_charge(key="w:charge:cancel", charge=waiting.reference, metadata=META)
    assert out == Outcome("failed", waiting.reference, "payer_action_expired")
    (sent,) = standin.posts(f"/v1/payment_intents/{waiting.reference}/cancel")
    assert sent.headers["Idempotency-Key"] == "w:charge:cancel" and standin.created[waiting.reference]["status"] == \
        "canceled"
    # The payer finished first: the cancel is refused, and the intent read back says it succeeded.
    done = await stripe.charge(key="d:charge", amount=2500, currency="EUR",
                               payment_method="pm_card_authenticationRequired", metadata=META)
    standin.authenticate(done.reference)
    assert (await stripe.cancel_charge(key="d:charge:cancel", charge=done.reference, metadata=META)).state == \
        "succeeded"


async def test_a_returned_payout_is_reclaimed_by_reversing_its_transfer_once(stripe, standin):
    out = await stripe.payout(key="b:payout", account="acct_1", amount=2250, currency="EUR", metadata=META)
    back = await stripe.reclaim_payout(key="b:payout:reclaim", payout=out.reference, account="acct_1", amount=2250,
                                       currency="EUR", metadata=META)
    again = await stripe.reclaim_payout(key="b:payout:reclaim", payout=out.reference, account="acct_1", amount=2250,
                                        currency="EUR", metadata=META)
    assert back == again and back.state == "succeeded" and back.reference.startswith("trr_")
    assert standin.created[out.reference]["amount_reversed"] == 2250  # once, whatever the retries


def test_the_stripe_provider_needs_its_keys(tmp_path):
    with pytest.raises(ConfigError, match="STRIPE_API_KEY"):
        load_settings(data_dir=tmp_path, payment_provider="stripe")
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, payment_provider="paypal")
    with pytest.raises(ConfigError):
        load_settings(data_dir=tmp_path, payment_provider="stripe", stripe_api_key="sk", stripe_webhook_secret="w",
                      stripe_api_base="ftp://x")


# --- a platform on Stripe ---

@pytest.fixture(scope="module")
async def on_stripe(tmp_path_factory, smtp_sink):
    standin = StripeStandIn()
    await standin.start()
    settings = embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **{
        **OPTIONS, "payment_provider": "stripe", "stripe_api_key": API_KEY, "stripe_api_base": standin.url,
        "stripe_manual_payouts": True, "stripe_connect_webhook_secret": CONNECT_SECRET})
    platform = await start_platform(settings)
    api = Api(platform, smtp_sink)
    api.admin = await admin_session(api)
    api.standin = standin  # type: ignore[attr-defined]
    yield api
    await api.channel.close()
    await platform.stop(grace=1)
    await standin.stop()


async def test_on_stripe_accept_charges_cancel_refunds_and_the_payout_is_a_transfer(on_stripe: Api):
    api, standin = on_stripe, on_stripe.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, price=2500, payout_account="acct_seller")
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert charge.provider == "stripe" and charge.provider_reference in standin.created
    sent = [r for r in standin.posts("/v1/payment_intents") if r.headers["Idempotency-Key"] == f"{b.name}:charge"]
    assert len(sent) == 1 and sent[0].form["amount"] == "2500"
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)

    # A flexible walk cancelled before its start: all back, through a Stripe refund.
    await api.marketplace.CancelBooking(m.CancelBookingRequest(name=b.name), metadata=owner.md)
    refund = await payment_reaches(api, owner, b.name, P.KIND_REFUND, P.STATE_SUCCEEDED)
    assert standin.created[refund.provider_reference]["payment_intent"] == charge.provider_reference
    assert standin.created[charge.provider_reference]["amount_refunded"] == 2500

    # Another booking, completed: after the hold, a transfer to the business's connected account.
    slot = await a_slot(api, svc.name, days_ahead=11)
    b2 = await book(api, owner, svc.name, slot.start_time, [pet])
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
    transfer = standin.created[payout.provider_reference]
    assert (transfer["destination"], transfer["amount"]) == ("acct_seller", 2250)  # less the 10 % fee
    await balanced(api, api.admin)


async def test_on_stripe_a_declined_card_fails_the_booking_payment(on_stripe: Api):
    api = on_stripe
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, payout_account="acct_seller")
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_chargeDeclined")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    failed = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)
    assert failed.failure_reason == "generic_decline"
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_FAILED)
    await balanced(api, api.admin)


# --- Stripe's webhooks: 3-D Secure and payouts ---

async def deliver(api: Api, body: bytes, *, secret: str = STRIPE_SECRET, age: int = 0) -> bool:
    """Posts a Stripe event, signed as Stripe signs it (the stripe SDK's own signer); whether it
    was a duplicate."""
    import stripe
    from google.api import httpbody_pb2
    from petplatform.payment.v1 import payment_pb2 as pay
    signature = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, int(time.time()) - age)
    answer = await api.payment.ReceiveWebhook(pay.ReceiveWebhookRequest(
        provider="stripe", body=httpbody_pb2.HttpBody(content_type="application/json", data=body),
        signature=signature))
    return answer.duplicate


async def test_on_stripe_a_3d_secure_charge_waits_for_the_payer_and_a_replay_changes_nothing(on_stripe: Api):
    api, standin = on_stripe, on_stripe.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, price=2500, payout_account="acct_seller")
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_authenticationRequired")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    intent = standin.created[charge.provider_reference]
    # The payer gets the client secret their app completes the step with; the business does not.
    assert charge.client_secret == intent["client_secret"]
    (seen_by_business,) = [x for x in await payments(api, seller, b.name) if x.kind == P.KIND_CHARGE]
    assert seen_by_business.state == P.STATE_REQUIRES_ACTION and not seen_by_business.client_secret
    got = await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_REQUIRES_ACTION)
    assert got.state == B.STATE_ACCEPTED
    await expect(grpc.StatusCode.FAILED_PRECONDITION, api.marketplace.StartBooking(
        m.StartBookingRequest(name=b.name), metadata=seller.md), "NOT_PAID")
    # Stripe's own payment_intent.requires_action webhook after our answer: nothing new.
    assert not await deliver(api, standin.event("payment_intent.requires_action", intent))

    # A forged and a stale signature of the success are refused before anything is read.
    done = standin.authenticate(charge.provider_reference)
    await expect(grpc.StatusCode.PERMISSION_DENIED, deliver(api, done, secret="whsec_forged"), "INVALID_SIGNATURE")
    await expect(grpc.StatusCode.PERMISSION_DENIED, deliver(api, done, age=301), "INVALID_SIGNATURE")
    assert (await booking(api, owner, b.name)).payment_status == B.PAYMENT_STATUS_REQUIRES_ACTION
    assert not await deliver(api, done)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)
    settled = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_SUCCEEDED)
    assert not settled.client_secret  # not needed any more
    before = await balanced(api, api.admin)
    assert await deliver(api, done)  # replayed: recognised, nothing moves
    late = standin.event("payment_intent.requires_action", {**intent, "status": "requires_action"})
    assert not await deliver(api, late)  # a late, older event: ignored
    assert await balanced(api, api.admin) == before
    assert (await booking(api, owner, b.name)).payment_status == B.PAYMENT_STATUS_PAID


async def test_on_stripe_a_failed_3d_secure_step_cancels_the_booking(on_stripe: Api):
    api, standin = on_stripe, on_stripe.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    _, svc = await business(api, seller, payout_account="acct_seller")
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name)
    b = await book(api, owner, svc.name, slot.start_time, [pet], pm="pm_card_threeDSecure2Required")
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    charge = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_REQUIRES_ACTION)
    assert not await deliver(api, standin.authenticate(charge.provider_reference, succeed=False))
    failed = await payment_reaches(api, owner, b.name, P.KIND_CHARGE, P.STATE_FAILED)
    assert failed.failure_reason == "payment_intent_authentication_failure"
    got = await booking_reaches(api, owner, b.name, state=B.STATE_CANCELLED)
    assert (got.payment_status, got.cancelled_by) == (B.PAYMENT_STATUS_FAILED, B.CANCELLER_PLATFORM)
    await balanced(api, api.admin)


async def test_on_stripe_payout_webhooks_follow_the_bank_transfer_forward_only(on_stripe: Api):
    api, standin = on_stripe, on_stripe.standin  # type: ignore[attr-defined]
    seller = await api.signup("Seller")
    biz, svc = await business(api, seller, payout_account="acct_banked")
    owner, pet = await owner_with_dog(api)
    slot = await a_slot(api, svc.name, days_ahead=12)
    b = await book(api, owner, svc.name, slot.start_time, [pet])
    await api.marketplace.AcceptBooking(m.AcceptBookingRequest(name=b.name), metadata=seller.md)
    await booking_reaches(api, owner, b.name, payment_status=B.PAYMENT_STATUS_PAID)  # the marketplace knows
    await api.marketplace.StartBooking(m.StartBookingRequest(name=b.name), metadata=seller.md)
    await api.marketplace.CompleteBooking(m.CompleteBookingRequest(name=b.name), metadata=seller.md)
    await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_PENDING)
    payment = module_of(api, "payment")
    base = payment.clock
    payment.clock = lambda: base() + dt.timedelta(hours=48, minutes=1)
    try:
        payout = await payment_reaches(api, seller, b.name, P.KIND_PAYOUT, P.STATE_SUCCEEDED)
    finally:
        payment.clock = base
    assert payout.bank_payout == P.BANK_PAYOUT_IN_TRANSIT and payout.bank_payout_reference.startswith("po_")
    po = payout.bank_payout_reference

    async def bank(state: int) -> P:
        return await payment_reaches_bank(api, seller, b.name, state)

    # Connect events come signed with the Connect endpoint's secret: accepted as the account's are.
    # From another connected account, the same payout id: not ours, ignored.
    paid = standin.settle_payout(po)
    spoofed = json.loads(paid)
    spoofed.update(id="evt_spoofed", account="acct_someone_else")
    assert not await deliver(api, json.dumps(spoofed).encode(), secret=CONNECT_SECRET)
    # Forged (another secret) or expired signatures are refused, whichever endpoint they claim.
    for bad in (dict(secret="whsec_forged"), dict(secret=CONNECT_SECRET, age=301), dict(age=301)):
        await expect(grpc.StatusCode.PERMISSION_DENIED, deliver(api, paid, **bad), "INVALID_SIGNATURE")
    assert not await deliver(api, paid, secret=CONNECT_SECRET)
    await bank(P.BANK_PAYOUT_PAID)
    assert await deliver(api, paid)  # replayed (signed with the other secret): recognised by its id
    returned = standin.settle_payout(po, paid=False, failure_code="account_closed")
    assert not await deliver(api, returned, secret=CONNECT_SECRET)
    failed = await bank(P.BANK_PAYOUT_FAILED)
    assert failed.failure_reason == "account_closed" and failed.state == P.STATE_SUCCEEDED
    # The money sits in the connected account's balance: the transfer is reversed (once, with its
    # key), the ledger gives the business its 22.50 back as owed, and a retry payout waits.
    retry = await until(lambda: retry_of(api, seller, b.name, failed.name), what="the retry payout")
    assert retry.state == P.STATE_PENDING and retry.payout_account == "acct_banked"
    (reversal,) = standin.posts(f"/v1/transfers/{failed.provider_reference}/reversals")
    assert (reversal.form["amount"], reversal.headers["Idempotency-Key"]) == (
        "2250", f"{failed.idempotency_key}:reclaim")
    assert standin.created[failed.provider_reference]["amount_reversed"] == 2250
    ledger = (await balanced(api, api.admin))["EUR"]
    assert ledger[f"business/{biz.name.removeprefix('businesses/')}"] == -2250
    # A paid event arriving after the failure (another id, same payout): the failure stands.
    assert not await deliver(api, standin.event("payout.paid", {**standin.created[po], "status": "paid"},
                                                account="acct_banked"), secret=CONNECT_SECRET)
    assert (await payment_reaches_bank(api, seller, b.name, P.BANK_PAYOUT_FAILED)).bank_payout_reference == po
    assert len(standin.posts(f"/v1/transfers/{failed.provider_reference}/reversals")) == 1
    assert (await balanced(api, api.admin))["EUR"] == ledger


async def retry_of(api: Api, who, booking_name: str, payout: str) -> P | None:
    return next((x for x in await payments(api, who, booking_name) if x.retry_of == payout), None)


async def payment_reaches_bank(api: Api, who, booking_name: str, state: int) -> P:
    async def check():
        return next((x for x in await payments(api, who, booking_name)
                     if x.kind == P.KIND_PAYOUT and x.bank_payout == state), None)
    return await until(check, what=f"the payout's bank transfer in {P.BankPayout.Name(state)}")
