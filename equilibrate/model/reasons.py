"""Plain-language reason codes for the model's explanations (pure).

Each feature has one sentence, filled with the customer's value of the feature that was scored.
The model's SHAP values pick which features raised this customer's risk most; the sentences say
it in words an operations agent (and the customer) can follow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

#: feature -> sentence ({value}, {abs_value}, {pct} = value x 100 are available)
REASON_TEXT: Mapping[str, str] = {
    "days_since_salary": "No salary credit for {value:.0f} days",
    "salary_regularity": "Salary regularity {value:.2f} (1 = like clockwork)",
    "salary_credits_90d": "{value:.0f} salary credit(s) in 90 days",
    "income_30d": "Income of {value:,.0f} in the last 30 days",
    "income_drop_pct": "Income down {value:.0f}% on the months before",
    "spend_total_7d": "Spending of {value:,.0f} in the last 7 days",
    "spend_total_30d": "Spending of {value:,.0f} in the last 30 days",
    "spend_essential_7d": "Essential spending of {value:,.0f} in the last 7 days",
    "spend_essential_30d": "Essential spending of {value:,.0f} in the last 30 days",
    "spend_discretionary_7d": "Discretionary spending of {value:,.0f} in the last 7 days",
    "spend_discretionary_30d": "Discretionary spending of {value:,.0f} in the last 30 days",
    "essential_share_30d": "{pct:.0f}% of spending on essentials",
    "discretionary_ratio_30d": "Discretionary spending {value:.1f}x essentials",
    "spend_change_pct": "Day-to-day spending changed {value:+.0f}% on the previous four weeks",
    "atm_count_7d": "{value:.0f} cash withdrawals this week",
    "atm_amount_7d": "Cash withdrawals of {value:,.0f} this week",
    "atm_spike": "Cash withdrawals {value:.1f}x the customer's usual level this week",
    "balance": "Balance of {value:,.2f}",
    "balance_min_30d": "Lowest balance {value:,.0f} in the last 30 days",
    "balance_trend_30d": "Balance changing by {value:+,.0f} a day over 30 days",
    "negative_balance_days_30d": "Overdrawn on {value:.0f} of the last 30 days",
    "net_flow_30d": "Money in minus money out: {value:+,.0f} over 30 days",
    "failed_payments_30d": "{value:.0f} failed payment(s) in 30 days",
    "failed_payments_90d": "{value:.0f} failed payment(s) in 90 days",
    "payday_credits_30d": "Payday-loan credits of {value:,.0f} in 30 days",
    "gambling_30d": "Gambling spend of {value:,.0f} in 30 days",
    "txn_count_7d": "{value:.0f} transactions in the last 7 days",
    "txn_count_30d": "{value:.0f} transactions in the last 30 days",
    "days_inactive": "No account activity for {value:.0f} days",
}


class ModelReason(NamedTuple):
    """One SHAP reason (a tuple: a batch of 1,000 makes 5,000 of them, ~4x faster than a frozen dataclass)."""

    feature: str
    contribution: float  # SHAP value (log-odds) this feature added to the customer's score
    value: float

    @property
    def text(self) -> str:
        """The sentence, made when read: most readers show the top three of a customer's five
        (formatting them all was a third of scoring a batch of 1,000 with the model)."""
        return sentence(self.feature, self.value)


def sentence(feature: str, value: float) -> str:
    template = REASON_TEXT.get(feature)
    if template is None:
        return f"{feature.replace('_', ' ')}: {value:g}"
    return template.format(value=value, abs_value=abs(value), pct=value * 100)


def top_reasons_table(
    names: Sequence[str],
    contributions: npt.NDArray[np.float64],
    values: npt.NDArray[np.float64],
    limit: int = 5,
) -> list[list[ModelReason]]:
    """For every row of a (customers, features) SHAP matrix, the features that raised the score most
    (positive SHAP values only), largest first; one sort for all rows (a row at a time, a batch of
    1,000 took ~45 ms)."""
    if len(contributions) == 0:
        return []
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :limit]
    rows = np.arange(len(contributions))[:, None]
    picked_c = contributions[rows, order].tolist()
    picked_v = values[rows, order].tolist()
    out: list[list[ModelReason]] = []
    for js, cs, vs in zip(order.tolist(), picked_c, picked_v, strict=True):
        reasons = []
        for j, c, v in zip(js, cs, vs, strict=True):
            if c <= 0:
                break
            reasons.append(ModelReason(names[j], round(c, 4), v))
        out.append(reasons)
    return out
