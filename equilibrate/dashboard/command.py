"""`equilibrate dashboard`: the operations console (Streamlit) on DASHBOARD_HOST:DASHBOARD_PORT."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from equilibrate.settings import Settings

APP = Path(__file__).with_name("app.py")


def streamlit_argv(settings: Settings, host: str, port: int) -> list[str]:
    """The command that serves the console: headless, no usage statistics, no file watcher."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--theme.base",
        settings.dashboard_theme,
    ]


def run(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.errors import MissingDependencyError

    try:
        import streamlit  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the console needs streamlit: run `make setup`") from None
    host, port = args.host or settings.dashboard_host, args.port or settings.dashboard_port
    print(f"console on http://{host}:{port} (Ctrl-C stops it)", flush=True)
    argv = streamlit_argv(settings, host, port)
    os.execv(argv[0], argv)  # noqa: S606  # streamlit takes this process over: signals reach it directly


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dashboard", help="the operations console (Streamlit) in your browser")
    p.add_argument("--host", default=None, help="address to serve on (default DASHBOARD_HOST)")
    p.add_argument("--port", type=int, default=None, help="port (default DASHBOARD_PORT)")
    p.set_defaults(func=run)
