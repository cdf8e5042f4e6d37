"""Levels that hold: a customer leaves a level only below its release point. Pure.

The score alone decides which level a customer enters (its threshold). Leaving a level takes a
lower score: its release point (`RiskRules.release_points`). A customer at HIGH whose score falls
just under the HIGH threshold stays HIGH; once it falls below HIGH's release point they drop to
the highest level whose release point they still clear, and never above where they were.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
#: Levels from lowest to highest (rules give the first three, a model all four).
ORDER = ("LOW", "MEDIUM", "HIGH", "CRITICAL")
_RANK = {name: n for n, name in enumerate(ORDER)}


def hold_levels(
    levels: Sequence[str],
    previous: Sequence[str | None],
    risk_score: F64,
    release: Mapping[str, float],
) -> list[str]:
    """The level each customer is at: `levels` (from the score alone), except where the customer was
    higher before (`previous`) and the score still clears that level's release point."""
    out = list(levels)
    for i, (now, before) in enumerate(zip(levels, previous, strict=True)):
        if before is None or _RANK.get(before, 0) <= _RANK[now]:
            continue
        score = float(risk_score[i])
        for rank in range(_RANK[before], _RANK[now], -1):
            name = ORDER[rank]
            point = release.get(name)
            if point is not None and score >= point:
                out[i] = name
                break
    return out
