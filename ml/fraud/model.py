"""The scorer: rules for the clear-cut signals, an Isolation Forest for accounts unlike the rest, and a
Random Forest trained on moderators' decisions; combined into one risk in [0, 1] with the factors that
raised it most.

Combination (the one `make eval` measures as "combination"): the rules and the models are read as
independent pieces of evidence, 1 - (1 - rules)(1 - classifier)(1 - IF_WEIGHT * anomaly). Before there are
labels of both kinds, the classifier's term is absent. The anomaly is the Isolation Forest's score as
the share of the fitted population that looks more normal (0 typical, 1 the most anomalous).

The model is trained in process from the store (the periodic job in engine.py), seeded: replicas
training on the same data serve the same model, and nothing is unpickled from shared storage."""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from threadpoolctl import threadpool_limits

from ml.fraud import features, forest

REVIEW_THRESHOLD = 0.5
HOLD_THRESHOLD = 0.8
IF_WEIGHT = 0.3
MIN_LABELS = 10  # of each kind (upheld, dismissed) before a classifier is trained
SEED = 12
COL = {name: i for i, name in enumerate(features.NAMES)}


@dataclasses.dataclass(frozen=True)
class Rule:
    code: str
    weight: float
    description: str

    def fires(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        c = COL
        match self.code:
            case "rule_off_platform_payment":
                return x[:, c["off_platform_payment"]] >= 1
            case "rule_cheap_with_reused_photo":
                return (x[:, c["reused_photos"]] >= 1) & (x[:, c["price_discount"]] >= 0.5)
            case "rule_fees_on_cheap_or_new":
                return (x[:, c["fees_after_agreement"]] >= 1) & (
                    (x[:, c["price_discount"]] >= 0.5) | (x[:, c["account_age_days"]] < 7))
            case "rule_no_visit_and_payment_tactics":
                return (x[:, c["refuses_visit"]] >= 1) & (
                    (x[:, c["off_platform_payment"]] + x[:, c["fees_after_agreement"]] + x[:, c["pressure"]]) >= 1)
            case "rule_repeat_offender":
                return x[:, c["upheld_reports"]] >= 2
            case "rule_new_account_far_below_price":
                return (x[:, c["price_discount"]] >= 0.7) & (x[:, c["account_age_days"]] < 2)
        raise ValueError(self.code)


RULES = (
    Rule("rule_off_platform_payment", 0.6, "asks for payment off the platform"),
    Rule("rule_cheap_with_reused_photo", 0.6, "a reused photo on a listing far below the typical price"),
    Rule("rule_fees_on_cheap_or_new", 0.5, "adds fees on a cheap listing or from a new account"),
    Rule("rule_no_visit_and_payment_tactics", 0.4, "refuses a visit while pressing for payment or fees"),
    Rule("rule_repeat_offender", 0.7, "two or more upheld moderation decisions"),
    Rule("rule_new_account_far_below_price", 0.4, "a day-old account listing far below the typical price"),
)


def rules_score(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Noisy-OR of the rules that fire, per row."""
    keep = np.ones(len(x))
    for rule in RULES:
        keep *= np.where(rule.fires(x), 1 - rule.weight, 1.0)
    return 1 - keep


@dataclasses.dataclass(frozen=True, kw_only=True)
class Model:
    version: str
    trained_at: dt.datetime | None
    # The fitted forests as numpy arrays (forest.py): scikit-learn fits them, its per-call overhead stays off
    # the path that scores every chat message.
    iforest: forest.Isolation | None = None
    reference: npt.NDArray[np.float64] | None = None  # the fitted population's anomaly scores, sorted
    classifier: forest.Classifier | None = None
    samples: int = 0
    labels: int = 0

    def anomaly(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.iforest is None or self.reference is None:
            return np.zeros(len(x))
        raw = self.iforest.anomaly(x)
        return np.searchsorted(self.reference, raw, side="right") / len(self.reference)

    def classify(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64] | None:
        if self.classifier is None:
            return None
        return self.classifier.predict(x)

    def parts(self, x: npt.NDArray[np.float64]) -> dict[str, npt.NDArray[np.float64]]:
        """Each scorer's output and the combination, per row."""
        rules = rules_score(x)
        anomaly = self.anomaly(x)
        clf = self.classify(x)
        keep = (1 - rules) * (1 - IF_WEIGHT * anomaly)
        if clf is not None:
            keep = keep * (1 - clf)
        return {"rules": rules, "iforest": anomaly, "classifier": clf if clf is not None else np.zeros(len(x)),
                "combination": 1 - keep}

    def score(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.parts(x)["combination"]


RULES_ONLY = Model(version="rules", trained_at=None)


def version_at(now: dt.datetime, samples: int, labels: int) -> str:
    return f"rules+iforest+rf-{now.strftime('%Y%m%dT%H%M%SZ')}-{samples}s{labels}l"


def train(x: npt.NDArray[np.float64], y: npt.NDArray[np.int64] | None, *, now: dt.datetime) -> Model:
    """The Isolation Forest on every vector `x`; the classifier on the labelled ones (y: 1 upheld, 0
    dismissed, -1 unlabelled) when there are MIN_LABELS of each."""
    if len(x) < 2:
        return RULES_ONLY
    with threadpool_limits(2):
        iforest = forest.Isolation.of(
            IsolationForest(n_estimators=200, contamination="auto", random_state=SEED).fit(x))
        reference = np.sort(iforest.anomaly(x))
        classifier = None
        labelled = 0
        if y is not None:
            known = y >= 0
            labelled = int(known.sum())
            if min(int((y[known] == 1).sum()), int((y[known] == 0).sum())) >= MIN_LABELS:
                classifier = forest.Classifier.of(
                    RandomForestClassifier(n_estimators=200, min_samples_leaf=2, class_weight="balanced",
                                           random_state=SEED, n_jobs=1).fit(x[known], y[known]), label=1)
    return Model(version=version_at(now, len(x), labelled), trained_at=now, iforest=iforest, reference=reference,
                 classifier=classifier, samples=len(x), labels=labelled)


@dataclasses.dataclass(frozen=True)
class Factor:
    code: str
    description: str
    contribution: float


@dataclasses.dataclass(frozen=True)
class Assessment:
    score: float
    action: str  # "none", "review" or "hold"
    factors: tuple[Factor, ...]
    model: str
    features: tuple[float, ...]


def action_of(score: float) -> str:
    return "hold" if score >= HOLD_THRESHOLD else "review" if score >= REVIEW_THRESHOLD else "none"


def assess(model: Model, x: npt.NDArray[np.float64], *, top: int = 5) -> Assessment:
    """One vector's score and its top factors: each feature away from its honest value, by how much the
    score drops when it is set back (its share of the score, the shares scaled to sum to the score)."""
    rows, changed = features.occluded(x)
    scores = model.score(rows)
    score = float(scores[0])
    drops = np.maximum(score - scores[1:], 0.0)
    total = float(drops.sum())
    factors = []
    if total > 0:
        for k in np.argsort(-drops, kind="stable")[:top]:
            if drops[k] <= 0:
                break
            i = changed[int(k)]
            factors.append(Factor(features.NAMES[i], features.describe(features.NAMES[i], float(x[i])),
                                  round(float(drops[k] / total * score), 4)))
    return Assessment(score=score, action=action_of(score), factors=tuple(factors), model=model.version,
                      features=tuple(float(v) for v in x))
