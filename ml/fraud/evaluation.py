"""Offline evaluation of the fraud scorer (`make eval`): the seeded population of synthetic.py, replayed in
time order through the signals the service computes (prices parsed from text against the running typical
price, reused photos and copied text against earlier listings of other accounts, scam phrases), one
vector per account as of its last event (features.vector, as served), a time-based split (the accounts
whose last event is in the latest 30% of time are held out), and one row per scorer: rules only, the
Isolation Forest, the Random Forest classifier and their combination (model.py), trained on the earlier
accounts and their moderators' labels.

The same for listings, each scored as of the moment it was listed (what a hold decides on: the
account's later messages are not known yet), labelled with its account's label.

Metrics on the held-out subjects, against the truth (not the noisy labels): PR-AUC (average precision),
precision and recall at the hold threshold, recall at the review threshold."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time

import numpy as np
import numpy.typing as npt
from sklearn.metrics import average_precision_score

from ml.fraud import features, model, signals
from ml.fraud.synthetic import Account, Setting, generate

HOLD_OUT = 0.3
SCORERS = ("rules", "iforest", "classifier", "combination")
SETTINGS = {
    # The one the unit tests run: small and deterministic.
    "small": Setting(name="small", seed=5, honest=400, scammers=60),
    "A": Setting(name="A: 3,000 honest, 300 scam accounts, 20% careful scammers, look-alikes 10%", seed=31,
                 honest=3000, scammers=300),
    "B": Setting(name="B: 3,000 honest, 300 scam, 40% careful scammers, look-alikes 20%, tactics 50%, labels 10% noisy",
                 seed=47, honest=3000, scammers=300, subtle=0.4, lookalikes=0.2, tactic=0.5, label_noise=0.1),
}


@dataclasses.dataclass(frozen=True)
class Row:
    scorer: str
    pr_auc: float
    precision_at_hold: float
    recall_at_hold: float
    recall_at_review: float


def snapshot_time(a: Account) -> dt.datetime:
    times = [a.create_time] + [lf.create_time for lf in a.listings] + [t for t, _ in a.messages]
    return max(times)


@dataclasses.dataclass(frozen=True)
class Vectors:
    accounts: npt.NDArray[np.float64]  # one per account, as of its last event
    account_times: list[dt.datetime]
    listings: npt.NDArray[np.float64]  # one per listing, as of when it was listed (what the hold decides on)
    listing_times: list[dt.datetime]
    listing_owners: list[int]  # the account index of each listing


def vectors(accounts: list[Account]) -> Vectors:
    """The vectors the service would score, its listings' signals computed when each was listed."""
    photos = signals.NearIndex(n_bands=signals.PHOTO_BANDS, within=signals.PHOTO_WITHIN)
    texts = signals.NearIndex(n_bands=signals.TEXT_BANDS, within=signals.TEXT_WITHIN)
    prices: dict[tuple[int, str], list[float]] = {}
    by_species: dict[int, list[float]] = {}
    facts: dict[int, list[features.ListingFacts]] = {a.index: [] for a in accounts}
    listed = sorted(((lst.create_time, a.index, lst) for a in accounts for lst in a.listings), key=lambda r: r[:2])
    for when, owner, lst in listed:
        key = str(owner)
        price = signals.parse_price(lst.text)
        typical = features.typical_price(species=lst.species, breed_prices=prices.get((lst.species, lst.breed), ()),
                                         species_prices=by_species.get(lst.species, ()))
        reused = sum(photos.others_near(key, p) for p in lst.photos)
        fp = signals.simhash(lst.text)
        copied = fp is not None and texts.others_near(key, fp)
        facts[owner].append(features.ListingFacts(create_time=when, price=price, typical=typical,
                                                  reused_photos=reused, copied_text=copied,
                                                  flags=signals.flags(lst.text)))
        for p in lst.photos:
            photos.add(key, p)
        if fp is not None:
            texts.add(key, fp)
        if price is not None:
            prices.setdefault((lst.species, lst.breed), []).append(price)
            by_species.setdefault(lst.species, []).append(price)
    rows, times, listing_rows, listing_times, owners = [], [], [], [], []
    for a in accounts:
        now = snapshot_time(a)
        messages = [(t, signals.flags(text)) for t, text in a.messages]
        user = features.UserFacts(now=now, create_time=a.create_time, listings=tuple(facts[a.index]),
                                  messages=tuple(messages), upheld_reports=a.upheld_reports)
        rows.append(features.vector(user))
        times.append(now)
        for lf in facts[a.index]:
            then = features.UserFacts(now=lf.create_time, create_time=a.create_time,
                                      listings=tuple(x for x in facts[a.index] if x.create_time < lf.create_time),
                                      messages=tuple(m for m in messages if m[0] < lf.create_time),
                                      upheld_reports=a.upheld_reports)
            listing_rows.append(features.vector(then, listing=lf))
            listing_times.append(lf.create_time)
            owners.append(a.index)
    return Vectors(np.array(rows), times, np.array(listing_rows), listing_times, owners)


def metrics(name: str, truth: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]) -> Row:
    held = scores >= model.HOLD_THRESHOLD
    reviewed = scores >= model.REVIEW_THRESHOLD
    positives = max(int(truth.sum()), 1)
    return Row(name, float(average_precision_score(truth, scores)) if truth.any() else 0.0,
               float((truth & held).sum() / held.sum()) if held.any() else 0.0,
               float((truth & held).sum() / positives), float((truth & reviewed).sum() / positives))


def split(x: npt.NDArray[np.float64], times: list[dt.datetime], labels: npt.NDArray[np.int64],
          truth: npt.NDArray[np.bool_]) -> tuple[list[Row], int, int]:
    """Trained on the earlier 70% (by time), measured on the rest: (rows, held out, held-out scams)."""
    stamps = np.array([t.timestamp() for t in times])
    cutoff = np.quantile(stamps, 1 - HOLD_OUT)
    train, test = stamps < cutoff, stamps >= cutoff
    fitted = model.train(x[train], labels[train], now=dt.datetime.fromtimestamp(cutoff, dt.timezone.utc))
    parts = fitted.parts(x[test])
    return [metrics(s, truth[test], parts[s]) for s in SCORERS], int(test.sum()), int(truth[test].sum())


def evaluate(accounts: list[Account]) -> dict[str, tuple[list[Row], int, int]]:
    """Per kind of subject ("accounts", "listings"): (rows, held out, held-out scams). A listing's label and
    truth are its account's."""
    v = vectors(accounts)
    labels = np.array([a.label for a in accounts], np.int64)
    truth = np.array([a.scam for a in accounts], bool)
    owners = np.array(v.listing_owners, np.int64)
    return {"accounts": split(v.accounts, v.account_times, labels, truth),
            "listings": split(v.listings, v.listing_times, labels[owners], truth[owners])}


def table(setting: Setting, rows: list[Row], held: int, scams: int, kind: str = "accounts") -> str:
    what = ("accounts held out (scored as of their last event)" if kind == "accounts"
            else "listings held out (scored when listed)")
    out = [f"Setting {setting.name} (seed {setting.seed}): {held} {what}, {scams} of them scams", "",
           f"| scorer | PR-AUC | precision @ hold {model.HOLD_THRESHOLD} | recall @ hold | "
           f"recall @ review {model.REVIEW_THRESHOLD} |", "|---|---:|---:|---:|---:|"]
    out += [f"| {r.scorer} | {r.pr_auc:.3f} | {r.precision_at_hold:.3f} | {r.recall_at_hold:.3f} | "
            f"{r.recall_at_review:.3f} |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make eval (fraud)", description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help=f"any of {', '.join(SETTINGS)} (default: A B)")
    args = parser.parse_args(argv)
    unknown = set(args.settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    for key in args.settings or ["A", "B"]:
        started = time.perf_counter()
        setting = SETTINGS[key]
        for kind, (rows, held, scams) in evaluate(generate(setting)).items():
            print(table(setting, rows, held, scams, kind) + "\n")
        print(f"({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
