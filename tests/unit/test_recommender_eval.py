"""The offline evaluation, small: on the seeded small setting the hybrid beats popularity (and random),
and the generator is deterministic. `make eval` runs the two full settings."""
from __future__ import annotations

import numpy as np

from ml.recommender.evaluation import SETTINGS, evaluate, table
from ml.recommender.synthetic import generate


def test_the_hybrid_beats_popularity_on_the_small_setting():
    pop = generate(SETTINGS["small"])
    rows = {r.model: r for r in evaluate(pop)}
    assert set(rows) == {"random", "popularity", "content", "collaborative", "collaborative (SVD)", "hybrid"}
    assert rows["hybrid"].ndcg > 1.5 * rows["popularity"].ndcg
    assert rows["hybrid"].recall > rows["popularity"].recall
    assert rows["popularity"].ndcg > rows["random"].ndcg
    assert rows["hybrid"].coverage > rows["popularity"].coverage
    assert "| hybrid |" in table(SETTINGS["small"], list(rows.values()), 1, len(pop.users))


def test_the_generator_is_seeded():
    a, b = generate(SETTINGS["small"]), generate(SETTINGS["small"])
    assert np.array_equal(a.pets, b.pets) and np.array_equal(a.times, b.times)
    assert a.people == b.people
