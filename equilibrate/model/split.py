"""Train / validation / test splits that respect time (pure).

Snapshot rows are split by date: the earliest dates train, later ones validate, the latest test,
with a gap of `gap_days` (the label horizon) between the parts, so no training label looks into
the period the model is judged on. Data without a time column (a bank's own labelled file) gets a
stratified random split instead, and the report says which was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from equilibrate.errors import EquilibrateError

Mask = npt.NDArray[np.bool_]


class SplitError(EquilibrateError):
    """The data cannot be split as asked (too few dates or rows)."""


@dataclass(frozen=True)
class Split:
    kind: str  # "temporal" or "stratified random"
    train: Mask
    valid: Mask
    test: Mask
    boundaries: dict[str, str]  # human-readable description of where each part lies

    def describe(self) -> str:
        return f"{self.kind}: " + ", ".join(f"{k} {v}" for k, v in self.boundaries.items())


def temporal_split(days: npt.NDArray[np.int64], *, gap_days: int = 30, valid_share: float = 0.2,
                   test_share: float = 0.25) -> Split:  # fmt: skip
    """Split rows by their day number: train < valid < test, each part `gap_days` after the last."""
    dates = np.unique(days)
    span = int(dates[-1] - dates[0]) if len(dates) else 0
    usable = span - 2 * gap_days
    if len(dates) < 5 or usable <= 0:
        raise SplitError(
            f"{len(dates)} snapshot dates over {span} days: a temporal split with two {gap_days}-day gaps "
            f"needs a longer history (about {2 * gap_days + 60} days or more)"
        )
    test_start = dates[-1] - round(usable * test_share)
    valid_end = test_start - gap_days
    valid_start = valid_end - round(usable * valid_share)
    train_end = valid_start - gap_days
    train = days <= train_end
    valid = (days >= valid_start) & (days <= valid_end)
    test = days >= test_start
    for name, part in (("train", train), ("validation", valid), ("test", test)):
        if not part.any():
            raise SplitError(f"the {name} part of the temporal split is empty: the history is too short")
    return Split(
        "temporal",
        train,
        valid,
        test,
        {
            "train": _range(days[train]),
            "validation": _range(days[valid]),
            "test": _range(days[test]),
            "gap": f"{gap_days} days",
        },
    )


def stratified_split(labels: npt.NDArray[np.int64], *, seed: int = 7, valid_share: float = 0.2,
                     test_share: float = 0.2) -> Split:  # fmt: skip
    """Random split keeping the positive rate equal in each part (for data without time)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    part = np.zeros(n, dtype=np.int8)  # 0 train, 1 valid, 2 test
    for value in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == value))
        n_test, n_valid = round(len(idx) * test_share), round(len(idx) * valid_share)
        part[idx[:n_test]] = 2
        part[idx[n_test : n_test + n_valid]] = 1
    split = Split("stratified random", part == 0, part == 1, part == 2, {"seed": str(seed)})
    if not (split.train.any() and split.valid.any() and split.test.any()):
        raise SplitError(f"{n} rows are too few to split into train, validation and test")
    return split


def _range(days: npt.NDArray[np.int64]) -> str:
    lo, hi = np.datetime64(int(days.min()), "D"), np.datetime64(int(days.max()), "D")
    return f"{lo}..{hi} ({len(np.unique(days))} dates)"
