"""Risk queue: every scored customer by score, filtered and searched through Redis indices, paged."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from equilibrate.dashboard import common, queries

PAGE_SIZE = 50
COLUMNS = [
    "customer_id",
    "name",
    "risk_level",
    "risk_score",
    "hardship_type",
    "city",
    "employment",
    "recommended_action",
    "reasons",
    "scored_at",
]


def main() -> None:
    st.title("Risk queue")
    client = common.redis_client()
    choices = common.guarded("Filters", lambda: queries.filter_choices(client))

    with st.container(border=True):
        row = st.columns([2, 2, 2, 2, 3])
        levels = row[0].multiselect("Level", choices["levels"], key="q-levels")
        hardships = row[1].multiselect("Hardship", choices["hardships"], key="q-hardships")
        cities = row[2].multiselect("City", choices["cities"], key="q-cities")
        employments = row[3].multiselect("Employment", choices["employments"], key="q-employments")
        low, high = row[4].slider("Score", 0.0, 100.0, (0.0, 100.0), step=1.0, key="q-score")
        search = st.text_input("Search by customer id or name", key="q-search", placeholder="C0000123 or Priya")
    f = queries.QueueFilter(tuple(levels), tuple(hardships), tuple(cities), tuple(employments), low, high, search)
    if st.session_state.get("q-filter") != f:
        st.session_state["q-filter"], st.session_state["q-page"] = f, 1
    page = int(st.session_state.get("q-page", 1))
    result = common.guarded("Risk queue", lambda: queries.queue_page(client, f, page, PAGE_SIZE))

    st.caption(f"{result.total:,} customers match; page {result.page} of {result.pages}, highest score first.")
    frame = pd.DataFrame(result.rows, columns=COLUMNS)
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        column_config={
            "risk_score": st.column_config.ProgressColumn("score", min_value=0, max_value=100, format="%.1f"),
            "reasons": st.column_config.TextColumn("reasons", width="large"),
        },
        key="queue-table",
    )
    nav = st.columns([1, 1, 6, 2])
    if nav[0].button("Previous", disabled=result.page <= 1, key="q-prev"):
        st.session_state["q-page"] = result.page - 1
        st.rerun()
    if nav[1].button("Next", disabled=result.page >= result.pages, key="q-next"):
        st.session_state["q-page"] = result.page + 1
        st.rerun()
    nav[3].download_button(
        "Download CSV (this page)", frame.to_csv(index=False).encode(), "risk_queue.csv", "text/csv", key="q-download"
    )
    if result.rows:
        chosen = st.selectbox("Open a customer", [r["customer_id"] for r in result.rows], key="q-open")
        if st.button("Open profile", key="q-open-button"):
            st.session_state["customer_id"] = chosen
            st.switch_page("pages/customer.py")


main()
