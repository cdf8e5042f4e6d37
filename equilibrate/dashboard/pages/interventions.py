"""Intervention center: pick a case, read and adjust the message within the rules, check the contact
policy, approve (the engine sends it through the real channel), and see what was done before."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import streamlit as st

from equilibrate.alert import audit_queue, contact_history
from equilibrate.alert.actions import CaseActions
from equilibrate.alert.audit_log import AuditLog
from equilibrate.alert.cases import CaseStore
from equilibrate.alert.contact_policy import ContactRules, evaluate
from equilibrate.alert.demo_inbox import InboxEntry, inbox_path, read_recent
from equilibrate.alert.lifecycle import OUTCOMES, TransitionError
from equilibrate.alert.proposals import bank_values, first_name
from equilibrate.alert.proposer import Proposer, event_from_profile
from equilibrate.dashboard import common, files, queries
from equilibrate.features import store as feature_store
from equilibrate.risk.policy import Policy, PolicyError, load_policy
from equilibrate.risk.policy_checks import edited_message_problems


@st.cache_resource(show_spinner=False)
def _policy(path: str | None) -> Policy:
    return load_policy(Path(path) if path else None)


@st.cache_data(ttl=10, show_spinner=False)
def _audit(data_dir: str) -> pd.DataFrame:
    return files.audit_frame(Path(data_dir))


def _label(case: dict[str, str]) -> str:
    return (
        f"{case['case_id']} · {case.get('customer_id')} · {case.get('risk_level', '')} "
        f"{float(case.get('risk_score') or 0):.0f} · {case.get('route', '')} {case.get('channel', '')}"
    )


def _now(client: object) -> datetime:
    ms = feature_store.watermark_ms(client)  # type: ignore[arg-type]
    return datetime.fromtimestamp(ms / 1000, UTC) if ms is not None else datetime.now(UTC)


def _as_received(mine: list[InboxEntry], everything: list[InboxEntry]) -> None:
    """What the demo gateway received (a demo with no real channel: nothing left the machine)."""
    st.subheader("As the customer received it (demo gateway)")
    if not mine:
        st.caption("Nothing delivered for this case yet.")
    for entry in mine[-3:]:
        st.markdown(f"**{entry.channel}** to `{entry.to}` · {entry.received_at} · {entry.gateway_id}")
        if entry.subject:
            st.markdown(f"Subject: **{entry.subject}**")
        st.text(entry.body)
    with st.expander(f"Every message the demo gateway received ({len(everything)} newest)"):
        rows = [
            {"received": e.received_at, "channel": e.channel, "to": e.to, "case": e.case_id,
             "subject or text": e.subject or e.body[:80], "signature": e.signature}
            for e in reversed(everything)
        ]  # fmt: skip
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def main() -> None:
    st.title("Intervention center")
    client = common.redis_client()
    s = common.settings()
    policy = _policy(str(s.policy_file) if s.policy_file else None)
    store, actions = CaseStore(client), CaseActions(client)
    operator = common.operator()

    queue = common.guarded("Cases", lambda: store.get_many(store.proposed(200)))
    open_states = ("blocked", "failed", "approved")
    others = common.guarded("Cases", lambda: [c for st_ in open_states for c in store.recent(50, state=st_)])
    cases = queue + others
    pick = st.columns([3, 2])
    options = {_label(c): c["case_id"] for c in cases}
    if st.query_params.get("case"):  # a deep link: ?case=K00000042
        st.session_state["ic-selected"] = st.query_params["case"]
    chosen = pick[0].selectbox(
        "Case (proposed first, by risk)",
        list(options),
        index=0 if options and not st.session_state.get("ic-selected") else None,
        key="ic-case",
        placeholder=f"{len(queue)} proposed, {len(others)} other open",
    )
    with pick[1]:
        customer_id = st.text_input("…or a customer id", key="ic-customer").strip()
        if customer_id and st.button("Open or propose a case", key="ic-propose"):
            proposer = Proposer(client, s, policy)
            existing = store.open_case(customer_id)
            found = queries.customer_detail(client, customer_id)
            if existing:
                st.session_state["ic-selected"] = existing
            elif found is None:
                st.warning(f"No customer {customer_id}.")
            else:
                case = proposer.propose(event_from_profile(customer_id, found.profile, _now(client)), force=True)
                audit_queue.flush(client, AuditLog(s.data_dir))
                if case is None:
                    st.info(f"{customer_id} is {found.profile.get('risk_level', 'unscored')}: no contact proposed.")
                else:
                    st.session_state["ic-selected"] = case["case_id"]
    case_id = options.get(chosen) if chosen else st.session_state.get("ic-selected")
    if not case_id:
        st.info(
            "Choose a case. Proposed cases are ordered by risk score; approving one hands it to the engine, "
            "which checks the contact policy again and sends it."
        )
        return
    case = store.get(case_id)
    if case is None:
        st.warning(f"No case {case_id}.")
        return
    cid = case["customer_id"]
    detail = queries.customer_detail(client, cid)
    profile = detail.profile if detail else {}
    st.markdown(
        f"### {case_id} · {profile.get('name', cid)} ({cid}) · {common.level_badge(case.get('risk_level', ''))}"
    )
    st.caption(
        f"state **{case['state']}** · {case.get('hardship_type', '')} · action {case.get('action', '')} · "
        f"route {case.get('route', '')} · {case.get('reasons', '')}"
    )
    if case.get("route") == "specialist":
        st.warning(
            "Vulnerable customer: a specialist contacts them in person; nothing is sent automatically. "
            "Record the outcome of that contact below."
        )

    channel = case.get("channel", "")
    if channel and case.get("template_id"):
        languages = list(policy.languages)
        current = case.get("language") or "en"
        start = languages.index(current) if current in languages else 0
        lang = st.selectbox("Language", languages, index=start, key=f"ic-lang-{case_id}")
        values = bank_values(s) | {"first_name": first_name(profile.get("name", "")), "reference": cid[-12:]}
        try:
            rendered = policy.message(case["template_id"], lang, values)
        except PolicyError as exc:
            st.error(str(exc))
            return
        subject = None
        if channel == "email":
            subject = st.text_input("Subject", value=rendered.subject or "", key=f"ic-subject-{case_id}-{lang}")
        body = st.text_area(
            f"Message ({channel}, template {rendered.template_id} v{rendered.version}, approval {rendered.approval})",
            value=rendered.body,
            height=180,
            key=f"ic-body-{case_id}-{lang}",
        )
        edited = body != rendered.body or (subject or None) != rendered.subject
        problems = edited_message_problems(channel, lang, body, subject) if edited else []
        for problem in problems:
            st.error(problem)

        history = contact_history.load(client, cid, _now(client), ContactRules.from_settings(s).window)
        decision = evaluate(profile, channel, history, _now(client), ContactRules.from_settings(s))
        verdict = "allowed now" if decision.allowed else f"{decision.route}: {decision.reason}"
        with st.expander(f"Contact-policy check: {verdict}", expanded=not decision.allowed):
            checks = [
                {"check": c.name, "result": "ok" if c.passed else "blocked", "detail": c.detail}
                for c in decision.checks
            ]
            st.dataframe(pd.DataFrame(checks), hide_index=True, width="stretch")

        cols = st.columns(3)
        note = cols[0].text_input("Note (audit log)", key=f"ic-note-{case_id}")
        can_approve = case["state"] in ("proposed", "blocked") and not problems and bool(operator)
        if cols[1].button("Approve and send", type="primary", disabled=not can_approve, key=f"ic-approve-{case_id}"):
            try:
                actions.approve(
                    case_id,
                    f"ops:{operator}",
                    note,
                    message=body if edited else None,
                    subject=subject if edited else None,
                    language=lang,
                )
                audit_queue.flush(client, AuditLog(s.data_dir))
                st.success("Approved: the engine checks the contact policy again and sends it now.")
            except (TransitionError, PolicyError) as exc:
                st.error(str(exc))
        if not operator:
            cols[1].caption("Enter your operator id in the sidebar to act.")
        reason = cols[2].text_input("Reason to reject", key=f"ic-reject-reason-{case_id}")
        if cols[2].button(
            "Reject", disabled=case["state"] != "proposed" or not reason or not operator, key=f"ic-reject-{case_id}"
        ):
            try:
                actions.reject(case_id, f"ops:{operator}", reason)
                audit_queue.flush(client, AuditLog(s.data_dir))
                st.success("Rejected.")
            except TransitionError as exc:
                st.error(str(exc))

    with st.expander("Record an outcome (closes the case)"):
        outcome = st.selectbox("Outcome", OUTCOMES, key=f"ic-outcome-{case_id}")
        outcome_note = st.text_input("Note", key=f"ic-outcome-note-{case_id}")
        if st.button("Close case", disabled=not operator, key=f"ic-close-{case_id}"):
            try:
                actions.close(case_id, outcome, f"ops:{operator}", outcome_note)
                audit_queue.flush(client, AuditLog(s.data_dir))
                st.success(f"Closed as {outcome}.")
            except TransitionError as exc:
                st.error(str(exc))

    audio = case.get("delivery_ref", "")
    if channel == "voice" and audio and Path(audio).is_file():
        st.subheader("Voice message")
        st.audio(Path(audio).read_bytes(), format="audio/wav" if audio.endswith(".wav") else "audio/mpeg")

    received = read_recent(inbox_path(s.data_dir), 500)
    if received:
        _as_received([e for e in received if e.case_id == case_id], received)

    st.subheader(f"Audit history of {cid}")
    frame = _audit(str(s.data_dir))
    mine = frame[frame["customer_id"] == cid] if not frame.empty else frame
    if mine.empty:
        st.caption("Nothing recorded yet.")
    else:
        st.dataframe(
            mine[
                ["recorded_at", "actor", "action", "case_id", "channel", "policy_result", "delivery_status", "detail"]
            ].iloc[::-1],
            hide_index=True,
            width="stretch",
        )


main()
