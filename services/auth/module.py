from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mesh.events import Effects
from mesh.mail import Mailer
from mesh.runtime import Runtime, ServiceModule
from mesh.registry import ServiceSpec
from petplatform.auth.v1 import events_pb2
from petplatform.common.v1 import event_pb2
from services.auth.api import AuthServicer, new_verification_email
from services.auth import store
from services.auth.keys import SigningKeys
from services.auth.providers import Providers


class AuthModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.keys = SigningKeys(rt.settings)
        self.mailer = Mailer(rt.settings)
        self.providers = Providers(rt.settings)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.auth.v1.AuthService": AuthServicer(self.db, self.rt.cache, self.rt.settings, self.keys,
                                                                  self.providers)}

    def consumers(self) -> Mapping[str, Effects]:
        settings = self.rt.settings

        async def send_verification(session, event: events_pb2.UserCreated) -> None:
            account = await store.find_account(session, event.user.removeprefix("users/"))
            if account is None or account.email_verified or not event.email:
                return  # a provider vouched for the email, or gave none
            await new_verification_email(session, settings, event.user.removeprefix("users/"), event.email)

        async def send_email(session, event: event_pb2.EmailRequested) -> None:
            # Sent inside the inbox transaction: if the commit fails the email may go twice, never zero times.
            await self.mailer.send(event.to, event.subject, event.text_body)

        return {"auth.verification": {events_pb2.UserCreated: send_verification},
                "auth.mailer": {event_pb2.EmailRequested: send_email}}

    async def stop(self) -> None:
        await self.providers.http.close()
        await super().stop()
