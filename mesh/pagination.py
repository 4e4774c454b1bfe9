"""Keyset pagination, written once for every List method.

A listing is sorted by a key and then by the row's unique id, both the same way, so rows with equal
keys keep one order. A page ends at a position, the (key, id) of its last row, and the next page holds
the rows past it: no offsets, so rows added or removed meanwhile never shift a page. The position
travels in the signed page token (resources.encode_page_token) with its key in JSON form (an ISO date,
a number); the service reads it back into the key's type before handing it to select_page().
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, TypeVarTuple

from google.protobuf.message import Message
import sqlalchemy as sa

from mesh.resources import encode_page_token

R = TypeVar("R")
Ts = TypeVarTuple("Ts")

Position = tuple[Any, str]
"""(sort key, id) of the last row of a page: the next page starts after it."""


def after(position: Position | tuple[sa.BindParameter[Any], sa.BindParameter[Any]], key: sa.ColumnElement[Any],
          id_column: sa.ColumnElement[Any], *, descending: bool) -> sa.ColumnElement[bool]:
    """The rows that come after `position` in the order by (key, id): past its key, or on its key and
    past its id. A statement built once gives bound parameters for the two."""
    value, last_id = position
    if descending:
        return sa.or_(key < value, sa.and_(key == value, id_column < last_id))
    return sa.or_(key > value, sa.and_(key == value, id_column > last_id))


def select_page(query: sa.Select[*Ts], position: Position | None, key: sa.ColumnElement[Any],
                id_column: sa.ColumnElement[Any], *, descending: bool, size: int) -> sa.Select[*Ts]:
    """`query` in the order by (key, id), from after `position` (None: from the start), one row longer
    than a page: that extra row tells page() that another page follows."""
    if position is not None:
        query = query.where(after(position, key, id_column, descending=descending))
    direction = sa.desc if descending else sa.asc
    return query.order_by(direction(key), direction(id_column)).limit(size + 1)


def page(rows: Sequence[R], size: int, position_of: Callable[[R], list[Any]],
         request: Message) -> tuple[Sequence[R], str]:
    """The page among `rows` (fetched by select_page with the same size) and the token of the next
    page, "" after the last. `position_of`: a row's position as the token holds it, [key as JSON, id];
    the token is bound to `request`'s filters."""
    if len(rows) <= size:
        return rows, ""
    rows = rows[:size]
    return rows, encode_page_token(position_of(rows[-1]), request)
