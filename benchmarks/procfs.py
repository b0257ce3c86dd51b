"""What the benchmarks read from /proc: process tree, CPU seconds, RSS, load average.

Every function is a point-in-time reading of this machine (Linux only) and tolerates a
process that is gone: it reads as absent (or 0 CPU), never as an error.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def children(pid: int) -> list[int]:
    """Live child pids of every thread of ``pid``, sorted."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found.update(int(child) for child in
                             Path(f"/proc/{pid}/task/{task}/children").read_text().split())
    return sorted(child for child in found if alive(child))


def group_members(group: int) -> list[int]:
    """Live pids whose process group is ``group``."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat_fields(entry)
            if fields is not None and fields[0] != "Z" and int(fields[2]) == group:
                members.append(int(entry))
    return members


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 once it is gone)."""
    fields = stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float | None:
    """VmRSS of ``pid`` in MiB, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def system_cpu() -> tuple[float, float, float]:
    """(all, busy, interrupts) seconds of CPU time summed over all cores, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    total = user + nice + system + idle + iowait + irq + softirq + steal
    return total / CLK_TCK, (total - idle - iowait) / CLK_TCK, (irq + softirq) / CLK_TCK


def process_cpu() -> dict[int, tuple[int, float]]:
    """pid -> (process group, CPU seconds including reaped children) of user processes."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        # Leave out kernel threads (kthreadd, pid 2, and its children): they carry
        # softirq work, ours included.
        if fields is None or entry == "2" or fields[1] == "2":
            continue
        cpu = sum(int(v) for v in fields[11:15]) / CLK_TCK
        found[int(entry)] = (int(fields[2]), cpu)
    return found


def other_cpu_pct(before: dict[int, tuple[int, float]], after: dict[int, tuple[int, float]],
                  server_group: int, seconds: float) -> float | None:
    """CPU of user processes other than this one and the server's group, in % of all cores.

    Sums (own + reaped children's) CPU over the processes alive at each end of
    :func:`process_cpu` snapshots and takes the difference: a process reaped meanwhile
    moves from its own entry to its parent's, so a long test run that ends during the
    window is not counted whole.
    """
    if seconds <= 0:
        return None
    mine = os.getpid()

    def total(snapshot: dict[int, tuple[int, float]]) -> float:
        return sum(cpu for pid, (group, cpu) in snapshot.items()
                   if pid != mine and group != server_group)

    used = max(0.0, total(after) - total(before))
    return used / (seconds * (os.cpu_count() or 1)) * 100


def loadavg(fields: int = 3) -> str:
    """The first ``fields`` fields of /proc/loadavg (5: all of it)."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:fields])
