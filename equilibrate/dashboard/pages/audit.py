"""Audit log: the hash chain's state, every row searchable and filterable, and a verified export."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from equilibrate.alert.audit_log import AuditLog
from equilibrate.dashboard import common, files


@st.cache_data(ttl=10, show_spinner=False)
def _frame(data_dir: str) -> pd.DataFrame:
    return files.audit_frame(Path(data_dir))


@st.cache_data(ttl=10, show_spinner=False)
def _verification(data_dir: str) -> tuple[bool, str]:
    result = AuditLog(Path(data_dir)).verify()
    return result.ok, result.summary()


def main() -> None:
    st.title("Audit log")
    s = common.settings()
    ok, summary = common.guarded("Audit log", lambda: _verification(str(s.data_dir)))
    (st.success if ok else st.error)(summary, icon=":material/verified:" if ok else ":material/gpp_bad:")
    frame = common.guarded("Audit log", lambda: _frame(str(s.data_dir)))
    if frame.empty:
        st.info(f"No audit rows yet in {s.data_dir / 'intervention_log.csv'}.")
        return
    cols = st.columns([2, 2, 2, 3])
    actions = cols[0].multiselect("Action", sorted(frame["action"].unique()), key="a-actions")
    actors = cols[1].multiselect("Actor", sorted(frame["actor"].unique()), key="a-actors")
    channels = cols[2].multiselect("Channel", sorted(c for c in frame["channel"].unique() if c), key="a-channels")
    search = cols[3].text_input("Search (customer, case, text)", key="a-search")
    shown = frame
    for values, column in ((actions, "action"), (actors, "actor"), (channels, "channel")):
        if values:
            shown = shown[shown[column].isin(values)]
    if search.strip():
        needle = search.strip().lower()
        text = shown[["customer_id", "case_id", "message", "detail", "reasons"]].astype(str).agg(" ".join, axis=1)
        shown = shown[text.str.lower().str.contains(needle, regex=False)]
    st.caption(f"{len(shown):,} of {len(frame):,} rows, newest first")
    st.dataframe(shown.iloc[::-1], hide_index=True, width="stretch", height=480, key="audit-table")
    st.download_button(
        "Export these rows (CSV, hashes included)",
        shown.to_csv(index=False).encode(),
        "intervention_log_export.csv",
        "text/csv",
        key="a-export",
    )
    st.caption(
        "For a reviewer's export with its own verification summary: `equilibrate audit export --from "
        "YYYY-MM-DD --to YYYY-MM-DD [--customer ID] --out FILE`."
    )


main()
