from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path

from mesh.errors import ApiError
from mesh.events import Effects, Outside, PoisonEvent
from mesh.mail import Mailer
from mesh.runtime import Runtime, ServiceModule
from mesh.registry import ServiceSpec
from mesh.resources import parse_name
from mesh.sql import utcnow
from petplatform.admin.v1 import events_pb2 as admin_events
from petplatform.auth.v1 import events_pb2
from petplatform.common.v1 import event_pb2
from services.auth.api import AuthServicer, new_verification_email
from services.auth import moderation, store
from services.auth.keys import SigningKeys
from services.auth.providers import Providers
from services.auth.secret_box import SecretBox, SecretUnreadable


log = logging.getLogger(__name__)


class AuthModule(ServiceModule):
    migrations = Path(__file__).parent / "migrations"

    def __init__(self, rt: Runtime, spec: ServiceSpec):
        super().__init__(rt, spec)
        self.keys = SigningKeys(rt.settings)
        self.mailer = Mailer(rt.settings)
        self.providers = Providers(rt.settings)
        self.secret_box = SecretBox(rt.settings)
        self._sweeper: asyncio.Task | None = None

    def servicers(self) -> Mapping[str, object]:
        return {"petplatform.auth.v1.AuthService": AuthServicer(self.db, self.rt.cache, self.rt.revocations,
                                                                  self.rt.settings, self.keys, self.providers,
                                                                  self.secret_box)}

    def consumers(self) -> Mapping[str, Effects]:
        settings = self.rt.settings

        async def send_verification(session, event: events_pb2.UserCreated) -> None:
            account = await store.find_account(session, event.user.removeprefix("users/"))
            if account is None or account.email_verified or not event.email:
                return  # a provider vouched for the email, or gave none
            await new_verification_email(session, settings, event.user.removeprefix("users/"), event.email)

        async def send_email(event: event_pb2.EmailRequested) -> None:
            # Outside the inbox transaction: no writer waits on the mail server. At least once: if recording
            # the event fails after the send, the email may go twice, never zero times.
            await self.mailer.send(event.to, event.subject, event.text_body)

        return {"auth.verification": {events_pb2.UserCreated: send_verification},
                "auth.mailer": {event_pb2.EmailRequested: Outside(send_email)},
                "auth.moderation": {admin_events.ModerationActionTaken: self._on_moderation}}

    async def _on_moderation(self, s, event: admin_events.ModerationActionTaken) -> None:
        """A suspension or ban decided in a case takes effect here (sessions end at once); its reversal
        reinstates the account, unless a later decision (another case, a staff RPC) set its status since.
        Repeats change nothing: the status is already what they say."""
        Action = admin_events.ModerationActionTaken
        if event.action not in (Action.ACTION_SUSPEND_USER, Action.ACTION_BAN_USER):
            return
        try:
            (user_id,) = parse_name(event.user, "users/{}", "user")
        except ApiError:
            raise PoisonEvent(f"moderation.action_taken of {event.case} names no user: {event.user!r}") from None
        account = await store.lock_account(s, user_id)
        if account is None:
            return  # deleted meanwhile
        if event.reversal:
            if account.status_case != event.case:
                return
            status = "active"
        else:
            status = "banned" if event.action == Action.ACTION_BAN_USER else "suspended"
            if account.status == "banned":
                return  # a ban outweighs a suspension, and is lifted only by its own reversal or an admin
        await moderation.change_status(s, self.rt.revocations, account, status=status, reason=event.reason, actor="",
                                       case=event.case, access_token_ttl=self.rt.settings.access_token_ttl_seconds)

    async def start(self) -> None:
        # The key is the settings': a kid never signed with before, after others were, is a rotation.
        async with self.db.transaction() as s:
            if await store.record_signing_key(s, self.keys.kid, utcnow()):
                await moderation.security_event(
                    s, events_pb2.SecurityEventRecorded.KIND_SIGNING_KEY_ROTATED, user_id=None,
                    detail=f"access tokens are now signed with key {self.keys.kid}")
        await self._reseal_mfa_secrets()
        await super().start()
        self._sweeper = asyncio.create_task(self._sweep_suspensions(), name="auth:suspensions")

    async def _sweep_suspensions(self) -> None:
        """Reinstates suspensions past their end time, so that the event saying so goes out (the pets held for
        the suspension come back) even for accounts that do not sign in; sign-in checks the end time itself."""
        while True:
            try:
                await self.end_lapsed_suspensions()
            except Exception:
                log.exception("ending lapsed suspensions failed; trying again")
            await asyncio.sleep(self.rt.settings.suspension_sweep_seconds)

    async def end_lapsed_suspensions(self) -> int:
        ended = 0
        while True:
            async with self.db.read() as s:
                due = await store.lapsed_suspensions(s, utcnow(), limit=100)
            for account_id in due:
                async with self.db.transaction() as s:
                    ended += await moderation.end_lapsed_suspension(
                        s, self.rt.revocations, account_id, access_token_ttl=self.rt.settings.access_token_ttl_seconds)
            if len(due) < 100:
                return ended

    async def _reseal_mfa_secrets(self) -> None:
        """Seals with the current key every TOTP secret still in plaintext (from before they were encrypted)
        or sealed with a previous key, so that a previous key can be dropped once a start reports none left.
        Replicas starting together do the same work; each row changes only if it is still what was read."""
        after, resealed, unreadable = "", 0, 0
        while True:
            async with self.db.transaction() as s:
                rows = await store.mfa_secrets_to_reseal(s, self.secret_box.key_id, after=after, limit=500)
                for row in rows:
                    try:
                        secret = self.secret_box.open(account_id=row.account_id, key_id=row.secret_key_id,
                                                      stored=row.secret)
                    except SecretUnreadable as e:
                        unreadable += 1
                        log.error("TOTP secret of users/%s unreadable: %s", row.account_id, e)
                        continue
                    key_id, sealed = self.secret_box.seal(account_id=row.account_id, secret=secret)
                    await store.reseal_mfa_secret(s, row.account_id, was_key_id=row.secret_key_id, sealed=sealed,
                                                  key_id=key_id)
                    resealed += 1
            if not rows:
                break
            after = rows[-1].account_id
        if resealed or unreadable:
            log.warning("TOTP secrets: %d sealed with key %s, %d unreadable with the configured keys",
                        resealed, self.secret_box.key_id, unreadable)

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self.providers.http.close()
        await super().stop()
