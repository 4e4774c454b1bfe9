"""Shared fixtures: an in-process platform (embedded or real profile), a local SMTP sink, a local S3.
The helpers they are built from live in tests/support/."""
from __future__ import annotations

import pytest

from tests.support.platform import (
    Api, EdgeClient, SmtpSink, drop_real_state, embedded_settings, real_settings, start_edge, start_platform,
)


@pytest.fixture(scope="session")
def smtp_sink():
    sink = SmtpSink()
    sink.start()
    yield sink
    sink.controller.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto's S3 server: the local stand-in for MinIO."""
    from moto.server import ThreadedMotoServer
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
async def api(tmp_path_factory, smtp_sink):
    """The whole platform, embedded profile, one per test module."""
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink))
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def edge(tmp_path_factory, smtp_sink):
    """Platform + edge, embedded profile, one per test module."""
    import aiohttp
    platform = await start_platform(embedded_settings(tmp_path_factory.mktemp("data"), smtp_sink))
    e = await start_edge(platform)
    api = Api(platform, smtp_sink)
    async with aiohttp.ClientSession() as http:
        yield EdgeClient(api, e, http)
    await api.channel.close()
    await e.stop(grace=1)
    await platform.stop(grace=1)


@pytest.fixture(scope="module")
async def real_api(tmp_path_factory, smtp_sink, s3_endpoint):
    """The whole platform on the real PostgreSQL, RabbitMQ and Redis (they must be running)."""
    settings = real_settings(tmp_path_factory.mktemp("data"), smtp_sink, s3_endpoint)
    platform = await start_platform(settings)
    client = Api(platform, smtp_sink)
    yield client
    await client.channel.close()
    consumers = list(getattr(platform.rt.bus, "consumers", []))
    await platform.stop(grace=1)
    await drop_real_state(settings, consumers)
