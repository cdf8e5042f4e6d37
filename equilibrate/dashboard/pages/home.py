"""Operations hub: is the system live, how many customers need attention, and who first."""

from __future__ import annotations

import time

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from equilibrate.dashboard import common, queries
from equilibrate.dashboard.files import event_time_text
from equilibrate.ops.heartbeat import read_heartbeats

TREND_WINDOW_S = 30 * 60


@st.cache_data(ttl=15, show_spinner=False)
def _lag() -> tuple[int | None, str]:
    """Total consumer lag across the pipeline's groups (cached: a broker round trip)."""
    from equilibrate.ops.status import kafka_health

    health = kafka_health(common.settings())
    if not health.get("ok"):
        return None, str(health.get("error", "broker not reachable"))
    return sum(int(p["lag"]) for p in health.get("lag", [])), ""


def main() -> None:
    st.title("Operations hub")
    common.live_refresh("home")
    client = common.redis_client()
    since = int((time.time() - TREND_WINDOW_S) * 1000)
    ov = common.guarded("Overview", lambda: queries.overview(client, trend_since_ms=since))
    beats = {b["name"]: b for b in common.guarded("Components", lambda: read_heartbeats(client))}

    cols = st.columns(6)
    cols[0].metric("Customers", f"{ov.customers:,}")
    for col, level in zip(cols[1:5], common.LEVEL_ORDER, strict=True):
        col.metric(level.title(), f"{ov.levels.get(level, 0):,}")
    rate = ov.high_risk_rate
    label, colour = ("normal", "green") if rate < 0.05 else ("elevated", "orange") if rate < 0.10 else ("high", "red")
    cols[5].metric(
        "High-risk rate",
        f"{rate:.1%}",
        delta=label,
        delta_color=colour,  # type: ignore[arg-type]  # one of the colours metric() accepts
        delta_arrow="off",
        help="HIGH + CRITICAL as a share of scored customers: green under 5%, amber to 10%, red above",
    )

    live = st.columns(3)
    live[0].markdown(f"**Last transaction (event time)**  \n{event_time_text(ov.watermark_ms)}")
    risk_beat = beats.get("risk")
    scored = ov.last_change.get("scored_at", "-") if ov.last_change else "-"
    engine = common.wall_ago(risk_beat["beat"]) if risk_beat else "not running"
    live[1].markdown(f"**Last risk evaluation**  \n{scored} (engine beat {engine})")
    lag, lag_problem = _lag()
    live[2].markdown(
        f"**Pipeline health**  \nconsumer lag {lag if lag is not None else '-'}"
        f"{' (' + lag_problem + ')' if lag_problem else ''}, dead letters {ov.dead_letters:,}"
    )

    left, right = st.columns(2)
    with left:
        st.subheader("Risk distribution")
        donut = pd.DataFrame(
            {"level": list(common.LEVEL_ORDER), "customers": [ov.levels.get(lv, 0) for lv in common.LEVEL_ORDER]}
        )
        fig = px.pie(
            donut, names="level", values="customers", hole=0.55, color="level", color_discrete_map=common.LEVEL_COLOURS
        )
        st.plotly_chart(common.plotly_layout(fig), width="stretch", key="donut")
    with right:
        st.subheader("Hardship types")
        hardship = pd.DataFrame({"hardship": list(ov.hardships), "customers": list(ov.hardships.values())})
        hardship = hardship[hardship["hardship"] != "None"].sort_values("customers")
        fig = px.bar(hardship, x="customers", y="hardship", orientation="h")
        st.plotly_chart(common.plotly_layout(fig), width="stretch", key="hardship")

    st.subheader("Needs attention now")
    top = common.guarded(
        "Queue", lambda: queries.queue_page(client, queries.QueueFilter(levels=("CRITICAL", "HIGH")), 1, 10)
    )
    if top.rows:
        frame = pd.DataFrame(top.rows)[
            ["customer_id", "name", "risk_level", "risk_score", "hardship_type", "recommended_action", "reasons"]
        ]
        st.dataframe(frame, hide_index=True, width="stretch")
        st.caption(f"{top.total:,} customers at HIGH or CRITICAL; the full list is on the Risk queue page.")
    else:
        st.info("No customer is at HIGH or CRITICAL right now.")

    st.subheader("Risk trend, last 30 minutes")
    if ov.trend:
        trend = pd.DataFrame(ov.trend)
        trend["time"] = pd.to_datetime(trend["at_ms"], unit="ms", utc=True)
        fig = go.Figure()
        for level in ("MEDIUM", "HIGH", "CRITICAL"):
            if level in trend:
                fig.add_trace(
                    go.Scatter(
                        x=trend["time"],
                        y=trend[level],
                        name=level,
                        mode="lines",
                        line={"color": common.LEVEL_COLOURS[level]},
                    )
                )
        st.plotly_chart(common.plotly_layout(fig, 260), width="stretch", key="trend")
    else:
        st.info("The trend fills in as the risk engine runs (a point every RISK_TREND_INTERVAL_S seconds).")


main()
