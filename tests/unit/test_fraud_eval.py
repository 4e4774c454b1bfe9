"""The fraud evaluation, small: seeded, the combination is good on held-out accounts, the metrics are right
on a hand-made case. `make eval` runs the two full settings."""
from __future__ import annotations

import numpy as np

from ml.fraud import model
from ml.fraud.evaluation import SETTINGS, evaluate, metrics, table
from ml.fraud.synthetic import generate


def test_the_generator_is_seeded_and_has_scams_and_honest_look_alikes():
    a, b = generate(SETTINGS["small"]), generate(SETTINGS["small"])
    assert [(x.scam, x.create_time, len(x.listings), x.messages) for x in a] == \
        [(x.scam, x.create_time, len(x.listings), x.messages) for x in b]
    assert sum(x.scam for x in a) == SETTINGS["small"].scammers
    honest_texts = " ".join(lst.text for x in a if not x.scam for lst in x.listings)
    assert "adoption fee" in honest_texts.lower()  # cheap rescues
    assert all(x.label <= int(x.scam) for x in a)  # label noise only hides scams


def test_the_combination_ranks_held_out_scams_first_on_the_small_setting():
    """Accounts and listings; the full settings (make eval) hold more out and are the figures to quote."""
    results = evaluate(generate(SETTINGS["small"]))
    assert set(results) == {"accounts", "listings"}
    for kind, (rows, held, scams) in results.items():
        by = {r.scorer: r for r in rows}
        assert set(by) == {"rules", "iforest", "classifier", "combination"} and 0 < scams < held
        assert by["combination"].pr_auc >= 0.7, kind
        assert by["combination"].pr_auc >= by["rules"].pr_auc, kind
        assert "| combination |" in table(SETTINGS["small"], rows, held, scams, kind)


def test_metrics_on_a_hand_made_case():
    truth = np.array([True, True, False, False])
    row = metrics("x", truth, np.array([0.9, 0.6, 0.85, 0.1]))
    assert row.precision_at_hold == 0.5 and row.recall_at_hold == 0.5 and row.recall_at_review == 1.0
    assert abs(row.pr_auc - (1 + 2 / 3) / 2) < 1e-9
    assert model.action_of(0.85) == "hold" and model.action_of(0.6) == "review" and model.action_of(0.1) == "none"
