"""What every console page shares: settings, the Redis client, the down banner, refresh, colours."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
import streamlit as st

from equilibrate.errors import EquilibrateError
from equilibrate.settings import Settings, load_settings, redact_url

log = logging.getLogger(__name__)
T = TypeVar("T")

LEVEL_COLOURS = {"LOW": "#2e7d32", "MEDIUM": "#f9a825", "HIGH": "#ef6c00", "CRITICAL": "#c62828"}
LEVEL_ORDER = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
#: Redis answers a console query in milliseconds; a slow or unreachable one must not hang a page.
REDIS_TIMEOUT_S = 2.0


@st.cache_resource(show_spinner=False)
def settings() -> Settings:
    return load_settings()


@st.cache_resource(show_spinner=False)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_S, socket_timeout=REDIS_TIMEOUT_S)


def redis_client() -> redis.Redis:
    """The console's Redis client; when Redis does not answer, a banner and the page stops there."""
    s = settings()
    client = _client(s.redis_url)
    try:
        client.ping()
    except redis.RedisError as exc:
        st.error(
            f"Redis at {redact_url(s.redis_url)} is not answering ({type(exc).__name__}). The console shows "
            "live data again as soon as it is back; the pipeline keeps its place meanwhile.",
            icon=":material/cloud_off:",
        )
        st.stop()
    return client


def guarded(what: str, call: Callable[[], T]) -> T:
    """Run a read; a Redis or file problem becomes a banner naming `what`, not an exception box."""
    try:
        return call()
    except redis.RedisError as exc:
        st.error(f"{what}: Redis did not answer in time ({type(exc).__name__}); this refreshes by itself.")
    except (EquilibrateError, OSError, ValueError) as exc:
        st.error(f"{what}: {exc}")
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises


def live_refresh(key: str) -> None:
    """Re-run the page every DASHBOARD_REFRESH_S seconds while the sidebar toggle is on (live pages only)."""
    from streamlit_autorefresh import st_autorefresh

    interval = settings().dashboard_refresh_s
    with st.sidebar:
        if st.toggle("Live refresh", value=True, key=f"live-{key}", help=f"every {interval:g} s"):
            st_autorefresh(interval=int(interval * 1000), key=f"refresh-{key}")


def operator() -> str:
    """Who acts in this session: typed once in the sidebar, recorded in the audit log."""
    name = str(st.sidebar.text_input("Operator id", value=st.session_state.get("operator", ""), key="operator_input"))
    st.session_state["operator"] = name.strip()
    return name.strip()


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def wall_ago(epoch_s: float) -> str:
    return ago(max(0.0, time.time() - epoch_s))


_BADGE = {"LOW": "green", "MEDIUM": "orange", "HIGH": "red", "CRITICAL": "violet"}


def level_badge(level: str) -> str:
    """Markdown for a level in its colour."""
    return f":{_BADGE.get(level, 'gray')}[**{level or '-'}**]"


def plotly_layout(fig: Any, height: int = 320) -> Any:
    """A chart that reads in the dark and the light theme: transparent background, theme fonts."""
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        paper_bgcolor="rgba(0,0,0,0)",
        plot_bgcolor="rgba(0,0,0,0)",
        legend={"orientation": "h"},
    )
    return fig
