"""What every benchmark records about the machine it ran on."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo), or what the platform module knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_s(pid: int) -> float:
    """CPU seconds a process has used (user + system, reaped children included; Linux /proc)."""
    with contextlib.suppress(OSError):
        after_comm = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(x) for x in after_comm[11:15]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (every core; idle and iowait excluded)."""
    with contextlib.suppress(OSError):
        ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    return 0.0


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """The wall clock, the machine's busy CPU seconds and each named process's, for `cpu_cores`."""
    return {"wall": time.perf_counter(), "machine": busy_s(), **{name: cpu_s(pid) for name, pid in pids.items()}}


def cpu_cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Cores each process kept busy between two snapshots; "other": the rest of the machine."""
    wall = after["wall"] - before["wall"]
    cores = {k: (after[k] - before[k]) / wall for k in before if k not in ("wall", "machine") and k in after}
    cores["other"] = (after["machine"] - before["machine"]) / wall - sum(cores.values())
    return {k: round(v, 2) for k, v in cores.items()}
