"""A platform per module with an admin account, a fast payment worker and known webhook secrets."""
from __future__ import annotations

import pytest

from tests.support.market import ADMIN_EMAIL
from tests.support.platform import (
    Api, EdgeClient, drop_real_state, embedded_settings, real_settings, start_edge, start_platform,
)

STRIPE_SECRET = "whsec_test_secret_of_the_stripe_endpoint"
LOCAL_SECRET = "local-provider-webhook-secret"
OPTIONS = dict(admin_emails=[ADMIN_EMAIL], payment_poll_seconds=0.05, payment_retry_seconds=0.05,
               marketplace_sweep_seconds=0.05, stripe_webhook_secret=STRIPE_SECRET,
               local_payment_webhook_secret=LOCAL_SECRET)


async def admin_session(api: Api):
    return await api.signup_admin(ADMIN_EMAIL, "Market Operator")


@pytest.fixture(scope="module")
async def market(tmp_path_factory, smtp_sink):
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **OPTIONS))
    api = Api(platform, smtp_sink)
    api.admin = await admin_session(api)
    yield api
    await api.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def real_market(tmp_path_factory, smtp_sink, s3_endpoint):
    settings = real_settings(tmp_path_factory.mktemp("data"), smtp_sink, s3_endpoint, **OPTIONS)
    platform = await start_platform(settings)
    api = Api(platform, smtp_sink)
    api.admin = await admin_session(api)
    yield api
    await api.channel.close()
    consumers = list(getattr(platform.rt.bus, "consumers", []))
    await platform.stop(grace=1)
    await drop_real_state(settings, consumers)


@pytest.fixture(scope="module")
async def market_edge(tmp_path_factory, smtp_sink):
    import aiohttp
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink, **OPTIONS))
    e = await start_edge(platform)
    api = Api(platform, smtp_sink)
    api.admin = await admin_session(api)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(api, e, http)
    await api.channel.close()
    await e.stop(grace=1)
    await platform.stop(grace=1)
