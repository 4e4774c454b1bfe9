"""The email provider port: SMTP (aiosmtplib) or, with no SMTP host configured, the log."""
from __future__ import annotations

import email.message
import logging

import aiosmtplib

from mesh.config import Settings

log = logging.getLogger(__name__)


class Mailer:
    def __init__(self, settings: Settings):
        self._s = settings

    async def send(self, to: str, subject: str, text: str) -> None:
        msg = email.message.EmailMessage()
        msg["From"] = self._s.mail_from
        msg["To"] = to
        msg["Subject"] = subject
        msg.set_content(text)
        if not self._s.smtp_host:
            # Development without a mail server: the message (and its link) goes to the log.
            log.info("email not sent (no PETPLATFORM_SMTP_HOST): to=%s subject=%s\n%s", to, subject, text)
            return
        await aiosmtplib.send(
            msg, hostname=self._s.smtp_host, port=self._s.smtp_port, start_tls=self._s.smtp_starttls,
            username=self._s.smtp_username,
            password=self._s.smtp_password.get_secret_value() if self._s.smtp_password else None, timeout=10)
