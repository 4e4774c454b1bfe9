"""The keyset pagination helper (mesh/pagination.py) against an in-memory SQLite table: every row is
seen once, in order, whichever the direction, however many rows share a sort key."""
from __future__ import annotations

import datetime as dt
import itertools

import pytest
import sqlalchemy as sa

from mesh.pagination import page, select_page
from mesh.resources import decode_page_token
from petplatform.user.v1 import user_pb2

metadata = sa.MetaData()
items = sa.Table("items", metadata, sa.Column("id", sa.String(8), primary_key=True),
                 sa.Column("day", sa.Date, nullable=False), sa.Column("kind", sa.String(8), nullable=False))
DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=d) for d in (0, 0, 0, 1, 2, 2, 5, 5, 5, 5, 7)]  # ties on most keys
REQUEST = user_pb2.ListReviewsRequest(parent="users/0123456789abcdef0123456789abcdef")


@pytest.fixture(scope="module")
def db():
    engine = sa.create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        # Ids not in the order of the days, so the id only breaks ties.
        conn.execute(items.insert(), [{"id": f"i{(7 * n) % len(DAYS):02d}", "day": day, "kind": "a" if n % 3 else "b"}
                                      for n, day in enumerate(DAYS)])
    with engine.connect() as conn:
        yield conn
    engine.dispose()


def walk(conn: sa.Connection, size: int, *, descending: bool, kind: str | None = None) -> list[tuple[dt.date, str]]:
    """Every page from the first, each read back from the token the one before gave, as a service does."""
    query = sa.select(items)
    if kind:
        query = query.where(items.c.kind == kind)
    seen: list[tuple[dt.date, str]] = []
    position = None
    for _ in range(len(DAYS) + 2):
        rows = conn.execute(select_page(query, position, items.c.day, items.c.id, descending=descending,
                                        size=size)).all()
        rows, token = page(rows, size, lambda r: [r.day.isoformat(), r.id], REQUEST)
        assert len(rows) <= size
        seen += [(r.day, r.id) for r in rows]
        if not token:
            return seen
        day, last_id = decode_page_token(token, REQUEST)  # type: ignore[misc]  # a token: never None
        position = (dt.date.fromisoformat(day), last_id)
    raise AssertionError("the pages never ended")


def expected(conn: sa.Connection, *, descending: bool, kind: str | None = None) -> list[tuple[dt.date, str]]:
    rows = [(r.day, r.id) for r in conn.execute(sa.select(items)) if kind is None or r.kind == kind]
    return sorted(rows, reverse=descending)


@pytest.mark.parametrize("descending, size", list(itertools.product((True, False), (1, 2, 3, 4, 11, 20))))
def test_every_row_once_in_key_then_id_order(db, descending, size):
    got = walk(db, size, descending=descending)
    assert got == expected(db, descending=descending)
    assert len(set(got)) == len(DAYS)


@pytest.mark.parametrize("descending", (True, False))
def test_pages_follow_the_query_filter(db, descending):
    assert walk(db, 2, descending=descending, kind="a") == expected(db, descending=descending, kind="a")


def test_a_full_last_page_says_no_more():
    # Exactly a page fetched (no extra row): it is the last one.
    assert page([1, 2, 3], 3, lambda r: [r, "x"], REQUEST) == ([1, 2, 3], "")
    rows, token = page([1, 2, 3, 4], 3, lambda r: [r, f"id{r}"], REQUEST)
    assert rows == [1, 2, 3] and decode_page_token(token, REQUEST) == [3, "id3"]
    assert page([], 3, lambda r: [r, "x"], REQUEST) == ([], "")


def test_rows_added_before_the_position_do_not_shift_the_next_page(db):
    first = db.execute(select_page(sa.select(items), None, items.c.day, items.c.id, descending=True, size=3)).all()
    rows, _ = page(first, 3, lambda r: [r.day.isoformat(), r.id], REQUEST)
    position = (rows[-1].day, rows[-1].id)
    db.execute(items.insert().values(id="znew", day=dt.date(2027, 1, 1), kind="a"))  # newest: sorts first
    try:
        after = db.execute(select_page(sa.select(items), position, items.c.day, items.c.id, descending=True,
                                       size=3)).all()
        assert [(r.day, r.id) for r in after] == expected(db, descending=True)[4:8]
    finally:
        db.rollback()
