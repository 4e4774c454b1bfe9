"""`make bench` (recommender part): p50/p99 of ranking 10,000 candidate pets for one person, in process on
one core, beside the popularity baseline over the same candidates.

The catalogue is the synthetic population of ml/recommender/synthetic.py with 10,000 pets; the model is
trained on its interactions; the person has likes and stated preferences. Cases:
  - popularity: the candidates' names to catalogue rows, then sorted by popularity (the baseline);
  - hybrid: names to rows, every part (content, collaborative, distance, compatibility, popularity) and
    the order: what RankPets computes;
  - hybrid + response: the same and the RankPetsResponse message of 10,000 RankedPets RankPets returns.
BENCH_SECONDS (default 5) per case; `make bench-short` runs 1 s."""
from __future__ import annotations

import os

# One core: numpy's BLAS would otherwise spread the matrix products over every core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import datetime as dt  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

from ml.recommender.evaluation import TODAY, catalogue_of, pet_name  # noqa: E402
from ml.recommender.model import train  # noqa: E402
from ml.recommender.ranker import Serving, rank  # noqa: E402
from ml.recommender.scoring import Weights  # noqa: E402
from ml.recommender.synthetic import Setting, generate  # noqa: E402
from ml.recommender.api import response  # noqa: E402

DURATION = float(os.environ.get("BENCH_SECONDS", "5"))
CANDIDATES = 10_000


def measure(call: Callable[[], object]) -> tuple[int, float, float, float, float]:
    """(calls, p50 ms, p99 ms, CPU p50 ms, CPU p99 ms) of calling `call` back to back for DURATION seconds
    (after a warm-up). Wall-clock time includes waiting for the core when other processes want it; the
    thread's CPU time does not: on a busy machine the second pair is the cost, the first what a caller saw."""
    for _ in range(5):
        call()
    wall, cpu = [], []
    end = time.perf_counter() + DURATION
    while time.perf_counter() < end:
        start, start_cpu = time.perf_counter(), time.thread_time()
        call()
        cpu.append((time.thread_time() - start_cpu) * 1000)
        wall.append((time.perf_counter() - start) * 1000)

    def q(values: list[float]) -> list[float]:
        return statistics.quantiles(values, n=100, method="inclusive")
    return len(wall), q(wall)[49], q(wall)[98], q(cpu)[49], q(cpu)[98]


def main() -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    pop = generate(Setting(name="bench", seed=5, users=1500, pets=CANDIDATES, cities=3, likes_per_user=15))
    popularity = np.bincount(pop.pets, pop.weights, CANDIDATES)
    catalogue = catalogue_of(pop, popularity)
    model = train(zip((str(u) for u in pop.users), (pet_name(p) for p in pop.pets), pop.weights, strict=True),
                  now=dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc))
    serving = Serving(model)
    user = int(np.bincount(pop.users).argmax())
    person = pop.people[user]
    mine = pop.users == user
    liked, liked_weights = pop.pets[mine].astype(np.int64), pop.weights[mine]
    names = [pet_name(i) for i in np.random.default_rng(1).permutation(CANDIDATES)]
    weights = Weights()

    def by_popularity() -> object:
        rows = catalogue.rows_of(names)
        return np.argsort(-catalogue.column("popularity")[rows], kind="stable")

    def hybrid() -> object:
        return rank(catalogue, serving, catalogue.rows_of(names), person, liked, liked_weights, weights=weights,
                    today=TODAY)

    def hybrid_response() -> object:
        return response(names, hybrid(), serving.version, len(names))

    print(f"\nRecommender: ranking {CANDIDATES:,} candidates for one person, in process, one core, "
          f"{DURATION:g}s per case (model: {len(model.pets):,} pets x {model.factors.shape[1]} factors)")
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'case':<20} {'calls':>7} {'p50 ms':>8} {'p99 ms':>8} {'cpu p50':>8} {'cpu p99':>8}  "
          "p50 ratio to popularity")
    base = None
    for label, call in (("popularity", by_popularity), ("hybrid", hybrid), ("hybrid + response", hybrid_response)):
        count, p50, p99, cpu50, cpu99 = measure(call)
        base = base or p50
        print(f"{label:<20} {count:>7} {p50:>8.2f} {p99:>8.2f} {cpu50:>8.2f} {cpu99:>8.2f}  {p50 / base:.1f}x",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
