"""A platform per module with an admin, a moderator, a second moderator and a support member."""
from __future__ import annotations

import pytest

from tests.support.admin import ADMIN_EMAIL, signup_staff
from tests.support.events import Producer
from tests.support.platform import Api, drop_real_state, embedded_settings, real_settings, start_platform

OPTIONS = dict(admin_emails=[ADMIN_EMAIL])


async def staffed(api: Api, tmp_path) -> Api:
    api.admin_session = await api.signup_admin(ADMIN_EMAIL, "Site Operator")
    api.moderator = await signup_staff(api, api.admin_session, "moderator", "Quinn Reviewer")
    api.moderator2 = await signup_staff(api, api.admin_session, "moderator", "Riley Reviewer")
    api.support = await signup_staff(api, api.admin_session, "support", "Sam Helper")
    # The fraud service's events, from a producer of its own (the fraud service is another part of the issue).
    api.fraud = await Producer.open("fraud", api.platform.rt.bus, tmp_path)
    return api


@pytest.fixture(scope="module")
async def admin_api(tmp_path_factory, smtp_sink):
    tmp = tmp_path_factory.mktemp("data")
    platform = await start_platform(embedded_settings(tmp, smtp_sink, **OPTIONS))
    api = await staffed(Api(platform, smtp_sink), tmp)
    yield api
    await api.fraud.close()
    await api.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def real_admin_api(tmp_path_factory, smtp_sink, s3_endpoint):
    tmp = tmp_path_factory.mktemp("data")
    settings = real_settings(tmp, smtp_sink, s3_endpoint, **OPTIONS)
    platform = await start_platform(settings)
    api = await staffed(Api(platform, smtp_sink), tmp)
    yield api
    await api.fraud.close()
    await api.channel.close()
    consumers = list(getattr(platform.rt.bus, "consumers", []))
    await platform.stop(grace=1)
    await drop_real_state(settings, consumers)
