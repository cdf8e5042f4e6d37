"""Customer profile: who they are, what their behaviour shows, why they are scored so, what was done."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

from equilibrate.alert.cases import CaseStore
from equilibrate.dashboard import common, files, queries
from equilibrate.features.compute import FEATURES

DEMOGRAPHICS = (
    "name",
    "city",
    "age",
    "employment",
    "income_band",
    "language",
    "timezone",
    "preferred_channel",
    "vulnerable",
    "accounts",
    "has_loan",
    "has_card",
)
#: Features grouped by the window they describe, for the 7 / 30 / 90-day table.
WINDOWS = {"7d": "_7d", "30d": "_30d", "90d": "_90d"}


@st.cache_data(ttl=30, show_spinner=False)
def _scores(data_dir: str, customer_id: str) -> pd.DataFrame:
    return files.score_history(Path(data_dir), customer_id)


@st.cache_data(ttl=30, show_spinner=False)
def _transactions(archive: str, customer_id: str) -> pd.DataFrame:
    return files.customer_transactions(Path(archive), customer_id)


def feature_table(profile: dict[str, str]) -> pd.DataFrame:
    """Each behavioural feature by window (7, 30, 90 days) where it has one, else its current value."""
    rows: dict[str, dict[str, str]] = {}
    for name in FEATURES:
        for window, suffix in WINDOWS.items():
            if name.endswith(suffix):
                rows.setdefault(name.removesuffix(suffix), {})[window] = profile.get(name, "")
                break
        else:
            rows.setdefault(name, {})["now"] = profile.get(name, "")
    return pd.DataFrame.from_dict(rows, orient="index").reindex(columns=["7d", "30d", "90d", "now"]).fillna("")


def main() -> None:
    st.title("Customer profile")
    client = common.redis_client()
    s = common.settings()
    default = st.query_params.get("customer") or st.session_state.get("customer_id", "")
    if not default:  # nobody chosen yet: the customer at the top of the risk queue
        top = common.guarded("Queue", lambda: queries.queue_page(client, queries.QueueFilter(), 1, 1))
        default = top.rows[0]["customer_id"] if top.rows else ""
    customer_id = st.text_input("Customer id", value=default, key="c-id").strip()
    if not customer_id:
        st.info("No scored customer yet: enter a customer id, or open one from the Risk queue.")
        return
    st.session_state["customer_id"] = customer_id
    detail = common.guarded("Customer", lambda: queries.customer_detail(client, customer_id))
    if detail is None:
        st.warning(f"No customer {customer_id} in Redis.")
        return
    p = detail.profile
    st.markdown(
        f"### {p.get('name', customer_id)} · {customer_id} · {common.level_badge(p.get('risk_level', ''))} "
        f"score {p.get('risk_score', '-')}"
    )
    st.caption(
        f"{p.get('hardship_type', '-')} · recommended: {p.get('recommended_action', '-')} · scored as of "
        f"{p.get('scored_at', '-')} · {p.get('model_version', '')}"
    )

    left, right = st.columns([1, 2])
    with left:
        st.subheader("Demographics")
        st.dataframe(
            pd.DataFrame({"value": [p.get(k, "") for k in DEMOGRAPHICS]}, index=list(DEMOGRAPHICS)),
            width="stretch",
        )
    with right:
        st.subheader("Behaviour (7 / 30 / 90 days)")
        st.dataframe(feature_table(p), width="stretch", height=360)

    st.subheader("Why this score")
    explanation = detail.explanation or {}
    by_score, release = explanation.get("level_by_score"), explanation.get("level_release_point")
    if by_score and by_score != p.get("risk_level") and release is not None:
        st.info(
            f"Kept at {p.get('risk_level')}: the score alone gives {by_score}, but a customer leaves "
            f"{p.get('risk_level')} only when the score falls below {release:g} (the level's release point)."
        )
    reasons = pd.DataFrame(explanation.get("reasons") or [], columns=["signal", "feature", "points", "text"])
    shap = pd.DataFrame(explanation.get("model_reasons") or [], columns=["feature", "shap", "value", "text"])
    cols = st.columns(2)
    if not reasons.empty:
        fig = px.bar(reasons, x="points", y="text", orientation="h", title="Rule points")
        cols[0].plotly_chart(common.plotly_layout(fig, 280), width="stretch", key="rule-points")
    else:
        cols[0].info(p.get("reasons") or "No rule fired: nothing in the behaviour points to hardship.")
    if not shap.empty:
        fig = px.bar(shap, x="shap", y="text", orientation="h", title="Model reason codes (SHAP, log-odds)")
        cols[1].plotly_chart(common.plotly_layout(fig, 280), width="stretch", key="shap")
    else:
        cols[1].caption("SHAP reason codes appear when a trained model scores (equilibrate model train).")

    st.subheader("Score history")
    scores = _scores(str(s.data_dir), customer_id)
    if scores.empty:
        st.caption("From the history snapshots (`equilibrate snapshot`): none for this customer yet.")
    else:
        fig = px.line(scores, x="snapshot_at", y="risk_score", markers=True)
        st.plotly_chart(common.plotly_layout(fig, 240), width="stretch", key="score-history")

    st.subheader("Balance and spending (archive)")
    txns = _transactions(str(s.data_dir / "archive"), customer_id)
    if txns.empty:
        st.caption("No archived transactions for this customer (the archive is written by `equilibrate archive`).")
    else:
        frame = txns.copy()
        frame["day"] = pd.to_datetime(frame["ts"]).dt.floor("D")
        daily = frame.groupby("day").agg(balance=("balance_after", "last")).reset_index()
        spend = frame[(frame["direction"] == "debit") & (frame["status"] != "failed")]
        spend = spend.groupby("day").agg(spend=("amount", "sum")).reset_index()
        cols = st.columns(2)
        cols[0].plotly_chart(
            common.plotly_layout(px.line(daily, x="day", y="balance", title="Balance"), 240),
            width="stretch",
            key="balance",
        )
        cols[1].plotly_chart(
            common.plotly_layout(px.bar(spend, x="day", y="spend", title="Daily spending"), 240),
            width="stretch",
            key="spend",
        )
        with st.expander(f"Last transactions ({len(txns):,} in 90 days)"):
            st.dataframe(txns.tail(50).iloc[::-1], hide_index=True, width="stretch")

    st.subheader("Cases and contact history")
    cases = common.guarded("Cases", lambda: CaseStore(client).for_customer(customer_id))
    if cases:
        keep = [
            "case_id",
            "state",
            "outcome",
            "risk_level",
            "action",
            "route",
            "channel",
            "sent_at",
            "created_at",
            "reason",
        ]
        rows = [{k: c.get(k, "") for k in keep} for c in cases]
        st.dataframe(pd.DataFrame(rows, columns=keep), hide_index=True, width="stretch")
    else:
        st.caption("No intervention case for this customer yet.")


main()
