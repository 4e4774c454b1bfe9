"""PETPLATFORM_EVENT_LOOP: `petplatform run` serves on uvloop unless asyncio's own loop is asked for, and the
edge starts on either (it reads its bound port from the loop's server)."""
from __future__ import annotations

import asyncio

from aiohttp import web
import pytest
import uvloop

from app.cli import _loop_factory
from gateway.edge import bound_port
from mesh.config import ConfigError, load_settings


def test_uvloop_unless_asked_otherwise():
    assert _loop_factory(load_settings()) is uvloop.new_event_loop
    assert _loop_factory(load_settings(event_loop="asyncio")) is None  # asyncio.Runner's default loop
    with pytest.raises(ConfigError, match="EVENT_LOOP"):
        load_settings(event_loop="trio")


@pytest.mark.parametrize("factory", [uvloop.new_event_loop, None])
def test_the_edge_finds_its_port_on_either_loop(factory):
    async def serve() -> int:
        runner = web.AppRunner(web.Application())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            return bound_port(site)
        finally:
            await runner.cleanup()
    with asyncio.Runner(loop_factory=factory) as runner:
        assert runner.run(serve()) > 0
