"""The benchmark suite: one command that reproduces the README's benchmark table (under 15 minutes).

    make bench                                   # or: .venv/bin/python bench/run_all.py
    .venv/bin/python bench/run_all.py --only api,scaleout [--no-readme]
    .venv/bin/python bench/run_all.py --table-only   # rewrite the tables from the recorded results

Runs each benchmark of SUITE as its own process, one after another (they would share the 2 cores
otherwise), at the suite's sizes, and each writes bench/results/<name>.json. Then the "headline"
rows of every result (what, value, goal, met) become one Markdown table with the machine it ran on,
followed by any table a result carries (bench_scale's cost at 10k / 100k / 1M customers), written
to bench/results/summary.md and between the `bench-table` markers in README.md. A benchmark that
fails or runs over its time limit is reported and the others still run (exit code 1).

Each benchmark's own docstring says what it measures and how; bench/README.md lists them all,
including the component benchmarks that are not part of this suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine_info import cpu_model

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench-table:begin -->", "<!-- bench-table:end -->"
SUITE_BUDGET_S = 15 * 60


@dataclass(frozen=True)
class Bench:
    name: str  # bench/bench_<name>.py, writing bench/results/<name>.json
    title: str
    args: tuple[str, ...]  # the suite's sizes, when they differ from the script's defaults
    budget_s: int  # what it should take; it is stopped at twice that

    @property
    def script(self) -> Path:
        return ROOT / "bench" / f"bench_{self.name}.py"

    @property
    def result(self) -> Path:
        return RESULTS / f"{self.name}.json"


SUITE = (
    Bench("e2e", "End to end: simulator -> broker -> features -> risk", (), 240),
    Bench("scale", "Scale and cost: 10k, 100k and 1M customers", (), 330),
    Bench("scaleout", "Scale-out: 1, 2 and 4 feature-engine processes", (), 180),
    Bench(
        "api",
        "API at 500 requests/s, batches of 1,000",
        ("--customers", "5000", "--seconds", "15", "--sweep", "", "--model-customers", "2000", "--model-days", "180"),
        270,
    ),
)


def run(bench: Bench) -> dict[str, Any]:
    """Run one benchmark; its outcome (seconds, exit code) for the summary."""
    print(f"\n=== {bench.name}: {bench.title} (about {bench.budget_s // 60} min {bench.budget_s % 60} s)", flush=True)
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, str(bench.script), *bench.args], cwd=ROOT, timeout=2 * bench.budget_s, check=False
        )
        code: int | None = done.returncode
    except subprocess.TimeoutExpired:
        code = None
    seconds = round(time.monotonic() - started, 1)
    state = "timed out" if code is None else "ok" if code == 0 else f"exit {code} (a goal missed or a failure)"
    print(f"=== {bench.name}: {state} in {seconds:.0f} s", flush=True)
    return {"seconds": seconds, "exit_code": code, "when": datetime.now(UTC).isoformat(timespec="seconds")}


def _machine() -> str:
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} vCPU ({cpu_model()}), {memory_gb:.0f} GB RAM, Python {platform.python_version()}"


def _commit() -> str:
    git = ["git", "rev-parse", "--short", "HEAD"]
    done = subprocess.run(git, cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _commit_in(summary: Path) -> str:
    """The commit an earlier summary.md names (summaries written before summary.json kept it)."""
    found = re.search(r"at commit (\w+)", summary.read_text()) if summary.exists() else None
    return found.group(1) if found else "unknown"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(outcomes: dict[str, dict[str, Any]], *, written: str, commit: str) -> str:
    """The Markdown table of every benchmark's headline rows, then the benchmarks' own tables."""
    lines = [
        "| Benchmark | Measure | Result | Goal |",
        "|---|---|---|---|",
    ]
    extra: list[str] = []
    for bench in SUITE:
        if not bench.result.exists():
            lines.append(f"| {bench.name} | (no result: run `bench/run_all.py --only {bench.name}`) | | |")
            continue
        result = json.loads(bench.result.read_text())
        for t in result.get("tables") or []:  # e.g. bench_scale's cost at each size
            extra += ["", f"{t['title']}:", "", "| " + " | ".join(map(_cell, t["columns"])) + " |"]
            extra.append("|" + "---|" * len(t["columns"]))
            extra += ["| " + " | ".join(map(_cell, row)) + " |" for row in t["rows"]]
        rows = result.get("headline") or []
        if not rows:
            lines.append(f"| {bench.name} | (no headline rows in {bench.result.name}) | | |")
        for row in rows:
            goal = row.get("goal") or ""
            met = row.get("met")
            if goal and met is not None:
                goal = f"{goal} {'(met)' if met else '(**missed**)'}"
            lines.append(f"| {bench.name} | {_cell(row['metric'])} | {_cell(row['value'])} | {_cell(goal)} |")
    lines += extra
    seconds = {name: o["seconds"] for name, o in outcomes.items()}
    took = ", ".join(f"{name} {s / 60:.1f} min" for name, s in seconds.items())
    total = sum(seconds.values())
    lines += [
        "",
        f"Table written {written} at commit {commit} on {_machine()}; the broker (embedded Tansu), Redis and "
        "the load share the machine. Each result's JSON in bench/results/ has its own time and details.",
    ]
    if took:
        lines.append(f"Suite wall time: {total / 60:.1f} min ({took}).")
    return "\n".join(lines) + "\n"


def update_readme(text: str) -> bool:
    readme = README.read_text()
    if BEGIN not in readme or END not in readme:
        print(f"README.md has no {BEGIN} ... {END} block: table not written there")
        return False
    head, rest = readme.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{text}{END}{tail}")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated names: " + ",".join(b.name for b in SUITE))
    parser.add_argument("--no-readme", action="store_true", help="write bench/results/summary.md only")
    parser.add_argument(
        "--table-only", action="store_true", help="run nothing: rewrite the tables from the results there are"
    )
    args = parser.parse_args()
    chosen = [b for b in SUITE if not args.only or b.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {b.name for b in SUITE}
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    summary_json = RESULTS / "summary.json"
    earlier = json.loads(summary_json.read_text()) if summary_json.exists() else {}
    started = time.monotonic()
    outcomes = {} if args.table_only else {b.name: run(b) for b in chosen}
    total = time.monotonic() - started
    # a partial run (--only) keeps the other benchmarks' last outcomes: the table shows all of them
    every: dict[str, dict[str, Any]] = {}
    for b in SUITE:
        found = outcomes.get(b.name) or earlier.get("runs", {}).get(b.name)
        if found:
            every[b.name] = found
    if args.table_only:  # the stamp of the run that measured, not of this rewrite
        when, commit = earlier.get("when", "unknown"), earlier.get("commit") or _commit_in(RESULTS / "summary.md")
    else:
        when, commit = datetime.now(UTC).isoformat(timespec="seconds"), _commit()
    written = when.replace("T", " ")[:16] + " UTC" if "T" in when else when
    summary = table(every, written=written, commit=commit)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(summary)
    summary_json.write_text(json.dumps({"when": when, "commit": commit, "runs": every}, indent=2) + "\n")
    written = not args.no_readme and update_readme(summary)
    print("\n" + summary)
    where = "bench/results/summary.md" + (" and README.md" if written else "")
    if args.table_only:
        print(f"tables rewritten from the results there are, in {where}")
    else:
        print(f"suite: {total / 60:.1f} min (budget {SUITE_BUDGET_S // 60} min); table in {where}")
    failed = [name for name, o in outcomes.items() if o["exit_code"] != 0]
    if failed:
        print(f"not clean: {', '.join(failed)} (see above)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
