"""The console's entry point (`streamlit run`): page set-up and navigation only."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Equilibrate operations", page_icon=":material/balance:", layout="wide")
PAGES = [
    st.Page("pages/home.py", title="Operations hub", icon=":material/monitoring:", default=True),
    st.Page("pages/portfolio.py", title="Portfolio", icon=":material/pie_chart:"),
    st.Page("pages/queue.py", title="Risk queue", icon=":material/format_list_numbered:"),
    st.Page("pages/customer.py", title="Customer profile", icon=":material/person:"),
    st.Page("pages/interventions.py", title="Intervention center", icon=":material/support_agent:"),
    st.Page("pages/audit.py", title="Audit log", icon=":material/verified:"),
    st.Page("pages/model.py", title="Model", icon=":material/model_training:"),
]
st.navigation(PAGES).run()
