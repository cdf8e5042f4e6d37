"""The `equilibrate` command: one subcommand per component.

Command modules keep their heavy imports inside functions, so building the parser is cheap.
Errors Equilibrate raises on purpose become one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from equilibrate.errors import EquilibrateError
from equilibrate.logs import configure
from equilibrate.settings import load_settings

log = logging.getLogger(__name__)

#: Modules that contribute subcommands through `add_parser(subparsers)`, in help order.
COMMAND_MODULES = (
    "equilibrate.ops.supervisor",
    "equilibrate.ops.status",
    "equilibrate.kafka.broker",
    "equilibrate.storage.redis_server",
    "equilibrate.kafka.roundtrip",
    "equilibrate.storage.archive",
    "equilibrate.storage.snapshot",
    "equilibrate.features.command",
    "equilibrate.risk.command",
    "equilibrate.risk.policy_command",
    "equilibrate.model.command",
    "equilibrate.alert.command",
    "equilibrate.alert.audit_command",
    "equilibrate.alert.demo_gateway",
    "equilibrate.dashboard.command",
    "equilibrate.api.command",
    "equilibrate.sources.replay",
    "equilibrate.sources.produce",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="equilibrate", description="Equilibrate: real-time pre-delinquency intervention engine"
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR (default LOG_LEVEL)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


#: Files and directories Equilibrate creates (archive, audit log, customer data, keys) are the owner's only.
PRIVATE_UMASK = 0o077


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.umask(PRIVATE_UMASK)
    try:
        settings = load_settings()
        configure(args.log_level or settings.log_level)
        code: int = args.func(args, settings)
        return code
    except EquilibrateError as exc:
        print(f"equilibrate {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `equilibrate status | head`: the reader left; not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
