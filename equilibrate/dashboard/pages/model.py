"""Model: the version scoring now, its evaluation and plots, and drift of the live population."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from equilibrate.dashboard import common, files


@st.cache_data(ttl=300, show_spinner="Comparing the live population with the training data…")
def _monitor(version: str) -> tuple[str, pd.DataFrame]:
    from equilibrate.model.monitor import monitor

    report = monitor(common.settings(), version)
    rows = [{"feature": k, "psi": v} for k, v in sorted(report.psi.items(), key=lambda kv: -kv[1])]
    return report.render(), pd.DataFrame(rows)


def main() -> None:
    st.title("Model")
    s = common.settings()
    info = common.guarded("Model registry", lambda: files.model_info(s.model_registry_dir))
    if info is None:
        st.info(
            f"No trained model in {s.model_registry_dir}: the rules score every customer. Train one with "
            "`equilibrate model train` once the archive holds a few months; the risk engine switches to it live."
        )
        return
    card = info.card
    st.markdown(f"### Current: `{info.version}`")
    metrics = card.get("metrics", {}).get("test", card.get("metrics", {}))
    shown = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    if shown:
        cols = st.columns(min(6, len(shown)))
        for col, (name, value) in zip(cols, list(shown.items())[:6], strict=False):
            col.metric(name, f"{value:.3f}" if isinstance(value, float) else str(value))
    with st.expander("Model card"):
        st.json(card, expanded=False)
    if info.plots:
        st.subheader("Evaluation")
        halves = st.columns(2)
        for n, plot in enumerate(info.plots):
            halves[n % 2].image(str(plot), caption=plot.stem.replace("_", " "))
    st.subheader("Drift (PSI, live population vs training)")
    if st.button("Compute drift now", key="m-drift"):
        text, psi = _monitor(info.version)
        st.code(text)
        if not psi.empty:
            st.bar_chart(psi, x="feature", y="psi")
    else:
        st.caption(
            f"PSI above {s.monitor_psi_warn:g} is a warning and above {s.monitor_psi_alert:g} an alert "
            "(`equilibrate model monitor` gives the same report)."
        )


main()
