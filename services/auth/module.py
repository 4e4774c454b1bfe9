from __future__ import annotations

from pathlib import Path

from mesh.events import inbox_handler
from mesh.mail import Mailer
from mesh.runtime import ServiceModule
from petplatform.auth.v1 import auth_pb2, auth_pb2_grpc
from petplatform.common.v1 import event_pb2
from services.auth.api import AuthServicer, new_verification_email
from services.auth.keys import SigningKeys


class AuthModule(ServiceModule):
    name = "auth"
    migrations = Path(__file__).parent / "migrations"
    consumers = ["auth.verification", "auth.mailer"]

    def __init__(self, rt):
        super().__init__(rt)
        self.keys = SigningKeys(rt.settings)
        self.mailer = Mailer(rt.settings)

    def servicers(self):
        servicer = AuthServicer(self.db, self.rt.cache, self.rt.settings, self.keys)
        return [(auth_pb2_grpc.add_AuthServiceServicer_to_server, servicer, "petplatform.auth.v1.AuthService")]

    async def subscribe(self) -> None:
        settings = self.rt.settings

        async def send_verification(session, envelope, event: auth_pb2.UserCreatedEvent) -> None:
            await new_verification_email(session, settings, event.user_id, event.email)

        async def send_email(session, envelope, event: event_pb2.EmailSendEvent) -> None:
            # Sent inside the inbox transaction: if the commit fails the email may go twice, never zero times.
            await self.mailer.send(event.to, event.subject, event.text_body)

        await self.rt.bus.subscribe("auth.verification", ["user.created"], inbox_handler(
            self.db, "auth.verification", {"user.created": (auth_pb2.UserCreatedEvent, send_verification)}))
        await self.rt.bus.subscribe("auth.mailer", ["email.send"], inbox_handler(
            self.db, "auth.mailer", {"email.send": (event_pb2.EmailSendEvent, send_email)}))
