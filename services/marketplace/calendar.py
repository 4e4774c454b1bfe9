"""Slots and cut-offs in a business's own time zone (pure functions, zoneinfo). Hours are wall-clock
times: on a DST change day a slot whose local start does not exist (spring forward) is left out, and
one whose local start happens twice (fall back) is offered at both instants."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

UTC = dt.timezone.utc


@dataclasses.dataclass(frozen=True)
class Hours:
    weekday: int  # 0 Monday ... 6 Sunday (datetime's)
    open: dt.time
    close: dt.time


def zone(name: str) -> ZoneInfo:
    """The IANA zone; ValueError for anything else (abbreviations, offsets, paths)."""
    if not name or name not in _ZONES:
        raise ValueError(f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{name!r} is not an IANA time zone") from e


_ZONES = frozenset(available_timezones())


def exists(local: dt.datetime) -> bool:
    """False for a wall time skipped by a DST change (it does not round-trip through UTC)."""
    back = local.astimezone(UTC).astimezone(local.tzinfo)
    return back.replace(tzinfo=None) == local.replace(tzinfo=None)


def instants(local: dt.datetime) -> list[dt.datetime]:
    """The UTC instants a wall time names: none (skipped), one, or two (repeated at fall back)."""
    if not exists(local):
        return []
    first, second = local.replace(fold=0).astimezone(UTC), local.replace(fold=1).astimezone(UTC)
    return [first] if first == second else [first, second]


def fixed_offset(day: dt.date, tz: ZoneInfo) -> dt.timedelta | None:
    """The zone's UTC offset all through a local day, or None when it changes during the day (a DST
    change, or one at its midnight): then each wall time needs the zone's own answer."""
    start, end = dt.datetime.combine(day, dt.time()), dt.datetime.combine(day + dt.timedelta(days=1), dt.time())
    offsets = {t.replace(tzinfo=tz, fold=f).utcoffset() for t in (start, end) for f in (0, 1)}
    return offsets.pop() if len(offsets) == 1 else None


def slot_starts(*, hours: Iterable[Hours], closed: Iterable[dt.date], tz: ZoneInfo, first: dt.date, last: dt.date,
                minutes: int) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """(start, end) in UTC of every slot from local date `first` to `last` inclusive, in order: each
    day's ranges cut into `minutes`-long slots from their opening time, the last ending by closing."""
    by_day: dict[int, list[Hours]] = {}
    for h in hours:
        by_day.setdefault(h.weekday, []).append(h)
    off = set(closed)
    step = dt.timedelta(minutes=minutes)
    day = first
    while day <= last:
        ranges = by_day.get(day.weekday())
        if ranges and day not in off:
            # Most days keep one offset: local minus offset is the instant, with no zone lookups per
            # slot (a month of 15-minute slots is ~1500 of them).
            offset = fixed_offset(day, tz)
            out = []
            for h in sorted(ranges, key=lambda h: h.open):
                start = dt.datetime.combine(day, h.open)
                close = dt.datetime.combine(day, h.close) if h.close > h.open else None
                while close is not None and start + step <= close:
                    if offset is not None:
                        instant = (start - offset).replace(tzinfo=UTC)
                        out.append((instant, instant + step))
                    else:
                        for instant in instants(start.replace(tzinfo=tz)):
                            out.append((instant, instant + step))
                    start += step
            yield from sorted(out)
        day += dt.timedelta(days=1)


def is_slot(start: dt.datetime, **calendar) -> tuple[dt.datetime, dt.datetime] | None:
    """The slot beginning at `start` (UTC), if the calendar has one (same arguments as slot_starts,
    without first/last)."""
    tz: ZoneInfo = calendar["tz"]
    local_day = start.astimezone(tz).date()
    for s, e in slot_starts(first=local_day, last=local_day, **calendar):
        if s == start:
            return s, e
    return None


def noon_before(start: dt.datetime, tz: ZoneInfo, days: int) -> dt.datetime:
    """12:00 local, `days` local days before the local date of `start`, in UTC."""
    day = start.astimezone(tz).date() - dt.timedelta(days=days)
    return dt.datetime.combine(day, dt.time(12), tzinfo=tz).astimezone(UTC)
