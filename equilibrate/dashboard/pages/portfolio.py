"""Portfolio overview: hardship by level, levels over time, and (simulated data only) the personas."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import redis
import streamlit as st

from equilibrate.dashboard import common, files
from equilibrate.risk.keys import HARDSHIP_TYPES, LEVELS, hardship_index, level_index


def hardship_by_level(client: redis.Redis) -> pd.DataFrame:
    """Customers in each (hardship type, level): set intersections, counted by Redis."""
    with client.pipeline(transaction=False) as pipe:
        for hardship in HARDSHIP_TYPES:
            for level in LEVELS:
                pipe.sintercard(2, [hardship_index(hardship), level_index(level)])
        counts = pipe.execute()
    cells = [(h, lv) for h in HARDSHIP_TYPES for lv in LEVELS]
    return pd.DataFrame(
        [{"hardship": h, "level": lv, "customers": int(n)} for (h, lv), n in zip(cells, counts, strict=True)]
    )


@st.cache_data(ttl=15, show_spinner=False)
def _hardship_by_level(redis_url: str, _client: redis.Redis) -> pd.DataFrame:
    """hardship_by_level, cached briefly per Redis: a live refresh does not pay 20 SINTERCARDs each time."""
    return hardship_by_level(_client)


@st.cache_data(ttl=60, show_spinner=False)
def _levels_over_time(data_dir: str) -> pd.DataFrame:
    from pathlib import Path

    return files.levels_over_time(Path(data_dir))


def main() -> None:
    st.title("Portfolio")
    common.live_refresh("portfolio")
    client = common.redis_client()
    s = common.settings()

    st.subheader("Hardship type by risk level")
    grid = common.guarded("Hardship by level", lambda: _hardship_by_level(s.redis_url, client))
    grid = grid[grid["customers"] > 0]
    if grid.empty:
        st.info("No scored customers yet.")
    else:
        fig = px.bar(
            grid,
            x="hardship",
            y="customers",
            color="level",
            color_discrete_map=common.LEVEL_COLOURS,
            category_orders={"level": list(LEVELS)},
        )
        st.plotly_chart(common.plotly_layout(fig), width="stretch", key="hardship-level")

    st.subheader("Risk levels over time")
    history = _levels_over_time(str(s.data_dir))
    if history.empty:
        st.info("Levels over time come from the history snapshots (`equilibrate snapshot`, part of `equilibrate up`).")
    elif history["snapshot_at"].nunique() < 2:
        stamp = history["snapshot_at"].iloc[0]
        fig = px.bar(
            history,
            x="risk_level",
            y="customers",
            color="risk_level",
            color_discrete_map=common.LEVEL_COLOURS,
            category_orders={"risk_level": list(LEVELS)},
        )
        st.plotly_chart(common.plotly_layout(fig), width="stretch", key="levels-time")
        st.caption(
            f"One snapshot so far (as of {stamp:%Y-%m-%d %H:%M} UTC, event time); the next comes after "
            "SNAPSHOT_INTERVAL_S and the chart becomes a time line."
        )
    else:
        fig = px.area(
            history,
            x="snapshot_at",
            y="customers",
            color="risk_level",
            color_discrete_map=common.LEVEL_COLOURS,
            category_orders={"risk_level": list(LEVELS)},
        )
        st.plotly_chart(common.plotly_layout(fig), width="stretch", key="levels-time")
        st.caption("Event time of each snapshot; one snapshot pass every SNAPSHOT_INTERVAL_S.")

    personas = files.personas(s.data_dir)
    if personas:
        st.subheader("Personas (simulated data)")
        st.caption(
            "The simulator's ground truth, shown for demonstrations and evaluation only: it is never a feature, "
            "a signal or a model input."
        )
        frame = pd.DataFrame({"persona": list(personas), "customers": list(personas.values())})
        fig = px.pie(frame, names="persona", values="customers", hole=0.4)
        st.plotly_chart(common.plotly_layout(fig, 280), width="stretch", key="personas")


main()
