"""NotificationService: devices, the inbox and the settings, each only the caller's own."""
from __future__ import annotations

import datetime as dt

import grpc
import sqlalchemy as sa

from mesh import errors, principal
from mesh.pagination import page, select_page
from mesh.resources import check_mask, decode_page_token, page_size, parse_name, resolve_user, timestamp
from mesh.sql import Database, rows_changed, utcnow
from petplatform.notification.v1 import notification_pb2 as pb
from petplatform.notification.v1 import notification_pb2_grpc
from services.notification import domain
from services.notification.store import (channels_for, devices, notifications, save_preferences,
                                         unread_count)

DEVICE_TYPE = "notification.petplatform.dev/Device"


def to_notification(row: sa.Row) -> pb.Notification:
    return pb.Notification(name=f"notifications/{row.id}", kind=row.kind, title=row.title, body=row.body,
                           target=row.target, create_time=timestamp(row.create_time),
                           read_time=timestamp(row.read_time))


def settings_owner(name: str, field: str) -> str:
    """The caller's id, from `users/me/notificationSettings` or their own `users/{id}/...`."""
    user = resolve_user(name, field, "/notificationSettings")
    if user != principal.require().user_id:
        raise errors.permission_denied("only your own notification settings", "NOT_OWNER")
    return user


class NotificationServicer(notification_pb2_grpc.NotificationServiceServicer):
    def __init__(self, db: Database):
        self.db = db

    async def RegisterDevice(self, request: pb.RegisterDeviceRequest,
                             context: grpc.aio.ServicerContext) -> pb.RegisterDeviceResponse:
        caller = principal.require()
        domain.check_device(request.device)
        device_id, now = domain.device_id(request.device.token), utcnow()
        values = {"user_id": caller.user_id, "platform": request.device.platform, "token": request.device.token,
                  "register_time": now}
        async with self.db.transaction() as s:
            # A token is one device: whoever registers it last is signed in there.
            if not await rows_changed(s, devices.update().where(devices.c.id == device_id).values(**values)):
                await s.execute(devices.insert().values(id=device_id, **values))
        return pb.RegisterDeviceResponse(device=pb.Device(name=f"devices/{device_id}",
                                                          platform=request.device.platform,
                                                          register_time=timestamp(now)))

    async def UnregisterDevice(self, request: pb.UnregisterDeviceRequest,
                               context: grpc.aio.ServicerContext) -> pb.UnregisterDeviceResponse:
        caller = principal.require()
        device_id = parse_name(request.name, "devices/{}")[0]
        async with self.db.transaction() as s:
            gone = await rows_changed(s, devices.delete().where(devices.c.id == device_id,
                                                               devices.c.user_id == caller.user_id))
        if not gone:  # someone else's is as unknown as one never registered
            raise errors.not_found(DEVICE_TYPE, request.name)
        return pb.UnregisterDeviceResponse()

    async def ListNotifications(self, request: pb.ListNotificationsRequest,
                                context: grpc.aio.ServicerContext) -> pb.ListNotificationsResponse:
        caller = principal.require()
        size = page_size(request.page_size)
        token = decode_page_token(request.page_token, request)
        position = None if token is None else (dt.datetime.fromisoformat(token[0]), token[1])
        query = sa.select(notifications).where(notifications.c.user_id == caller.user_id)
        if request.unread_only:
            query = query.where(notifications.c.read_time.is_(None))
        async with self.db.read() as s:
            rows = (await s.execute(select_page(query, position, notifications.c.create_time, notifications.c.id,
                                                descending=True, size=size))).all()
            unread = await unread_count(s, caller.user_id)
        shown, next_token = page(rows, size, lambda r: [r.create_time.isoformat(), r.id], request)
        return pb.ListNotificationsResponse(notifications=[to_notification(r) for r in shown],
                                            next_page_token=next_token, unread_count=unread)

    async def MarkNotificationsRead(self, request: pb.MarkNotificationsReadRequest,
                                    context: grpc.aio.ServicerContext) -> pb.MarkNotificationsReadResponse:
        caller = principal.require()
        if request.all == bool(request.names):
            raise errors.invalid_argument(("names", "give the notifications to mark, or set `all`, not both"))
        if len(request.names) > 1000:
            raise errors.invalid_argument(("names", "at most 1000"))
        ids = [parse_name(n, "notifications/{}", f"names[{i}]")[0] for i, n in enumerate(request.names)]
        where = [notifications.c.user_id == caller.user_id, notifications.c.read_time.is_(None)]
        if ids:
            where.append(notifications.c.id.in_(ids))
        async with self.db.transaction() as s:
            marked = await rows_changed(s, notifications.update().where(*where).values(read_time=utcnow()))
        return pb.MarkNotificationsReadResponse(marked_count=marked)

    async def GetNotificationSettings(self, request: pb.GetNotificationSettingsRequest,
                                      context: grpc.aio.ServicerContext) -> pb.GetNotificationSettingsResponse:
        user = settings_owner(request.name, "name")
        async with self.db.read() as s:
            return pb.GetNotificationSettingsResponse(settings=await self._settings(s, user))

    async def UpdateNotificationSettings(self, request: pb.UpdateNotificationSettingsRequest,
                                         context: grpc.aio.ServicerContext) -> pb.UpdateNotificationSettingsResponse:
        user = settings_owner(request.settings.name, "settings.name")
        fields = ({"kinds", "phone_number"} if not request.update_mask.paths
                  else check_mask(request.update_mask, {"kinds", "phone_number"}))
        channels = domain.channels_of(request.settings.kinds) if "kinds" in fields else None
        phone = request.settings.phone_number if "phone_number" in fields else None
        if phone is not None:
            domain.check_phone(phone)
        async with self.db.transaction() as s:
            await save_preferences(s, user, channels=channels, phone_number=phone)
            return pb.UpdateNotificationSettingsResponse(settings=await self._settings(s, user))

    @staticmethod
    async def _settings(s, user: str) -> pb.NotificationSettings:
        chosen, phone = await channels_for(s, user)
        return pb.NotificationSettings(
            name=f"users/{user}/notificationSettings", phone_number=phone,
            kinds=[pb.KindSetting(kind=pb.Kind.Name(k), channels=[pb.Channel.Name(c) for c in chosen[k]])
                   for k in domain.KINDS])
