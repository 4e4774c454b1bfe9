"""A database that cannot serve (down, restarting, out of connections, its pool exhausted, SQLite locked past
its wait) is the server's passing trouble, not the client's mistake and not a bug: UNAVAILABLE with RetryInfo
(HTTP 503 at the edge), so clients retry, where it used to be INTERNAL."""
from __future__ import annotations

import sqlite3
import uuid

from google.rpc import error_details_pb2
import grpc
import pytest
import sqlalchemy as sa

from mesh.sql import is_unavailable
from petplatform.pet.v1 import pet_pb2
from tests.support.errors import expect, status_of
from tests.support.platform import Api, module_of


class _PgError(Exception):
    """What asyncpg's errors carry: a SQLSTATE."""

    def __init__(self, sqlstate: str):
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def _dbapi(orig: BaseException, invalidated: bool = False) -> sa.exc.DBAPIError:
    return sa.exc.DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize("exc, unavailable", [
    (_dbapi(_PgError("53300")), True),  # too many connections
    (_dbapi(_PgError("57P01")), True),  # the server is shutting down
    (_dbapi(_PgError("08006")), True),  # the connection failed
    (_dbapi(Exception("gone"), invalidated=True), True),
    (sa.exc.TimeoutError("QueuePool limit reached"), True),
    (sqlite3.OperationalError("database is locked"), True),
    (_dbapi(sqlite3.OperationalError("database is locked")), True),
    (_dbapi(_PgError("23505")), False),  # a unique violation is a bug or a race to handle, not an outage
    (_dbapi(_PgError("42P01")), False),  # an undefined table is a bug
    (_dbapi(sqlite3.OperationalError("no such table: pets")), False),
    (ValueError("nope"), False),
])
def test_which_database_errors_mean_unavailable(exc, unavailable):
    assert is_unavailable(exc) == unavailable


async def test_a_read_that_meets_a_database_out_of_connections_is_unavailable_with_retry_info(
        api: Api, monkeypatch):
    async def out_of_connections(_fn):
        raise _dbapi(_PgError("53300"))
    monkeypatch.setattr(module_of(api, "pet").db, "reading", out_of_connections)
    get = api.pet.GetPet(pet_pb2.GetPetRequest(name=f"pets/{uuid.uuid4().hex}"))
    err = await expect(grpc.StatusCode.UNAVAILABLE, get, "DATABASE_UNAVAILABLE")
    assert any(d.Is(error_details_pb2.RetryInfo.DESCRIPTOR) for d in status_of(err).details)
