"""The fitted forests evaluated with numpy (ml/fraud/forest.py) give scikit-learn's own numbers: the served
model's anomaly and classifier terms on the evaluation's vectors and on rows between them."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest, RandomForestClassifier

from ml.fraud import forest, model
from ml.fraud.evaluation import SETTINGS, vectors
from ml.fraud.synthetic import generate


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training vectors, their labels, rows to score: the accounts, the listings, and fractional rows off
    the training points, which float32 rounding and thresholds between values would catch)."""
    accounts = generate(SETTINGS["small"])
    v = vectors(accounts)
    rows = np.concatenate([v.accounts, v.listings])
    jitter = np.abs(rows + np.random.default_rng(3).normal(0, 0.7, rows.shape))
    return v.accounts, np.array([a.label for a in accounts], np.int64), np.concatenate([rows, jitter])


def on_the_edge(fitted: RandomForestClassifier | IsolationForest, rows: np.ndarray) -> np.ndarray:
    """Rows with each tree's first split feature just above its threshold (float64), which is at or below
    it once read as float32, as scikit-learn reads it: the side of the split depends on that reading."""
    out = []
    for t, tree in enumerate(fitted.estimators_):
        row = rows[t % len(rows)].copy()
        column = tree.tree_.feature[0]
        if hasattr(fitted, "estimators_features_") and fitted._max_features != fitted.n_features_in_:
            column = fitted.estimators_features_[t][column]
        row[column] = np.nextafter(tree.tree_.threshold[0], np.inf)
        out.append(row)
    return np.concatenate([rows, out])


def test_the_classifier_is_sklearns_predict_proba(data):
    x, y, rows = data
    fitted = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight="balanced",
                                    random_state=model.SEED).fit(x, y)
    rows = on_the_edge(fitted, rows)
    ours = forest.Classifier.of(fitted, label=1).predict(rows)
    np.testing.assert_allclose(ours, fitted.predict_proba(rows)[:, 1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(forest.Classifier.of(fitted, label=0).predict(rows), fitted.predict_proba(rows)[:, 0],
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("max_features", [1.0, 0.6])  # all columns (as served), and a subset per tree
def test_the_isolation_forest_is_sklearns_score_samples(data, max_features):
    x, _, rows = data
    fitted = IsolationForest(n_estimators=200, max_features=max_features, random_state=model.SEED).fit(x)
    rows = on_the_edge(fitted, rows)
    np.testing.assert_allclose(forest.Isolation.of(fitted).anomaly(rows), -fitted.score_samples(rows),
                               rtol=0, atol=1e-12)


def test_the_served_model_scores_as_sklearn_would(data):
    """model.train's parts against the same estimators' scikit-learn outputs, combined as model.py says."""
    x, y, rows = data
    served = model.train(x, y, now=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))
    iforest = IsolationForest(n_estimators=200, contamination="auto", random_state=model.SEED).fit(x)
    rf = RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight="balanced",
                                random_state=model.SEED, n_jobs=1).fit(x, y)
    reference = np.sort(-iforest.score_samples(x))
    anomaly = np.searchsorted(reference, -iforest.score_samples(rows), side="right") / len(reference)
    clf = rf.predict_proba(rows)[:, 1]
    expected = 1 - (1 - model.rules_score(rows)) * (1 - model.IF_WEIGHT * anomaly) * (1 - clf)
    parts = served.parts(rows)
    np.testing.assert_allclose(parts["iforest"], anomaly, rtol=0, atol=1e-12)
    np.testing.assert_allclose(parts["classifier"], clf, rtol=0, atol=1e-12)
    np.testing.assert_allclose(parts["combination"], expected, rtol=0, atol=1e-12)


def test_a_class_the_forest_never_saw_is_refused(data):
    x, y, _ = data
    fitted = RandomForestClassifier(n_estimators=5, random_state=model.SEED).fit(x, y)
    with pytest.raises(ValueError):
        forest.Classifier.of(fitted, label=7)
