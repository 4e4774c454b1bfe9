"""Payment: its servicer, the consumers that turn booking events into payments, and the worker that
moves due payments through the provider."""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
import contextlib
import datetime as dt
import logging
from pathlib import Path

from mesh import webhook_signature
from mesh.config import LOCAL_BANK_PATH, local_secret
from mesh.events import Effects
from mesh.registry import ServiceSpec
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from mesh.wakeup import Wakeup
from petplatform.marketplace.v1 import events_pb2 as market
from services.payment.api import PaymentServicer
from services.payment.flows import Flows
from services.payment.paypal_provider import PayPalProvider
from services.payment.providers import LocalProvider, Provider
from services.payment.stripe_provider import StripeProvider

log = logging.getLogger(__name__)


class PaymentModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        s = rt.settings
        self.clock: Callable[[], dt.datetime] = utcnow  # tests move it
        self.secrets: dict[str, tuple[bytes, ...]] = {}
        local = (s.local_payment_webhook_secret.get_secret_value().encode() if s.local_payment_webhook_secret
                 else local_secret(s.data_dir / "local-payment-webhook-secret"))
        stripe_secrets = tuple(secret.get_secret_value().encode() for secret in (
            s.stripe_webhook_secret, s.stripe_connect_webhook_secret) if secret)
        if stripe_secrets:
            self.secrets["stripe"] = stripe_secrets
        # The local provider always takes its own webhooks (development, tests); the one that moves
        # money is chosen by settings. PayPal's are verified by PayPal itself (no shared secret).
        self.secrets["local"] = (local,)
        # The edge serves the local provider's bank page while the local provider moves the money.
        bank = f"{s.public_url.rstrip('/')}{LOCAL_BANK_PATH}" if s.payment_provider == "local" else ""
        self.local = LocalProvider(local, self._deliver_local, clock=lambda: self.now().timestamp(),
                                   bank_url=bank)
        self.stripe: StripeProvider | None = None
        self.paypal: PayPalProvider | None = None
        provider: Provider = self.local
        if s.payment_provider == "stripe":
            assert s.stripe_api_key is not None  # the settings say so
            provider = self.stripe = StripeProvider(api_key=s.stripe_api_key.get_secret_value(),
                                                    api_base=s.stripe_api_base,
                                                    manual_payouts=s.stripe_manual_payouts)
        elif s.payment_provider == "paypal":
            assert s.paypal_client_id and s.paypal_client_secret is not None  # the settings say so
            provider = self.paypal = PayPalProvider(client_id=s.paypal_client_id,
                                                    client_secret=s.paypal_client_secret.get_secret_value(),
                                                    api_base=s.paypal_api_base or "https://api-m.paypal.com")
        self.flows = Flows(self._db, provider, self.now, hold=dt.timedelta(seconds=s.payment_hold_seconds),  # type: ignore[arg-type]
                           fee_percent=s.payment_platform_fee_percent,
                           retry=dt.timedelta(seconds=s.payment_retry_seconds),
                           action_timeout=dt.timedelta(seconds=s.payment_action_timeout_seconds),
                           payout_retry=dt.timedelta(seconds=s.payment_payout_retry_seconds))
        self.servicer = PaymentServicer(self.db, flows=self.flows, secrets=self.secrets,
                                        paypal=(self.paypal, s.paypal_webhook_id)
                                        if self.paypal and s.paypal_webhook_id else None)
        self._worker: asyncio.Task | None = None
        self._wake = Wakeup()

    def now(self) -> dt.datetime:
        return self.clock()

    async def _deliver_local(self, body: bytes, header: str) -> None:
        """The local provider's webhooks take the path the edge's do: verified, then applied once."""
        webhook_signature.verify(body, header, *self.secrets["local"], now=self.now().timestamp())
        await self.servicer.receive("local", body)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.payment.v1.PaymentService": self.servicer}

    def consumers(self) -> Mapping[str, Effects]:
        async def woken(effect, s, event) -> None:
            await effect(s, event)
            self._wake.ring()  # a payment to try: no need to wait for the next poll

        f = self.flows
        return {"payment.bookings": {
            market.BookingAccepted: lambda s, e: woken(f.on_accepted, s, e),
            market.BookingCancelled: lambda s, e: woken(f.on_cancelled, s, e),
            market.BookingCompleted: lambda s, e: woken(f.on_completed, s, e),
            market.BusinessPayoutAccountChanged: lambda s, e: woken(f.on_payout_account_changed, s, e)}}

    async def start(self) -> None:
        self._worker = asyncio.create_task(self._work(), name="payment:worker")

    async def _work(self) -> None:
        while True:
            try:
                await self.flows.run_once()
            except Exception:
                log.exception("payment worker failed; trying again")
            await self._wake.wait(self.rt.settings.payment_poll_seconds)

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self.stripe:
            await self.stripe.close()
        if self.paypal:
            await self.paypal.close()
        await super().stop()
