"""`equilibrate replay FILE`: a bank's own transaction export (CSV or Parquet) into `transactions`.

Replaying real history is how a bank tries Equilibrate on its own data before going live. This is
the I/O half: read the file, write the rejects, register the customers and produce the events.
How columns and codes map onto our schema is the pure half, in `equilibrate.sources.mapping`.
"""

from __future__ import annotations

import argparse
import csv
import gc
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from equilibrate.errors import ConfigError

if TYPE_CHECKING:  # the command must stay cheap to import: numpy and pyarrow load when it runs
    import pyarrow as pa

    from equilibrate.kafka.transport import Producer
    from equilibrate.settings import Settings
    from equilibrate.sources.mapping import I64, Events, Rejects, ReplayMapping

log = logging.getLogger(__name__)

VALUE_MAPS = ("category_map", "direction_map", "channel_map", "status_map")
#: Flags that mirror the YAML's scalar keys, with their help (argparse help: % doubled).
SCALARS = {
    "format": "csv or parquet (default: from the file name)",
    "delimiter": "CSV field separator: one character or 'tab' (default ,)",
    "encoding": "CSV text encoding, e.g. cp1252 (default utf-8)",
    "date_format": "strptime format such as '%%d/%%m/%%Y %%H:%%M', or iso, epoch_s, epoch_ms (default iso)",
    "timezone": "zone of times without an offset, e.g. Europe/London (default UTC)",
    "currency": "constant ISO currency, or the fallback for a blank currency column (default GBP)",
    "category_default": "category for unmapped codes, or reject (default reject)",
    "channel_default": "channel for unmapped codes, or reject (default other)",
    "status_default": "status for unmapped codes, or reject (default reject)",
}
FLAGS = {
    "signed_amount": "a negative amount is a debit (no direction column)",
    "decimal_comma": "amounts like 1.234,56 (comma decimals, point thousands)",
}


@dataclass(slots=True)
class Source:
    """A file read into memory: every column as in the file, and each row's 1-based source line."""

    table: pa.Table
    lines: I64
    #: Rows the reader could not split into the header's number of fields: (line, detail).
    malformed: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did: one line for the operator, numbers for the benchmark."""

    source: str
    topic: str
    rows: int = 0
    sent: int = 0
    failed: int = 0
    customers: int = 0
    seconds: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)
    rejects_path: Path | None = None
    interrupted: bool = False
    dry_run: bool = False
    #: Seconds spent reading, mapping, writing rejects, registering and producing (incl. flush).
    phases: dict[str, float] = field(default_factory=dict)

    def text(self) -> str:
        reasons = ", ".join(f"{reason} {n}" for reason, n in self.rejected.most_common())
        rejected = sum(self.rejected.values())
        return (
            f"replayed {self.source}: {self.rows} rows, {self.sent} sent to {self.topic}"
            f"{' (dry run)' if self.dry_run else ''} "
            f"({self.customers} customers), {rejected} rejected{f' ({reasons})' if reasons else ''}"
            f" -> {self.rejects_path}, {self.failed} failed deliveries, {self.seconds:.1f}s"
            f" ({self.rows / max(self.seconds, 1e-9):,.0f} rows/s){', INTERRUPTED' if self.interrupted else ''}"
        )


def load_mapping_file(path: Path) -> dict[str, Any]:
    """The YAML mapping as a plain dict; problems reading it become one clear line."""
    import yaml

    from equilibrate.sources.mapping import MappingError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"cannot read mapping file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"mapping file {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(data, dict):
        raise MappingError(f"mapping file {path} must hold YAML keys such as `columns:`, got {type(data).__name__}")
    return data


def read_source(path: Path, mapping: ReplayMapping) -> Source:
    """Read CSV (optionally .gz/.bz2) or Parquet, checking the mapped columns exist before any row."""
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    kind = mapping.format or ("parquet" if {".parquet", ".pq"} & {s.lower() for s in path.suffixes} else "csv")
    return _read_parquet(path, mapping) if kind == "parquet" else _read_csv(path, mapping)


def _read_parquet(path: Path, mapping: ReplayMapping) -> Source:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from equilibrate.sources.mapping import check_columns

    try:
        check_columns(mapping, pq.read_schema(path).names)
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"cannot read {path} as Parquet: {exc}") from None
    return Source(table, np.arange(1, table.num_rows + 1, dtype=np.int64))


def _read_csv(path: Path, mapping: ReplayMapping) -> Source:
    """All columns as text (account numbers keep their leading zeros); bad rows are set aside."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from equilibrate.sources.mapping import check_columns

    try:
        data = pa.input_stream(str(path), compression="detect").read()
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    names = _header(data, mapping)
    check_columns(mapping, names)
    invalid: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        text = row.text if len(row.text) <= 300 else row.text[:300] + "..."
        invalid.append((row.number, f"expected {row.expected_columns} fields, got {row.actual_columns}: {text}"))
        return "skip"

    convert = pcsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=False)
    parse = pcsv.ParseOptions(delimiter=mapping.delimiter, invalid_row_handler=on_invalid)
    table: Any = None
    for threads in (True, False):  # only a single-threaded read numbers bad rows: retry if there are any
        invalid.clear()
        try:
            options = pcsv.ReadOptions(encoding=mapping.encoding, use_threads=threads)
            table = pcsv.read_csv(pa.BufferReader(data), read_options=options, parse_options=parse,
                                  convert_options=convert)  # fmt: skip
        except (pa.ArrowException, LookupError) as exc:
            hint = f" (not {mapping.encoding}? set encoding, e.g. cp1252)" if "UTF8" in str(exc) else ""
            raise ConfigError(f"cannot read {path} as CSV: {' '.join(str(exc).split())}{hint}") from None
        if all(number is not None for number, _ in invalid):
            break
    nonempty = _nonempty_lines(data)
    bad = [number or 0 for number, _ in invalid]
    lines = np.delete(nonempty[1:], [n - 2 for n in bad])
    malformed = [(int(nonempty[n - 1]) if n else 0, detail) for n, (_, detail) in zip(bad, invalid, strict=True)]
    if len(lines) != table.num_rows or not all(bad):  # e.g. line breaks inside quoted values
        log.warning("%s: line numbers are record numbers (header = 1): physical lines unknown", path.name)
        lines = np.arange(2, table.num_rows + 2, dtype=np.int64)
    return Source(table, lines, malformed)


def _header(data: bytes, mapping: ReplayMapping) -> list[str]:
    """The column names, parsed from the first non-empty line as the CSV reader will see them."""
    for raw in data[:1_000_000].splitlines():
        if raw.strip():
            try:
                text = raw.decode(mapping.encoding).lstrip("\ufeff")
            except (UnicodeDecodeError, LookupError) as exc:
                raise ConfigError(f"cannot decode the header as {mapping.encoding}: {exc}") from None
            return next(csv.reader([text], delimiter=mapping.delimiter))
    raise ConfigError("the file is empty: no header line")


def _nonempty_lines(data: bytes) -> I64:
    """1-based numbers of the physical lines that hold something (the CSV reader skips blank ones)."""
    import numpy as np

    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    starts = np.concatenate(([0], ends + 1))
    stops = np.concatenate((ends, [len(buf)]))
    length = stops - starts
    carriage = (length > 0) & (buf[np.maximum(stops - 1, 0)] == 13) if len(buf) else length > 0
    out: I64 = (np.flatnonzero(length - carriage > 0) + 1).astype(np.int64)
    return out


def write_rejects(path: Path, source: Source, rejects: Rejects) -> int:
    """CSV of rejected rows in line order: source_line, reason, detail, then the original columns.

    The original columns keep their names, so the file can be fixed and replayed with the same mapping.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from equilibrate.sources.mapping import MALFORMED

    path.parent.mkdir(parents=True, exist_ok=True)
    originals = source.table.take(pa.array(rejects.row, pa.int64()))
    k = len(source.malformed)
    lines = np.concatenate((rejects.line, np.array([line for line, _ in source.malformed], dtype=np.int64)))
    head = [pa.array(lines), pa.array(rejects.reason + [MALFORMED] * k, pa.string())]
    head.append(pa.array(rejects.detail + [detail for _, detail in source.malformed], pa.string()))
    body = [pa.concat_arrays([c.combine_chunks(), pa.nulls(k, c.type)]) for c in originals.columns]
    table = pa.Table.from_arrays(head + body, names=["source_line", "reason", "detail", *originals.column_names])
    pcsv.write_csv(table.take(pa.array(np.argsort(lines, kind="stable"))), str(path))
    return len(lines)


def send(producer: Producer, topic: str, events: Events, speed: float | None) -> tuple[int, bool]:
    """Produce in order, paced when `speed` is set (event time scaled onto a monotonic clock).

    Returns how many were handed to the producer and whether Ctrl-C stopped it early, so that what
    was already queued can still be flushed and counted.
    """
    done, start = 0, time.monotonic()
    due = None if speed is None or not len(events) else (events.ts_us - events.ts_us[0]) / 1e6 / speed
    try:
        for key, value in events.encoded():
            if due is not None:
                while (wait := start + due[done] - time.monotonic()) > 0:
                    producer.poll(0)
                    time.sleep(min(wait, 0.2))
            producer.produce(topic, value, key)
            done += 1
            if not done % 20_000:
                producer.poll(0)
    except KeyboardInterrupt:
        return done, True
    return done, False


def replay_file(
    settings: Settings,
    path: Path,
    mapping: ReplayMapping,
    *,
    speed: float | None = None,
    rejects_path: Path | None = None,
    register: bool = True,
    dry_run: bool = False,
) -> ReplaySummary:
    """Map, write rejects, register the customers, then produce keyed by customer id."""
    from equilibrate.sources.mapping import MALFORMED, map_rows

    started = mark = time.monotonic()
    summary = ReplaySummary(path.name, settings.topic_transactions, dry_run=dry_run)

    def phase(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        summary.phases[name], mark = now - mark, now

    source = read_source(path, mapping)
    phase("read")
    events, rejects = map_rows(source.table, mapping, source_name=path.name, lines=source.lines)
    phase("map")
    summary.rows = source.table.num_rows + len(source.malformed)
    summary.rejected = rejects.counts + Counter({MALFORMED: len(source.malformed)})
    summary.rejects_path = rejects_path or settings.data_dir / "replay_rejects.csv"
    write_rejects(summary.rejects_path, source, rejects)
    phase("rejects")
    customers = sorted(set(events.columns[1]))
    summary.customers = len(customers)
    log.info("%s: %d rows mapped, %d rejected", path.name, len(events), rejects.row.size + len(source.malformed))
    if not dry_run and len(events):
        from equilibrate.kafka.topics import ensure_topics
        from equilibrate.kafka.transport import make_producer

        ensure_topics(settings, [settings.topic_transactions])
        if register:  # before the events: consumers reject events of customers they do not know
            from equilibrate.storage import customer_registry
            from equilibrate.storage.redis_client import connect

            client = connect(settings)
            try:
                customer_registry.register_ids(client, customers)
            finally:
                client.close()
            phase("register")
        producer = make_producer(settings, client_id="replay", linger_ms=20 if speed is None else 5)
        # Millions of mapped values are long-lived: frozen, the garbage collector stops walking them
        # again and again while each event's dict comes and goes (a third faster at 1M rows).
        gc.freeze()
        try:
            produced, summary.interrupted = send(producer, settings.topic_transactions, events, speed)
        finally:
            gc.unfreeze()
        undelivered = producer.flush(60)  # first: delivery failures are counted while it waits
        summary.failed = producer.failed + undelivered
        summary.sent = max(0, produced - summary.failed)
        producer.close()
        phase("produce")
    summary.seconds = time.monotonic() - started
    return summary


def mapping_from_args(args: argparse.Namespace) -> ReplayMapping:
    """The YAML file (if any) with the command-line flags on top."""
    from equilibrate.sources.mapping import build_mapping, parse_pairs

    base = load_mapping_file(args.mapping) if args.mapping else {}
    flags: dict[str, Any] = {"columns": parse_pairs(args.map, "--map")}
    for name in VALUE_MAPS:
        flags[name] = parse_pairs(getattr(args, name), "--" + name.replace("_", "-"))
    flags |= {name: getattr(args, name) for name in [*SCALARS, *FLAGS] if getattr(args, name) is not None}
    return build_mapping(base, {key: value for key, value in flags.items() if value != {}})


def _speed(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    try:
        speed = float(value)
    except ValueError:
        speed = 0.0
    if not speed > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of simulated seconds per second, or max: {value}")
    return speed


def run(args: argparse.Namespace, settings: Settings) -> int:
    summary = replay_file(
        settings,
        args.file,
        mapping_from_args(args),
        speed=args.speed,
        rejects_path=args.rejects,
        register=not args.no_register,
        dry_run=args.dry_run,
    )
    print(summary.text())
    return 1 if summary.failed or summary.interrupted else 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a bank's transaction export (CSV or Parquet) into the transactions topic",
        description="Map a bank export onto our events (YAML --mapping and/or flags; flags win) and produce "
        "them in event-time order, keyed by customer id. Example: equilibrate replay export.csv "
        "--map customer_id=AcctNo --map ts=PostingDate --map amount=Amount --map category=Code "
        '--map balance_after=Balance --signed-amount --date-format "%d/%m/%Y %H:%M" --category-default other',
    )
    p.add_argument("file", type=Path, help="CSV (.csv, .csv.gz) or Parquet (.parquet) export")
    p.add_argument("--mapping", type=Path, help="YAML mapping file (see examples/mappings/foreign_bank.yaml)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN", help="the column of one of our fields")
    for name in VALUE_MAPS:
        what = name.split("_")[0]
        p.add_argument(f"--{name.replace('_', '-')}", action="append", default=[], metavar="CODE=VALUE",
                       help=f"the bank's {what} code CODE means our {what} VALUE (repeatable)")  # fmt: skip
    for name, text in SCALARS.items():
        p.add_argument(f"--{name.replace('_', '-')}", default=None, metavar=name.split("_")[0].upper(), help=text)
    for name, text in FLAGS.items():
        p.add_argument(f"--{name.replace('_', '-')}", action=argparse.BooleanOptionalAction, default=None, help=text)
    p.add_argument("--speed", type=_speed, default=None, help="simulated seconds per real second, or max (default)")
    p.add_argument("--rejects", type=Path, default=None, help="rejects CSV (default DATA_DIR/replay_rejects.csv)")
    p.add_argument("--no-register", action="store_true", help="do not add the customers to the Redis registry")
    p.add_argument("--dry-run", action="store_true", help="map and write the rejects, but send nothing")
    p.set_defaults(func=run)
