"""The feature vector every model reads, and the factors in words. One vector for each kind of subject
(a user, a listing, a message): the account's facts, with the subject's own content standing for the
listing-level features, so one model scores all three and every moderator label (on a user, a listing or
a message) trains it.

Facts are what the extractors (module.py Extractors, one per event source) know of an account at a time; the
offline evaluation builds the same facts from its generator, so it measures the vector that is served.
A new event source adds its facts here and one column to FEATURES."""
from __future__ import annotations

import dataclasses
import datetime as dt
import statistics
from collections.abc import Iterable, Mapping

import numpy as np
import numpy.typing as npt

from ml.fraud import signals

UNKNOWN_AGE_DAYS = 30.0  # an account older than the service's records (no user.created seen): not new
MAX_AGE_DAYS = 365.0

# Column -> its honest value: what a factor's contribution is measured against (features.py `occlude`).
FEATURES: dict[str, float] = {
    "account_age_days": MAX_AGE_DAYS,
    "listings_first_week": 0.0,  # listings within 7 days of sign-up
    "messages_first_day": 0.0,  # messages within 24 hours of sign-up
    "price_discount": 0.0,  # 1 - asking / typical price for the species (and breed), in [0, 1]
    "reused_photos": 0.0,  # photos matching a photo of another account's listing
    "copied_text": 0.0,  # listings whose text nearly duplicates another account's
    "off_platform_payment": 0.0,  # texts (listings, messages) asking for payment off the platform
    "fees_after_agreement": 0.0,  # ... adding shipping, crate, insurance or other fees
    "refuses_visit": 0.0,  # ... refusing a visit or a video call
    "pressure": 0.0,  # ... pressing to pay now
    "upheld_reports": 0.0,  # earlier moderation decisions upheld against the account
    # Appended only (stored vectors are completed with these honest values: store.padded).
    "cancelled_bookings": 0.0,  # bookings the account cancelled (booking.cancelled by the owner)
    "failed_charges": 0.0,  # charges for its bookings that failed (booking.cancelled by the platform)
}
NAMES = list(FEATURES)
BASELINE = np.array(list(FEATURES.values()), np.float64)

# Typical asking prices by species (common.v1.Species) until the store has enough listings of its own
# to take the median of; rough seeds, replaced by the data as soon as there are MIN_SAMPLES prices.
DEFAULT_TYPICAL = {1: 600.0, 2: 250.0, 3: 80.0, 4: 150.0, 5: 25.0, 6: 40.0, 7: 150.0, 8: 30.0, 9: 100.0}
MIN_SAMPLES = 5


def typical_price(*, species: int, breed_prices: Iterable[float], species_prices: Iterable[float]) -> float:
    """The breed's median asking price when there are enough, else the species', else the seed."""
    for prices in (list(breed_prices), list(species_prices)):
        positive = [p for p in prices if p > 0]
        if len(positive) >= MIN_SAMPLES:
            return float(statistics.median(positive))
    return DEFAULT_TYPICAL.get(species, DEFAULT_TYPICAL[9])


@dataclasses.dataclass(frozen=True, kw_only=True)
class ListingFacts:
    create_time: dt.datetime
    price: float | None  # from its text (signals.parse_price); pets have no price field
    typical: float  # typical price for its species and breed when scored
    reused_photos: int
    copied_text: bool
    flags: Mapping[str, bool]  # signals.flags of its name and description

    @property
    def discount(self) -> float:
        if self.price is None or self.typical <= 0:
            return 0.0
        return float(min(1.0, max(0.0, 1.0 - self.price / self.typical)))


@dataclasses.dataclass(frozen=True, kw_only=True)
class UserFacts:
    now: dt.datetime
    create_time: dt.datetime | None  # None: user.created not seen
    listings: tuple[ListingFacts, ...] = ()
    messages: tuple[tuple[dt.datetime, Mapping[str, bool]], ...] = ()  # (sent, signals.flags of its text)
    upheld_reports: int = 0
    cancelled_bookings: int = 0
    failed_charges: int = 0


def vector(user: UserFacts, *, listing: ListingFacts | None = None,
           message: Mapping[str, bool] | None = None) -> npt.NDArray[np.float64]:
    """The features of a user, or of one of their listings or messages (also counted in the user's)."""
    listings = list(user.listings) + ([listing] if listing is not None and listing not in user.listings else [])
    texts = [lf.flags for lf in listings] + [f for _, f in user.messages] + ([message] if message is not None else [])
    created = user.create_time
    age = UNKNOWN_AGE_DAYS if created is None else max(0.0, (user.now - created).total_seconds() / 86400)
    week, day = dt.timedelta(days=7), dt.timedelta(days=1)
    own = [listing] if listing is not None else listings  # the listing-level features' scope
    values = {
        "account_age_days": min(MAX_AGE_DAYS, age),
        "listings_first_week": 0.0 if created is None else
        float(sum(1 for lf in listings if lf.create_time - created <= week)),
        "messages_first_day": 0.0 if created is None else
        float(sum(1 for t, _ in user.messages if t - created <= day) + (message is not None and age <= 1)),
        # A listing's own; a user's or a message's: the worst of the account's listings.
        "price_discount": max((lf.discount for lf in own), default=0.0),
        "reused_photos": float(sum(lf.reused_photos for lf in own)),
        "copied_text": float(sum(lf.copied_text for lf in own)),
        "upheld_reports": float(user.upheld_reports),
        "cancelled_bookings": float(user.cancelled_bookings),
        "failed_charges": float(user.failed_charges),
    }
    for flag in signals.FLAGS:
        values[flag] = float(sum(1 for f in texts if f.get(flag)))
    return np.array([values[name] for name in NAMES], np.float64)


def describe(name: str, value: float) -> str:
    """A factor in words, for a moderator."""
    n = int(round(value))
    match name:
        case "account_age_days":
            return (f"account created {value * 24:.0f} hours ago" if value < 2
                    else f"account {value:.0f} days old")
        case "listings_first_week":
            return f"{n} listings within a week of sign-up"
        case "messages_first_day":
            return f"{n} messages within a day of sign-up"
        case "price_discount":
            return f"price {value:.0%} below the typical price for the species"
        case "reused_photos":
            return f"{n} photo{'s' if n != 1 else ''} also used in another account's listing"
        case "copied_text":
            return "listing text copied from another account's listing"
        case "off_platform_payment":
            return f"asks for payment off the platform (gift cards, wire, crypto, payment apps) in {n} text(s)"
        case "fees_after_agreement":
            return f"adds fees (shipping, crate, insurance) in {n} text(s)"
        case "refuses_visit":
            return f"refuses a visit or video call in {n} text(s)"
        case "pressure":
            return f"presses to pay now in {n} text(s)"
        case "upheld_reports":
            return f"{n} earlier moderation decision{'s' if n != 1 else ''} upheld against the account"
        case "cancelled_bookings":
            return f"{n} booking{'s' if n != 1 else ''} cancelled by the account"
        case "failed_charges":
            return f"{n} failed charge{'s' if n != 1 else ''} for the account's bookings"
    return name


def occluded(x: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], list[int]]:
    """Rows: x, then x with each feature that differs from its honest value set back to it. What a
    feature contributes is how much the score drops without it."""
    changed = [i for i in range(len(NAMES)) if x[i] != BASELINE[i]]
    rows = np.repeat(x[None, :], len(changed) + 1, axis=0)
    for r, i in enumerate(changed, start=1):
        rows[r, i] = BASELINE[i]
    return rows, changed
