from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from mesh.events import inbox_handler
from mesh.runtime import ServiceModule
from mesh.sql import utcnow
from petplatform.auth.v1 import auth_pb2
from petplatform.user.v1 import user_pb2, user_pb2_grpc
from services.user.api import UserServicer
from services.user.store import profiles

CONSUMER = "user.profiles"


class ProfileNotYetCreated(Exception):
    """An event about a user whose user.created has not been applied yet: retried by the bus."""


async def on_user_created(s, envelope, event: auth_pb2.UserCreatedEvent) -> None:
    # The inbox already drops replays of this event; the check also tolerates a profile made otherwise.
    if await s.scalar(sa.select(sa.func.count()).select_from(profiles).where(profiles.c.user_id == event.user_id)):
        return
    now = utcnow()
    await s.execute(profiles.insert().values(user_id=event.user_id, display_name=event.display_name, bio="",
                                             preferences={}, email_verified=False, upheld_reports=0,
                                             create_time=now, update_time=now))


async def on_email_verified(s, envelope, event: auth_pb2.UserEmailVerifiedEvent) -> None:
    done = await s.execute(profiles.update().where(profiles.c.user_id == event.user_id).values(email_verified=True))
    if done.rowcount != 1:
        raise ProfileNotYetCreated(event.user_id)


async def on_user_reported(s, envelope, event: user_pb2.UserReportedEvent) -> None:
    done = await s.execute(profiles.update().where(profiles.c.user_id == event.user_id).values(
        upheld_reports=profiles.c.upheld_reports + 1))
    if done.rowcount != 1:
        raise ProfileNotYetCreated(event.user_id)


class UserModule(ServiceModule):
    name = "user"
    migrations = Path(__file__).parent / "migrations"

    def servicers(self):
        return [(user_pb2_grpc.add_UserServiceServicer_to_server, UserServicer(self.db),
                 "petplatform.user.v1.UserService")]

    async def subscribe(self) -> None:
        effects = {
            "user.created": (auth_pb2.UserCreatedEvent, on_user_created),
            "user.email_verified": (auth_pb2.UserEmailVerifiedEvent, on_email_verified),
            "user.reported": (user_pb2.UserReportedEvent, on_user_reported),
        }
        await self.rt.bus.subscribe(CONSUMER, list(effects), inbox_handler(self.db, CONSUMER, effects))
