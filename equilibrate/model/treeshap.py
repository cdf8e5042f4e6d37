"""Exact TreeSHAP for a few rows at a time, in NumPy, from the ensemble's paths (pure).

XGBoost's own TreeSHAP is right for big batches, but for one customer its fixed cost (building a
DMatrix, ~0.18 ms, and the call, ~0.14 ms) was most of what a model score cost the API. This
module computes the same values from a table built once per model:

A tree's path-dependent SHAP values add up over its root-to-leaf paths, and one path's share is the
Shapley value of a product game: with the path's distinct features K (k of them), the leaf value v,
for each feature its zero fraction z (the share of training cover that goes the path's way at its
splits) and its one fraction o (1 when the row goes the path's way at all of them, else 0),

    phi_i = v (o_i - z_i) sum over S in K-{i} of |S|! (k-|S|-1)! / k! prod_{j in S} o_j prod_{j not in S+{i}} z_j

Since every o is 0 or 1, each path's phi for every pattern of o is worked out when the table is
built (2^k patterns of k values, k at most the tree depth); scoring a row is then comparisons,
a lookup and a sum. The expected value, sum over leaves of v times cover(leaf) / cover(root), plus
the base margin, is the bias. Splits compare in float32 (x < threshold goes left) and a missing
value (NaN) takes the split's default branch, as XGBoost does. The result equals XGBoost's
`pred_contribs` to float32 rounding (tests/model/test_treeshap.py).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
#: Deeper trees make the table grow as 2^depth per path: XGBoost's own TreeSHAP is used instead.
MAX_DEPTH = 8


@dataclass(frozen=True)
class PathTable:
    """Every root-to-leaf path of an ensemble, padded to `depth` splits and `depth` distinct features."""

    n_features: int
    split_feature: I64  # (paths, depth): the feature each split tests (0 on padding)
    threshold: F32  # (paths, depth)
    left: B  # (paths, depth): the path goes left at this split (x < threshold)
    default_left: B  # (paths, depth): a missing value goes left
    padding: B  # (paths, depth): no split here (always followed)
    group: I64  # (paths, depth): which of the path's distinct features the split tests
    group_feature: I64  # (paths, depth): each distinct feature's index (n_features on padding)
    phi: F64  # (paths, 2^depth, depth): SHAP value per distinct feature, for each pattern of o
    bias: float
    outside_group: B  # (depth, paths, depth): [g] marks the splits that are not of distinct feature g

    def contributions(self, x: F64) -> F64:
        """SHAP values of rows `x` (rows, n_features), with the bias as the last column, like
        XGBoost's `pred_contribs`."""
        rows = len(x)
        x32 = x.astype(np.float32)
        values = x32[:, self.split_feature]  # (rows, paths, depth)
        with np.errstate(invalid="ignore"):
            went_left = values < self.threshold
        missing = np.isnan(values)
        went_left = np.where(missing, self.default_left, went_left)
        followed = (went_left == self.left) | self.padding  # (rows, paths, depth)
        pattern = np.zeros((rows, len(self.phi)), dtype=np.int64)
        for g, outside in enumerate(self.outside_group):
            ok = np.all(followed | outside, axis=2)  # all of the group's splits followed
            pattern |= ok.astype(np.int64) << g
        paths = np.arange(len(self.phi))
        phi = self.phi[paths, pattern]  # (rows, paths, depth)
        width = self.n_features + 1  # the features, then a column where padding lands
        index = (np.arange(rows)[:, None, None] * width + self.group_feature).ravel()
        sums = np.bincount(index, weights=phi.ravel(), minlength=rows * width)
        out: F64 = sums.astype(np.float64).reshape(rows, width)
        out[:, self.n_features] = self.bias  # padding added only zeros there
        return out


def _weights(k: int) -> list[float]:
    """|S|! (k - |S| - 1)! / k! by |S|."""
    return [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]


def _path_phi(v: float, z: list[float], depth: int) -> F64:
    """(2^depth, depth): phi of each distinct feature for each pattern of o (bits beyond k unused)."""
    k = len(z)
    out = np.zeros((2**depth, depth), dtype=np.float64)
    weight = _weights(k)
    for pattern in range(2**k):
        o = [(pattern >> g) & 1 for g in range(k)]
        for i in range(k):
            others = [j for j in range(k) if j != i]
            total = 0.0
            for size in range(len(others) + 1):
                for chosen in itertools.combinations(others, size):
                    product = 1.0
                    for j in others:
                        product *= o[j] if j in chosen else z[j]
                    total += weight[size] * product
            out[pattern, i] = v * (o[i] - z[i]) * total
    # patterns that differ only in unused high bits share the values
    for pattern in range(2**k, 2**depth):
        out[pattern] = out[pattern % 2**k]
    return out


def _base_margin(model_json: dict[str, Any]) -> float:
    learner = model_json["learner"]
    text = str(learner["learner_model_param"]["base_score"]).strip("[]")
    base = float(text.split(",")[0])
    if learner["objective"]["name"] in ("binary:logistic", "reg:logistic"):
        return math.log(base / (1.0 - base))
    return base


def build(model_json: dict[str, Any]) -> PathTable | None:
    """The path table of an XGBoost model (`Booster.save_raw("json")`, parsed), or None when its
    trees are too deep for one (MAX_DEPTH) or use categorical splits."""
    booster = model_json["learner"]["gradient_booster"]
    trees = booster["model"]["trees"]
    n_features = int(model_json["learner"]["learner_model_param"]["num_feature"])
    paths: list[tuple[list[tuple[int, float, bool, bool]], float]] = []  # (splits, leaf value)
    bias = _base_margin(model_json)
    ratios: list[list[float]] = []
    for tree in trees:
        if any(tree["split_type"]) or tree["categories"]:
            return None
        left, right = tree["left_children"], tree["right_children"]
        feature, cond, default = tree["split_indices"], tree["split_conditions"], tree["default_left"]
        cover = tree["sum_hessian"]
        stack: list[tuple[int, list[tuple[int, float, bool, bool]], list[float]]] = [(0, [], [])]
        while stack:
            node, splits, fractions = stack.pop()
            if left[node] == -1:
                paths.append((splits, float(cond[node])))
                ratios.append(fractions)
                bias += float(cond[node]) * math.prod(fractions)
                continue
            for child, goes_left in ((left[node], True), (right[node], False)):
                step = (int(feature[node]), float(cond[node]), goes_left, bool(default[node]))
                stack.append((child, [*splits, step], [*fractions, cover[child] / cover[node]]))
    depth = max(len(s) for s, _ in paths) if paths else 1
    depth = max(depth, 1)
    if depth > MAX_DEPTH:
        return None
    n = len(paths)
    split_feature = np.zeros((n, depth), dtype=np.int64)
    threshold = np.zeros((n, depth), dtype=np.float32)
    left_mask = np.zeros((n, depth), dtype=bool)
    default_left = np.zeros((n, depth), dtype=bool)
    padding = np.ones((n, depth), dtype=bool)
    group = np.zeros((n, depth), dtype=np.int64)
    group_feature = np.full((n, depth), n_features, dtype=np.int64)
    phi = np.zeros((n, 2**depth, depth), dtype=np.float64)
    for p, ((splits, value), fractions) in enumerate(zip(paths, ratios, strict=True)):
        distinct: list[int] = []
        zero: list[float] = []
        for d, ((feat, cut, goes_left, dflt), fraction) in enumerate(zip(splits, fractions, strict=True)):
            if feat not in distinct:
                distinct.append(feat)
                zero.append(1.0)
            g = distinct.index(feat)
            zero[g] *= fraction  # a feature tested twice: both splits' shares of the cover
            split_feature[p, d], threshold[p, d] = feat, cut
            left_mask[p, d], default_left[p, d], padding[p, d], group[p, d] = goes_left, dflt, False, g
        group_feature[p, : len(distinct)] = distinct
        phi[p] = _path_phi(value, zero, depth)
    outside_group = np.stack([(group != g) | padding for g in range(depth)])
    return PathTable(
        n_features, split_feature, threshold, left_mask, default_left, padding, group, group_feature, phi, bias,
        outside_group,
    )  # fmt: skip
