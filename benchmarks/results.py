"""How the benchmarks plan runs and report them: the order of repeats, choosing subsets,
medians and number formats, markdown tables, the JSON file, and the source state measured.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from .servers import ROOT

RESULTS_DIR = ROOT / "benchmarks" / "results"

T = TypeVar("T")


# --- planning -----------------------------------------------------------------------------


def interleaved(variants: Sequence[T], repeats: int) -> Iterator[tuple[int, list[T]]]:
    """(repeat, variants in this repeat's order) for repeat 1..``repeats``: the order
    rotates by one each repeat, so slow phases of a noisy machine spread over all."""
    for repeat in range(1, repeats + 1):
        shift = (repeat - 1) % len(variants) if variants else 0
        yield repeat, [*variants[shift:], *variants[:shift]]


def argument_parser(doc: str | None) -> argparse.ArgumentParser:
    """A tool's parser, described by the first line of its docstring."""
    return argparse.ArgumentParser(description=(doc or "").splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def subset(parser: argparse.ArgumentParser, text: str, known: Sequence[str], option: str,
           *, as_given: bool = False) -> list[str]:
    """The names of the comma-separated ``text`` ("all": every known one), in the order
    of ``known`` (``as_given``: in the order given); unknown names are a usage error."""
    if text == "all":
        return list(known)
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in known]
    if unknown or not wanted:
        parser.error(f"{option}: unknown {', '.join(unknown) or 'empty list'}; "
                     f"choose from {', '.join(known)} or all")
    if as_given:
        return list(dict.fromkeys(wanted))
    return [name for name in known if name in wanted]


# --- numbers ------------------------------------------------------------------------------


def spread(values: Sequence[float | None], fmt: Callable[[float], str]) -> str:
    """``median (min-max)`` of the values present ("n/a" if none; the median alone if one)."""
    present = [v for v in values if v is not None]
    if not present:
        return "n/a"
    median = fmt(statistics.median(present))
    if len(present) == 1:
        return median
    return f"{median} ({fmt(min(present))}-{fmt(max(present))})"


def fmt_ms(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def fmt_int(value: float) -> str:
    return f"{value:,.0f}"


def fmt_ratio(value: float, digits: int = 2) -> str:
    return "inf" if math.isinf(value) else f"{value:.{digits}f}"


def fmt_pct(value: float) -> str:
    return f"{value:.0f}%"


def fmt_number(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


# --- output -------------------------------------------------------------------------------


def md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def md_header(columns: Sequence[str], align: Sequence[str] | None = None) -> str:
    """A markdown table's header and separator lines; ``align`` holds one separator
    cell per column (``---`` by default, e.g. ``--:`` for numbers)."""
    cells = align if align is not None else ["---"] * len(columns)
    return md_row(columns) + "\n|" + "|".join(cells) + "|"


def finite(value: Any) -> Any:
    """For JSON: infinities and NaN (a worker that served nothing) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def write_json(path: Path, meta: Mapping[str, Any], runs: Sequence[Any]) -> None:
    """``{"meta": ..., "runs": [...]}`` (runs are dataclasses), indented, strict JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": dict(meta), "runs": [asdict(run) for run in runs]}
    path.write_text(json.dumps(finite(data), indent=1, allow_nan=False) + "\n")


def source_state(*paths: str) -> dict[str, str]:
    """The commit of the checkout measured, and its local changes under ``paths``."""
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", *argv], cwd=ROOT, capture_output=True, text=True,
                                  check=False, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"commit": git("rev-parse", "HEAD"), "changes": git("status", "--porcelain", "--",
                                                              *paths)}
