"""A user record's parts from peers: a peer that cannot answer gives None (the record names the part
unavailable), never an error of GetUserRecord itself."""
from __future__ import annotations

import socket

import grpc

from services.admin import peers


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_a_peer_that_is_down_gives_nothing_rather_than_an_error():
    async with grpc.aio.insecure_channel(f"127.0.0.1:{closed_port()}") as channel:
        assert await peers.sessions_of(channel, user="users/abc", token="Bearer x") is None
        assert await peers.listings_of(channel, user="users/abc", token="Bearer x") is None
