"""CPU per fraud score (`python -m tests.bench.fraud_scoring`): model.assess of 2,000 vectors, what the fraud
service runs for every chat message.sent, beside the same numbers from scikit-learn's own predict_proba and
score_samples under threadpool_limits(1) (how model.py scored before ml/fraud/forest.py). time.process_time;
the figures are printed, not asserted. The model: model.train on the small evaluation setting."""
from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Callable

import numpy as np
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from threadpoolctl import threadpool_limits

from ml.fraud import features, model
from ml.fraud.evaluation import SETTINGS, vectors
from ml.fraud.synthetic import generate

SCORES = 2_000


def cpu_ms_per_score(score: Callable[[np.ndarray], object], xs: np.ndarray) -> float:
    for x in xs[:20]:  # warm-up
        score(x)
    started = time.process_time()
    for x in xs:
        score(x)
    return (time.process_time() - started) / len(xs) * 1e3


def main() -> int:
    accounts = generate(SETTINGS["small"])
    x = vectors(accounts).accounts
    y = np.array([a.label for a in accounts], np.int64)
    served = model.train(x, y, now=dt.datetime.now(dt.timezone.utc))
    iforest = IsolationForest(n_estimators=200, contamination="auto", random_state=model.SEED).fit(x)
    rf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight="balanced",
                                random_state=model.SEED, n_jobs=1).fit(x, y)
    reference = np.sort(-iforest.score_samples(x))

    def with_sklearn(v: np.ndarray) -> float:
        rows, _ = features.occluded(v)  # the rows model.assess scores for one subject
        with threadpool_limits(1):
            anomaly = np.searchsorted(reference, -iforest.score_samples(rows), side="right") / len(reference)
            clf = rf.predict_proba(rows)[:, 1]
        return float(1 - (1 - model.rules_score(rows)[0]) * (1 - model.IF_WEIGHT * anomaly[0]) * (1 - clf[0]))

    xs = np.resize(x, (SCORES, x.shape[1]))
    rows_per_score = np.mean([len(features.occluded(v)[0]) for v in xs])
    after = cpu_ms_per_score(lambda v: model.assess(served, v), xs)
    before = cpu_ms_per_score(with_sklearn, xs)
    print(f"{SCORES} scores, {rows_per_score:.1f} rows each (the vector and its occlusions), model {served.version}")
    print(f"scikit-learn predict_proba/score_samples: {before:.3f} ms CPU per score")
    print(f"model.assess (numpy forests):             {after:.3f} ms CPU per score ({before / after:.0f}x less)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
