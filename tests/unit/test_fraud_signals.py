"""What one text or listing says (prices, scam phrases, fingerprints), the feature vector and the scorer's
factors, without a platform."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ml.fraud import features, model, signals

NOW = dt.datetime(2026, 11, 26, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize(("text", "price"), [
    ("Rehoming fee $450.", 450.0), ("was $900, now only $300!", 300.0), ("price: 1,200", 1200.0),
    ("200 dollars, vaccinated", 200.0), ("Free to a good home", 0.0), ("Call 555-0134, she is 3 years old", None),
    ("€80 adoption fee", 80.0), ("", None),
])
def test_prices_are_read_from_the_text(text, price):
    assert signals.parse_price(text) == price


@pytest.mark.parametrize(("text", "flag"), [
    ("Please pay with an Amazon gift card", "off_platform_payment"), ("Western Union only", "off_platform_payment"),
    ("send the deposit via Zelle", "off_platform_payment"), ("I accept bitcoin", "off_platform_payment"),
    ("The shipping fee is $200", "fees_after_agreement"), ("you need to pay for the crate", "fees_after_agreement"),
    ("No visits, I am abroad", "refuses_visit"), ("I can't do a video call", "refuses_visit"),
    ("Deposit today to reserve", "pressure"),
])
def test_scam_phrases_are_flagged(text, flag):
    assert signals.flags(text)[flag]


@pytest.mark.parametrize("text", [
    "Can you ship to Denver or should I pick up?", "Is the crate included?", "Could I visit on Saturday?",
    "I can pay the adoption fee in cash at pickup.",
])
def test_innocent_questions_are_not_flagged_as_payment_or_fees(text):
    f = signals.flags(text)
    assert not f["off_platform_payment"] and not f["fees_after_agreement"]


def test_near_duplicate_texts_share_a_fingerprint_band_and_others_do_not():
    base = ("Adorable labrador puppy ready for a new home, vet checked with papers, comes with toys blanket and "
            "food, very playful and good with kids, price 150 dollars")
    edited = base.replace("labrador", "poodle")
    other = "Calm old cat who loves sunny windows and quiet evenings, looking for a retired owner with patience"
    a, b, c = signals.simhash(base), signals.simhash(edited), signals.simhash(other)
    assert a is not None and b is not None and c is not None
    assert signals.hamming(a, b) < signals.hamming(a, c)
    assert signals.simhash("too short to judge") is None
    index = signals.NearIndex(n_bands=signals.TEXT_BANDS, within=signals.TEXT_WITHIN)
    index.add("ring", a)
    assert index.others_near("someone", a) and not index.others_near("ring", a)
    assert not index.others_near("someone", c)


def test_bands_find_every_fingerprint_within_the_threshold():
    rng = np.random.default_rng(3)
    index = signals.NearIndex(n_bands=signals.PHOTO_BANDS, within=signals.PHOTO_WITHIN)
    for _ in range(200):
        h = int(rng.integers(0, 2**63))
        index.add("a", h)
        flipped = h
        for bit in rng.choice(64, size=signals.PHOTO_WITHIN, replace=False):
            flipped ^= 1 << int(bit)
        assert index.others_near("b", flipped)
    assert signals.from_signed(signals.to_signed(2**64 - 1)) == 2**64 - 1


def listing(**kw) -> features.ListingFacts:
    values = dict(create_time=NOW, price=600.0, typical=600.0, reused_photos=0, copied_text=False,
                  flags=signals.flags(""))
    return features.ListingFacts(**{**values, **kw})


def test_an_honest_old_account_scores_low_and_a_scam_listing_high_with_factors_in_words():
    honest = features.UserFacts(now=NOW, create_time=NOW - dt.timedelta(days=400), listings=(listing(),))
    assert model.assess(model.RULES_ONLY, features.vector(honest)).action == "none"
    scam = listing(price=60.0, reused_photos=2, flags=signals.flags("pay with a gift card, no visits"))
    fresh = features.UserFacts(now=NOW, create_time=NOW - dt.timedelta(hours=3))
    a = model.assess(model.RULES_ONLY, features.vector(fresh, listing=scam))
    assert a.action == "hold" and a.score >= model.HOLD_THRESHOLD
    codes = [f.code for f in a.factors]
    assert {"off_platform_payment", "price_discount", "reused_photos"} <= set(codes)
    assert abs(sum(f.contribution for f in a.factors) - a.score) < 0.01 or len(a.factors) == 5
    assert any("90% below" in f.description for f in a.factors)


def test_the_typical_price_is_the_breed_median_then_the_species_then_the_seed():
    assert features.typical_price(species=1, breed_prices=[100] * 5, species_prices=[900] * 9) == 100
    assert features.typical_price(species=1, breed_prices=[100], species_prices=[900] * 9) == 900
    assert features.typical_price(species=2, breed_prices=[], species_prices=[]) == features.DEFAULT_TYPICAL[2]


def test_training_needs_labels_of_both_kinds_for_a_classifier():
    rng = np.random.default_rng(1)
    x = rng.random((60, len(features.NAMES)))
    unlabelled = model.train(x, np.full(60, -1), now=NOW)
    assert unlabelled.iforest is not None and unlabelled.classifier is None
    y = (x[:, 0] > 0.5).astype(np.int64)
    labelled = model.train(x, y, now=NOW)
    assert labelled.classifier is not None and labelled.labels == 60
    scores = labelled.score(x)
    assert ((0 <= scores) & (scores <= 1)).all()
