"""Notifications: the API (api.py), the worker that turns events into notifications and delivery
requests, the delivery consumer that turns those into provider calls, and the dispatcher making them."""
from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import Mapping
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from mesh import errors
from mesh.events import Effects, PoisonEvent, emit
from mesh.registry import ServiceSpec
from mesh.resources import new_id, parse_name, timestamp
from mesh.runtime import Runtime, ServiceModule
from mesh.sql import utcnow
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import events_pb2 as auth_events
from petplatform.chat.v1 import events_pb2 as chat_events
from petplatform.common.v1 import event_pb2
from petplatform.matching.v1 import events_pb2 as matching_events
from petplatform.notification.v1 import events_pb2 as notification_events
from petplatform.notification.v1 import notification_pb2 as pb
from petplatform.payment.v1 import events_pb2 as payment_events
from services.notification import domain
from services.notification.api import NotificationServicer
from services.notification.channels import (ApnsPush, FcmPush, LocalSink, PushProvider, PushRouter, SmsProvider,
                                            TwilioSms)
from services.notification.delivery import Dispatcher
from services.notification.store import (PENDING, channels_for, contact, contacts, deliveries, devices,
                                         notifications, preferences)


def user_id(name: str) -> str:
    try:
        return parse_name(name, "users/{}")[0]
    except errors.ApiError:
        raise PoisonEvent(f"not a user name: {name!r}") from None


class NotificationModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        settings = rt.settings
        self.sink = LocalSink(settings.data_dir / "notifications" / "sink.jsonl")
        sms: SmsProvider = self.sink
        fcm: PushProvider = self.sink
        if "fcm" in (settings.notification_push_provider, settings.notification_ios_push_provider):
            assert settings.fcm_service_account_file is not None  # the settings check it
            fcm = FcmPush(project_id=settings.fcm_project_id, api_url=settings.fcm_api_url,
                          service_account=json.loads(settings.fcm_service_account_file.read_text()))
        ios: PushProvider = {"sink": self.sink, "fcm": fcm}.get(settings.notification_ios_push_provider, self.sink)
        if settings.notification_ios_push_provider == "apns":
            assert settings.apns_private_key_file is not None  # the settings check it
            ios = ApnsPush(team_id=settings.apns_team_id, key_id=settings.apns_key_id, topic=settings.apns_topic,
                           private_key=settings.apns_private_key_file.read_text(), api_url=settings.apns_api_url,
                           verify=(ssl.create_default_context(cafile=settings.apns_ca_file)
                                   if settings.apns_ca_file else True))
        push = PushRouter(ios=ios, others=fcm if settings.notification_push_provider == "fcm" else self.sink)
        if settings.notification_sms_provider == "twilio":
            sms = TwilioSms(account_sid=settings.twilio_account_sid, api_url=settings.twilio_api_url,
                            auth_token=settings.twilio_auth_token.get_secret_value(),
                            from_number=settings.twilio_from_number)
        self.dispatcher = Dispatcher(
            self.db, push=push, sms=sms, base_seconds=settings.notification_retry_base_seconds,
            max_seconds=settings.notification_retry_max_seconds, max_attempts=settings.notification_max_attempts,
            poll_seconds=settings.notification_poll_seconds)

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.notification.v1.NotificationService": NotificationServicer(self.db)}

    def consumers(self) -> Mapping[str, Effects]:
        return {
            "notification.worker": {chat_events.MessageSent: self._message_sent,
                                    matching_events.MatchCreated: self._match_created,
                                    matching_events.AdoptionCompleted: self._adoption_completed,
                                    auth_events.UserCreated: self._user_created,
                                    admin_events.ModerationActionTaken: self._moderated,
                                    auth_events.UserStatusChanged: self._status_changed,
                                    payment_events.PayoutFailed: self._payout_failed},
            "notification.delivery": {notification_events.NotificationRequested: self._requested},
        }

    async def start(self) -> None:
        self.dispatcher.start()

    async def stop(self) -> None:
        await self.dispatcher.stop()
        for provider in (self.dispatcher.push, self.dispatcher.sms):
            if close := getattr(provider, "close", None):
                await close()
        await super().stop()

    # --- the worker: events -> notifications and delivery requests ---

    async def _notify(self, s: AsyncSession, *, user: str, kind: int, title: str, body: str, target: str) -> None:
        """Stores a notification for `user` and asks each channel they chose for its kind to deliver it."""
        nid, now = new_id(), utcnow()
        await s.execute(notifications.insert().values(id=nid, user_id=user, kind=kind, title=title, body=body,
                                                      target=target, create_time=now))
        note = pb.Notification(name=f"notifications/{nid}", kind=pb.Kind.Name(kind), title=title, body=body,
                               target=target, create_time=timestamp(now))
        chosen, phone = await channels_for(s, user)
        for channel in chosen.get(kind, ()):
            if channel == pb.CHANNEL_EMAIL:
                if (c := await contact(s, user)) is not None:
                    link = f"{self.rt.settings.public_url}/{target}" if target else self.rt.settings.public_url
                    await emit(s, event_pb2.EmailRequested(to=c.email, subject=title, text_body=f"{body}\n\n{link}"))
            elif channel != pb.CHANNEL_SMS or phone:
                await emit(s, notification_events.NotificationRequested(
                    user=f"users/{user}", channel=pb.Channel.Name(channel), notification=note))

    async def _name(self, s: AsyncSession, user: str) -> str:
        c = await contact(s, user)
        return c.display_name if c is not None else "Someone"

    async def _message_sent(self, s: AsyncSession, event: chat_events.MessageSent) -> None:
        recipients = [user_id(r) for r in event.recipients]
        if not recipients or event.message.HasField("delete_time"):
            return
        # Who had a chat stream open when it was stored saw it there: no notification (and, when nobody is
        # left, no query: most messages of a live conversation end here).
        watching = {user_id(u) for u in event.watching}
        offline = [u for u in recipients if u not in watching]
        if not offline:
            return
        sender = await self._name(s, user_id(event.message.sender))
        room = "/".join(event.message.name.split("/")[:2])
        for user in offline:
            await self._notify(s, user=user, kind=pb.KIND_MESSAGE, title=f"New message from {sender}",
                               body=domain.preview(event.message.text), target=room)

    async def _match_created(self, s: AsyncSession, event: matching_events.MatchCreated) -> None:
        users = [user_id(u) for u in event.match.users]
        if len(users) != 2 or users[0] == users[1]:
            raise PoisonEvent(f"a match has two different users, not {users}")
        for me, other in (users, users[::-1]):
            await self._notify(s, user=me, kind=pb.KIND_MATCH, title="It's a match!",
                               body=f"You and {await self._name(s, other)} matched: say hello.",
                               target="rooms/" + event.match.name.removeprefix("matches/"))

    async def _adoption_completed(self, s: AsyncSession, event: matching_events.AdoptionCompleted) -> None:
        users = [user_id(u) for u in event.match.users]
        if len(users) != 2:
            raise PoisonEvent(f"an adoption has a former owner and an adopter, not {users}")
        owner, adopter = users
        await self._notify(s, user=owner, kind=pb.KIND_ADOPTION, title="Adoption completed",
                           body=f"Your pet found a new home with {await self._name(s, adopter)}.",
                           target=event.match.name)
        await self._notify(s, user=adopter, kind=pb.KIND_ADOPTION, title="Adoption completed",
                           body="Congratulations on your new companion!", target=event.match.name)

    async def _payout_failed(self, s: AsyncSession, event: payment_events.PayoutFailed) -> None:
        title, body = domain.payout_failed_notice(event.payment, event.retry)
        await self._notify(s, user=user_id(event.business_owner), kind=pb.KIND_PAYMENT, title=title, body=body,
                           target=event.business)

    async def _user_created(self, s: AsyncSession, event: auth_events.UserCreated) -> None:
        user = user_id(event.user)
        if await contact(s, user) is None:
            await s.execute(contacts.insert().values(user_id=user, email=event.email,
                                                     display_name=event.display_name))
        await self._notify(s, user=user, kind=pb.KIND_WELCOME, title="Welcome to Pet Platform",
                           body=f"Hello {event.display_name}: find a friend, or a home for one.", target="")

    async def _moderated(self, s: AsyncSession, event: admin_events.ModerationActionTaken) -> None:
        """The affected user hears of a decision (and of its reversal); a dismissal tells nobody. The event
        names no reporter, and neither does the notice."""
        notice = domain.moderation_notice(event.action, reversal=event.reversal, reason=event.reason)
        if notice is None:
            return
        title, body = notice
        target = event.subject if event.subject.startswith("pets/") else ""
        await self._notify(s, user=user_id(event.user), kind=pb.KIND_MODERATION, title=title, body=body,
                           target=target)

    async def _status_changed(self, s: AsyncSession, event: auth_events.UserStatusChanged) -> None:
        """A suspension, ban or reinstatement by staff directly; one decided in a case was told by its
        moderation.action_taken."""
        if event.case:
            return
        end_time = event.end_time.ToDatetime(tzinfo=dt.timezone.utc) if event.HasField("end_time") else None
        notice = domain.status_notice(event.status, reason=event.reason, end_time=end_time)
        if notice is not None:
            await self._notify(s, user=user_id(event.user), kind=pb.KIND_MODERATION, title=notice[0],
                               body=notice[1], target="")

    # --- delivery requests -> provider calls (made by the dispatcher) ---

    async def _requested(self, s: AsyncSession, event: notification_events.NotificationRequested) -> None:
        user, now = user_id(event.user), utcnow()
        if event.channel == pb.CHANNEL_PUSH:
            rows = [(d.platform, d.token) for d in await s.execute(
                sa.select(devices.c.platform, devices.c.token).where(devices.c.user_id == user))]
        elif event.channel == pb.CHANNEL_SMS:
            phone = await s.scalar(sa.select(preferences.c.phone_number).where(preferences.c.user_id == user))
            rows = [(0, phone)] if phone else []
        else:
            raise PoisonEvent(f"notification.send delivers by push or SMS, not {event.channel}")
        n = event.notification
        for platform, address in rows:
            await s.execute(deliveries.insert().values(
                id=new_id(), user_id=user, channel=event.channel, platform=platform, address=address,
                title=n.title[:200], body=n.body, target=n.target[:200], notification=n.name[:200],
                state=PENDING, attempts=0, next_attempt_time=now, create_time=now))
        if rows:
            sa.event.listen(s.sync_session, "after_commit", lambda _s: self.dispatcher.wake(), once=True)
