"""Money as whole minor units of a currency, to and from google.type.Money. Amounts are stored and
added as integers (cents, yen), never floats; only currencies listed here are accepted."""
from __future__ import annotations

from google.type import money_pb2

# ISO 4217 minor-unit exponents of the currencies the platform takes.
EXPONENTS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2, "NOK": 2, "DKK": 2,
             "PLN": 2, "CZK": 2, "SGD": 2, "HKD": 2, "THB": 2, "JPY": 0, "KRW": 0}
NANOS = 1_000_000_000
MAX_MINOR = 10**12  # far above any booking; keeps sums well inside 64 bits


class MoneyError(ValueError):
    pass


def to_minor(money: money_pb2.Money) -> tuple[int, str]:
    """(minor units, currency). MoneyError for an unknown currency, mixed signs, or a fraction of a
    minor unit."""
    code = money.currency_code
    if code not in EXPONENTS:
        raise MoneyError(f"currency {code or '(empty)'!r} is not accepted; one of {', '.join(sorted(EXPONENTS))}")
    if (money.units > 0 and money.nanos < 0) or (money.units < 0 and money.nanos > 0) or abs(money.nanos) >= NANOS:
        raise MoneyError("units and nanos must have the same sign, nanos within ±999,999,999")
    step = NANOS // 10 ** EXPONENTS[code]
    if money.nanos % step:
        raise MoneyError(f"{code} has {EXPONENTS[code]} decimal places")
    minor = money.units * 10 ** EXPONENTS[code] + money.nanos // step if money.nanos >= 0 else \
        money.units * 10 ** EXPONENTS[code] - (-money.nanos) // step
    if abs(minor) > MAX_MINOR:
        raise MoneyError("amount too large")
    return minor, code


def from_minor(minor: int, currency: str) -> money_pb2.Money:
    exp = EXPONENTS[currency]
    sign = -1 if minor < 0 else 1
    units, rest = divmod(abs(minor), 10 ** exp)
    return money_pb2.Money(currency_code=currency, units=sign * units, nanos=sign * rest * (NANOS // 10 ** exp))
