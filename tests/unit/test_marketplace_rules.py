"""Slots across DST changes, cancellation cut-offs one minute either side (in the business's zone,
across a DST change), refunds, money in minor units, and webhook signatures."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from google.type import money_pb2
import pytest

from mesh.money import MoneyError, from_minor, to_minor
from petplatform.marketplace.v1 import marketplace_pb2 as m
from services.marketplace import calendar, policy
from mesh import webhook_signature as webhooks
from services.payment.flows import fee_of

BERLIN = ZoneInfo("Europe/Berlin")
UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)


def every_day(open_: dt.time, close: dt.time) -> list[calendar.Hours]:
    return [calendar.Hours(d, open_, close) for d in range(7)]


def starts(day: dt.date, hours, minutes=60) -> list[dt.datetime]:
    return [s for s, _ in calendar.slot_starts(hours=hours, closed=[], tz=BERLIN, first=day, last=day,
                                               minutes=minutes)]


def test_slots_keep_their_wall_clock_times_across_dst():
    hours = every_day(dt.time(9), dt.time(12))
    # Berlin: UTC+1 on Saturday 29 March 2025, UTC+2 from Sunday 30 March 03:00.
    assert starts(dt.date(2025, 3, 29), hours)[0] == dt.datetime(2025, 3, 29, 8, tzinfo=UTC)
    assert starts(dt.date(2025, 3, 30), hours)[0] == dt.datetime(2025, 3, 30, 7, tzinfo=UTC)
    assert starts(dt.date(2025, 10, 26), hours)[0] == dt.datetime(2025, 10, 26, 8, tzinfo=UTC)


def test_skipped_hours_have_no_slots_and_repeated_hours_have_two():
    night = every_day(dt.time(1), dt.time(4))
    spring = starts(dt.date(2025, 3, 30), night)  # 02:00-03:00 local does not exist
    assert [s.astimezone(BERLIN).hour for s in spring] == [1, 3]
    autumn = starts(dt.date(2025, 10, 26), night)  # 02:00-03:00 local happens twice
    assert [s.astimezone(BERLIN).strftime("%H%z") for s in autumn] == ["01+0200", "02+0200", "02+0100", "03+0100"]
    assert len(set(autumn)) == 4


@pytest.mark.parametrize("zone, year", [
    ("Europe/Berlin", 2026), ("America/New_York", 2026), ("Australia/Lord_Howe", 2026),  # 30-minute DST
    ("America/Sao_Paulo", 2018), ("America/Havana", 2026), ("Asia/Tehran", 2021),  # changes at midnight
])
def test_slots_of_days_with_one_offset_match_the_zones_own_answer_for_each_slot(zone, year):
    """The fast path (one offset for a day without a change) gives what asking the zone about every
    slot gives, over a whole year of 30-minute slots around the clock."""
    tz = ZoneInfo(zone)
    hours = [calendar.Hours(d, dt.time(0), dt.time(23, 30)) for d in range(7)]
    first, last = dt.date(year, 1, 1), dt.date(year, 12, 31)
    fast = list(calendar.slot_starts(hours=hours, closed=[], tz=tz, first=first, last=last, minutes=30))
    step = dt.timedelta(minutes=30)
    slow = []
    day = first
    while day <= last:
        wall = dt.datetime.combine(day, dt.time(0))
        out = []
        while wall + step <= dt.datetime.combine(day, dt.time(23, 30)):
            out += [(i, i + step) for i in calendar.instants(wall.replace(tzinfo=tz))]
            wall += step
        slow += sorted(out)
        day += dt.timedelta(days=1)
    assert fast == slow


def test_closed_dates_and_is_slot():
    hours = every_day(dt.time(9), dt.time(11))
    cal = dict(hours=hours, closed=[dt.date(2025, 5, 2)], tz=BERLIN, minutes=30)
    assert list(calendar.slot_starts(first=dt.date(2025, 5, 2), last=dt.date(2025, 5, 2), **cal)) == []
    start = dt.datetime(2025, 5, 1, 7, 30, tzinfo=UTC)  # 09:30 local
    assert calendar.is_slot(start, **cal) == (start, start + dt.timedelta(minutes=30))
    assert calendar.is_slot(start + MINUTE, **cal) is None
    assert calendar.is_slot(dt.datetime(2025, 5, 1, 9, tzinfo=UTC), **cal) is None  # 11:00 is closing time


def test_zones_must_be_iana_names():
    assert calendar.zone("Asia/Tokyo").key == "Asia/Tokyo"
    for bad in ("", "CEST", "+02:00", "../etc/passwd", "Europe/Nowhere"):
        with pytest.raises(ValueError):
            calendar.zone(bad)


@pytest.mark.parametrize("kind,asked,got", [
    (m.SERVICE_KIND_WALKING, m.CANCELLATION_POLICY_STRICT, m.CANCELLATION_POLICY_FLEXIBLE),
    (m.SERVICE_KIND_DAY_CARE, m.CANCELLATION_POLICY_MODERATE, m.CANCELLATION_POLICY_FLEXIBLE),
    (m.SERVICE_KIND_GROOMING, m.CANCELLATION_POLICY_STRICT, m.CANCELLATION_POLICY_STRICT),
    (m.SERVICE_KIND_BOARDING, m.CANCELLATION_POLICY_UNSPECIFIED, m.CANCELLATION_POLICY_FLEXIBLE),
])
def test_walks_and_day_care_are_always_flexible(kind, asked, got):
    assert policy.effective(kind, asked) == got


# A start on Sunday 30 March 2025 at 10:00 Berlin (08:00 UTC, summer time since 03:00 that night).
START = dt.datetime(2025, 3, 30, 8, tzinfo=UTC)


@pytest.mark.parametrize("rule,cutoff", [
    (m.CANCELLATION_POLICY_FLEXIBLE, START),
    # Noon on Saturday 29 March, still winter time: 11:00 UTC.
    (m.CANCELLATION_POLICY_MODERATE, dt.datetime(2025, 3, 29, 11, tzinfo=UTC)),
    # Noon on Sunday 23 March, winter time: 11:00 UTC.
    (m.CANCELLATION_POLICY_STRICT, dt.datetime(2025, 3, 23, 11, tzinfo=UTC)),
])
def test_refunds_one_minute_either_side_of_the_cut_off_across_dst(rule, cutoff):
    assert policy.cutoff(rule, start=START, tz=BERLIN) == cutoff
    refund = lambda now, **kw: policy.refund(rule, paid=2501, start=START, now=now, tz=BERLIN, **kw)
    assert refund(cutoff - MINUTE) == 2501
    assert refund(cutoff + MINUTE) == 1251  # half; the odd cent to the owner
    assert refund(cutoff) == 1251  # "until" the cut-off
    assert refund(cutoff + MINUTE, by_business=True) == 2501


def test_the_moderate_cut_off_after_the_autumn_change_is_in_winter_time():
    start = dt.datetime(2025, 10, 27, 9, tzinfo=UTC)  # Monday 10:00 Berlin, winter time
    # Noon on Sunday 26 October, the day the clocks went back: 11:00 UTC.
    assert policy.cutoff(m.CANCELLATION_POLICY_MODERATE, start=start, tz=BERLIN) == \
        dt.datetime(2025, 10, 26, 11, tzinfo=UTC)


def test_money_in_minor_units():
    assert to_minor(money_pb2.Money(currency_code="EUR", units=25, nanos=10_000_000)) == (2501, "EUR")
    assert to_minor(money_pb2.Money(currency_code="JPY", units=1500)) == (1500, "JPY")
    assert from_minor(2501, "EUR") == money_pb2.Money(currency_code="EUR", units=25, nanos=10_000_000)
    assert from_minor(-2501, "EUR") == money_pb2.Money(currency_code="EUR", units=-25, nanos=-10_000_000)
    for bad in (money_pb2.Money(currency_code="JPY", units=1, nanos=500_000_000),
                money_pb2.Money(currency_code="EUR", units=1, nanos=-1),
                money_pb2.Money(currency_code="EUR", nanos=1), money_pb2.Money(currency_code="eur", units=1)):
        with pytest.raises(MoneyError):
            to_minor(bad)


def test_fees_round_half_up():
    assert fee_of(2500, 10) == 250
    assert fee_of(1250, 10) == 125
    assert fee_of(5, 10) == 1
    assert fee_of(4, 10) == 0
    assert fee_of(999, 12.5) == 125


def test_webhook_signatures():
    body, secret = b'{"id":"evt_1"}', b"whsec_x"
    header = webhooks.sign(body, secret, 1_000_000)
    webhooks.verify(body, header, secret, now=1_000_000 + 300)
    for bad_body, bad_header, now in [
        (body + b" ", header, 1_000_000),  # body changed
        (body, header, 1_000_000 + 301),  # stale
        (body, header, 1_000_000 - 301),  # from the future
        (body, webhooks.sign(body, b"other", 1_000_000), 1_000_000),  # forged
        (body, header.replace("t=1000000", "t=1000001"), 1_000_000),  # timestamp moved
        (body, "v1=abc", 1_000_000), (body, "", 1_000_000), (body, "t=x,v1=y", 1_000_000),
    ]:
        with pytest.raises(webhooks.BadSignature):
            webhooks.verify(bad_body, bad_header, secret, now=now)
    # Several v1 signatures (a secret being rolled): one matching is enough.
    webhooks.verify(body, header + ",v1=" + "0" * 64, secret, now=1_000_000)
