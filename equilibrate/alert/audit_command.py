"""`equilibrate audit`: check the intervention log's hash chain, or export part of it for a reviewer.

    equilibrate audit verify [--dir DIR]
    equilibrate audit export --from YYYY-MM-DD --to YYYY-MM-DD [--customer ID] --out FILE [--dir DIR]

Both exit 0 when the whole chain verifies and 1 when it does not (an export is still written, rows
as found, and its summary says where the chain broke). An export keeps every column, the original
hashes included, so each exported row's row_hash can be recomputed by the reviewer; the summary is
printed and written beside the export as FILE.verification.txt.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from equilibrate.settings import Settings

if TYPE_CHECKING:
    from equilibrate.alert.audit import Verification
    from equilibrate.alert.audit_log import AuditLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    out: Path
    summary_path: Path
    rows: int
    source: Verification
    lines: tuple[str, ...]  # the summary, as printed and written


def _log_dir(args: argparse.Namespace, settings: Settings) -> Path:
    from equilibrate.alert.audit import AuditError

    directory: Path = args.dir or settings.data_dir
    if not directory.is_dir():
        raise AuditError(f"no such directory: {directory}")
    return directory


def _torn_note(audit_log: AuditLog) -> str:
    if audit_log.torn_path.exists():
        return f"; note: interrupted writes were set aside in {audit_log.torn_path.name}"
    return ""


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.audit_log import AuditLog

    audit_log = AuditLog(_log_dir(args, settings))
    result = audit_log.verify()
    print(result.summary() + _torn_note(audit_log))
    return 0 if result.ok else 1


def export(
    audit_log: AuditLog, out: Path, first_day: date, last_day: date, customer: str | None = None
) -> ExportResult:
    """Copy the rows recorded on [first_day, last_day] (UTC; one customer's if given) while verifying the chain."""
    from equilibrate.alert.audit import (
        CUSTOMER_ID,
        RECORDED_AT,
        AuditError,
        ChainVerifier,
        decode_cell,
        header_line,
    )

    if first_day > last_day:
        raise AuditError(f"--from {first_day} is after --to {last_day}")
    target = out.resolve()
    taken = {p.resolve() for p in (*audit_log.files(), audit_log.torn_path)}
    if target in taken or (target.parent == audit_log.data_dir.resolve() and out.name.startswith("intervention_log")):
        raise AuditError(f"refusing to write an export over the log's own files: {out}")
    low, high = first_day.isoformat(), last_day.isoformat()
    verifier = ChainVerifier()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    exported = 0
    with partial.open("wb") as handle:
        handle.write(header_line().encode("utf-8"))
        for parsed in audit_log.lines():
            if not verifier.feed(parsed) or parsed.cells is None:
                continue
            cells = parsed.cells
            if not low <= cells[RECORDED_AT][:10] <= high:
                continue
            if customer is not None and decode_cell(cells[CUSTOMER_ID]) != customer:
                continue
            handle.write(parsed.raw if parsed.terminated else parsed.raw + b"\n")
            exported += 1
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, out)
    source = verifier.result()
    who = f"customer {customer}" if customer is not None else "all customers"
    if source.ok:
        chain = f"source chain verified: {source.summary().removeprefix('audit log OK: ')}"
    else:
        chain = (
            f"source chain NOT verified ({source.rows} rows read): broken at {source.broken}; rows exported as found"
        )
    lines = (
        f"audit export: {exported} rows recorded {low}..{high} (UTC), {who}, written to {out}",
        f"source {audit_log.data_dir}: {chain}",
        "rows keep their original prev_hash and row_hash: row_hash = sha256 of the UTF-8 of the row's"
        " first 23 cells joined by U+001F (see equilibrate/alert/audit.py); prev_hash links rows of the"
        " full log, so consecutive rows of this extract link only where no row between them was left out",
    )
    summary_path = out.with_name(out.name + ".verification.txt")
    summary_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ExportResult(out, summary_path, exported, source, lines)


def run_export(args: argparse.Namespace, settings: Settings) -> int:
    from equilibrate.alert.audit_log import AuditLog

    result = export(AuditLog(_log_dir(args, settings)), args.out, args.date_from, args.date_to, args.customer)
    for line in result.lines:
        print(line)
    print(f"summary written to {result.summary_path}")
    return 0 if result.source.ok else 1


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="verify or export the tamper-evident intervention log (data/intervention_log.csv)")
    inner = p.add_subparsers(dest="audit_command", metavar="{verify,export}", required=True)
    v = inner.add_parser("verify", help="check the whole hash chain; name the first broken row (exit 1)")
    v.add_argument("--dir", type=Path, default=None, help="directory holding the log (default DATA_DIR)")
    v.set_defaults(func=run_verify)
    e = inner.add_parser("export", help="copy the rows of a date range (and one customer) with a verification summary")
    e.add_argument("--from", dest="date_from", type=_day, required=True, help="first UTC day, YYYY-MM-DD")
    e.add_argument("--to", dest="date_to", type=_day, required=True, help="last UTC day, YYYY-MM-DD (inclusive)")
    e.add_argument("--customer", default=None, help="only this customer's rows")
    e.add_argument(
        "--out", type=Path, required=True, help="the CSV to write (its summary goes to FILE.verification.txt)"
    )
    e.add_argument("--dir", type=Path, default=None, help="directory holding the log (default DATA_DIR)")
    e.set_defaults(func=run_export)
