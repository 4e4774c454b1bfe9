"""Offline evaluation (`make eval`): the synthetic population of synthetic.py, a time-based hold-out (the
latest 20% of interactions), and one row per model: random, popularity, content, collaborative (ALS, as
served; and the truncated SVD it was chosen over) and the hybrid served by RankPets. Every model but
random is the serving ranker (ranker.rank) with the weight of one part, or the hybrid's weights, so the
table measures what is served.

For each person with a held-out interaction: every pet they had not interacted with before the split
is a candidate; the held-out pets are the relevant ones. NDCG@10 (binary gains), Recall@10 (held-out
pets in the top 10 over held-out pets), catalogue coverage (share of pets in anyone's top 10)."""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time

import numpy as np

from ml.recommender.catalogue import Catalogue, month_index
from ml.recommender.model import train
from ml.recommender.ranker import Serving, rank
from ml.recommender.scoring import Weights
from ml.recommender.synthetic import Population, Setting, generate

K = 10
HOLD_OUT = 0.2
TODAY = dt.date(2026, 11, 1)
CF_ONLY = Weights(content=0, collaborative=1, distance=0, compatibility=0, popularity=0)
ONLY = {
    "popularity": Weights(content=0, collaborative=0, distance=0, compatibility=0, popularity=1),
    "content": Weights(content=1, collaborative=0, distance=0, compatibility=0, popularity=0),
    "collaborative": CF_ONLY,  # ALS, as served
    "collaborative (SVD)": CF_ONLY,  # the alternative it was chosen over
    "hybrid": Weights(),
}
MODELS = ["random", *ONLY]

SETTINGS = {
    # The one `make test` runs (tests/unit/test_recommender_eval.py): small, and deterministic.
    "small": Setting(name="small", seed=7, users=300, pets=400, cities=2, likes_per_user=10),
    "A": Setting(name="A: 3,000 people, 2,000 pets, 3 cities, noise 1.0", seed=11, users=3000, pets=2000),
    "B": Setting(name="B: 1,500 people, 4,000 pets, 5 cities, noise 2.0, 20 likes each", seed=23, users=1500,
                 pets=4000, cities=5, likes_per_user=20, feed_size=250, noise=2.0, clusters=10),
}


@dataclasses.dataclass(frozen=True)
class Row:
    model: str
    ndcg: float
    recall: float
    coverage: float


def pet_name(i: int) -> str:
    return f"pets/{i:032x}"


def catalogue_of(pop: Population, popularity: np.ndarray) -> Catalogue:
    f = pop.pet_features
    cat = Catalogue(capacity=len(f["species"]))
    for i in range(len(f["species"])):
        cat.put(pet_name(i), species=f["species"][i], size=f["size"][i], energy=f["energy"][i],
                birth_month=month_index(TODAY) - f["age_months"][i], latitude=f["latitude"][i],
                longitude=f["longitude"][i], good_with_children=f["good_with_children"][i],
                good_with_pets=f["good_with_pets"][i], popularity=popularity[i], live=True)
    return cat


def evaluate(pop: Population, *, max_users: int | None = None) -> list[Row]:
    cutoff = np.quantile(pop.times, 1 - HOLD_OUT)
    before = pop.times < cutoff
    n_pets = len(pop.pet_features["species"])
    popularity = np.bincount(pop.pets[before], pop.weights[before], n_pets)
    catalogue = catalogue_of(pop, popularity)
    servings = {method: Serving(train(
        zip((str(u) for u in pop.users[before]), (pet_name(p) for p in pop.pets[before]), pop.weights[before],
            strict=True), now=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc), method=method))
        for method in ("als", "svd")}
    history: dict[int, list[int]] = {}
    for u, p in zip(pop.users[before], pop.pets[before], strict=True):
        history.setdefault(int(u), []).append(int(p))
    weights_of: dict[tuple[int, int], float] = {}
    for u, p, w in zip(pop.users[before], pop.pets[before], pop.weights[before], strict=True):
        weights_of[(int(u), int(p))] = weights_of.get((int(u), int(p)), 0.0) + w
    held: dict[int, set[int]] = {}
    for u, p in zip(pop.users[~before], pop.pets[~before], strict=True):
        if (int(u), int(p)) not in weights_of:
            held.setdefault(int(u), set()).add(int(p))
    users = sorted(held)[:max_users]
    rng = np.random.default_rng(pop.setting.seed + 1)
    discounts = 1 / np.log2(np.arange(2, K + 2))
    totals = {name: [0.0, 0.0] for name in MODELS}
    shown: dict[str, set[int]] = {name: set() for name in MODELS}
    everything = np.arange(n_pets)
    for u in users:
        past = history.get(u, [])
        candidates = np.setdiff1d(everything, past)
        liked = np.asarray(past, np.int64)
        liked_weights = np.asarray([weights_of[(u, p)] for p in past], np.float64)
        relevant = held[u]
        ideal = discounts[:min(K, len(relevant))].sum()
        for name in MODELS:
            if name == "random":
                top = rng.choice(candidates, size=K, replace=False)
            else:
                serving = servings["svd" if name == "collaborative (SVD)" else "als"]
                ranking = rank(catalogue, serving, candidates, pop.people[u], liked, liked_weights,
                               weights=ONLY[name], today=TODAY)
                top = candidates[ranking.order[:K]]
            hits = np.fromiter((p in relevant for p in top.tolist()), np.bool_, K)
            totals[name][0] += float((hits * discounts).sum() / ideal)
            totals[name][1] += float(hits.sum() / len(relevant))
            shown[name].update(top.tolist())
    return [Row(name, totals[name][0] / len(users), totals[name][1] / len(users), len(shown[name]) / n_pets)
            for name in MODELS]


def table(setting: Setting, rows: list[Row], users: int, interactions: int) -> str:
    out = [f"Setting {setting.name} (seed {setting.seed}; {interactions} interactions, {users} people held out)",
           "", "| model | NDCG@10 | Recall@10 | coverage |", "|---|---:|---:|---:|"]
    out += [f"| {r.model} | {r.ndcg:.4f} | {r.recall:.4f} | {r.coverage:.3f} |" for r in rows]
    by = {r.model: r for r in rows}
    out += ["", f"hybrid / popularity NDCG@10: {by['hybrid'].ndcg / max(by['popularity'].ndcg, 1e-12):.2f}x"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make eval", description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="*", help=f"any of {', '.join(SETTINGS)} (default: A B)")
    args = parser.parse_args(argv)
    unknown = set(args.settings) - set(SETTINGS)
    if unknown:
        parser.error(f"unknown setting {', '.join(sorted(unknown))}; choose from {', '.join(SETTINGS)}")
    for key in args.settings or ["A", "B"]:
        started = time.perf_counter()
        setting = SETTINGS[key]
        pop = generate(setting)
        rows = evaluate(pop)
        cutoff = np.quantile(pop.times, 1 - HOLD_OUT)
        held_users = len({int(u) for u in pop.users[pop.times >= cutoff]})
        print(table(setting, rows, held_users, len(pop.users)))
        print(f"({time.perf_counter() - started:.1f} s)\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
