"""Scikit-learn's fitted forests evaluated with numpy, for the request path: every tree's nodes in flat
arrays, all rows walked down all trees at once. Scikit-learn's own predict_proba and score_samples dispatch
each of the 200 trees through joblib (a config context and warning filters per tree), about 60 ms of CPU
for the few rows of one assessment; this is well under 1 ms for the same numbers.

Bit for bit what scikit-learn computes (tests/unit/test_fraud_forest.py): inputs compared as float32 against
the float64 thresholds, and the trees' outputs added in tree order (np.cumsum, as scikit-learn's `+=` per
tree). Inputs are finite (features.vector), so the missing-value branches are not needed."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest, RandomForestClassifier
from sklearn.tree import BaseDecisionTree


@dataclasses.dataclass(frozen=True, kw_only=True)
class Trees:
    """The nodes of every tree, numbered across the forest; a leaf's children are itself, so walking `depth`
    steps from the roots ends every row on its leaf in every tree."""
    roots: npt.NDArray[np.intp]
    left: npt.NDArray[np.intp]
    right: npt.NDArray[np.intp]
    feature: npt.NDArray[np.intp]
    threshold: npt.NDArray[np.float64]
    depth: int

    @classmethod
    def of(cls, trees: Sequence[BaseDecisionTree],
           features: Sequence[npt.NDArray[np.intp]] | None = None) -> Trees:
        """`features`: each tree's columns of the input, when it was fitted on a subset."""
        roots, left, right, feature, threshold, offset = [], [], [], [], [], 0
        for t, tree in enumerate(trees):
            nodes = tree.tree_
            ids = np.arange(nodes.node_count)
            leaf = nodes.children_left < 0
            roots.append(offset)
            left.append(np.where(leaf, ids, nodes.children_left) + offset)
            right.append(np.where(leaf, ids, nodes.children_right) + offset)
            column = np.where(leaf, 0, nodes.feature)
            feature.append(np.asarray(features[t])[column] if features is not None else column)
            threshold.append(nodes.threshold)
            offset += nodes.node_count
        return cls(roots=np.array(roots, np.intp), left=np.concatenate(left).astype(np.intp),
                   right=np.concatenate(right).astype(np.intp), feature=np.concatenate(feature).astype(np.intp),
                   threshold=np.concatenate(threshold), depth=max(tree.tree_.max_depth for tree in trees))

    def leaves(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """(rows, trees): the leaf each row reaches in each tree."""
        x32 = np.asarray(x, np.float32)  # scikit-learn's trees read float32 inputs
        rows = np.arange(len(x32))[:, None]
        node = np.broadcast_to(self.roots, (len(x32), len(self.roots)))
        for _ in range(self.depth):
            node = np.where(x32[rows, self.feature[node]] <= self.threshold[node], self.left[node], self.right[node])
        return node


def in_tree_order(per_tree: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Each row's sum over its trees, added in tree order as scikit-learn does (so the same bits)."""
    return np.cumsum(per_tree, axis=1)[:, -1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Classifier:
    """A RandomForestClassifier's predict_proba for one class."""
    trees: Trees
    proba: npt.NDArray[np.float64]  # per node: its tree's probability of the class at that leaf

    @classmethod
    def of(cls, forest: RandomForestClassifier, *, label: int) -> Classifier:
        k = list(forest.classes_).index(label)
        proba = []
        for tree in forest.estimators_:
            value = tree.tree_.value[:, 0, :]
            total = value.sum(axis=1)
            proba.append(value[:, k] / np.where(total == 0.0, 1.0, total))
        return cls(trees=Trees.of(forest.estimators_), proba=np.concatenate(proba))

    def predict(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return in_tree_order(self.proba[self.trees.leaves(x)]) / len(self.trees.roots)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Isolation:
    """An IsolationForest's anomaly score, -score_samples (higher: more anomalous)."""
    trees: Trees
    path: npt.NDArray[np.float64]  # per node: the path length a row ending there counts
    denominator: float

    @classmethod
    def of(cls, forest: IsolationForest) -> Isolation:
        subset = forest._max_features != forest.n_features_in_
        path = [lengths + average - 1.0 for lengths, average in
                zip(forest._decision_path_lengths, forest._average_path_length_per_tree, strict=True)]
        return cls(trees=Trees.of(forest.estimators_, forest.estimators_features_ if subset else None),
                   path=np.concatenate(path),
                   denominator=float(len(forest.estimators_) * average_path_length(forest._max_samples)))

    def anomaly(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        depths = in_tree_order(self.path[self.trees.leaves(x)])
        return 2.0 ** -(depths / self.denominator) if self.denominator else np.ones(len(depths))


def average_path_length(n: int) -> float:
    """Of an unsuccessful search in a binary search tree of n keys: an isolation tree's normaliser."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return float((2.0 * (np.log(np.array([n - 1.0])) + np.euler_gamma) - 2.0 * (n - 1.0) / n)[0])
