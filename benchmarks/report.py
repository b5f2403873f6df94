"""Write a benchmark's table into its own section of BENCHMARKS.md (between marker comments),
so re-running one benchmark refreshes its table and leaves the others alone."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{torch.get_num_threads()} CPU threads ({cpu}), {gpu}, torch {torch.__version__}"


def under_realtime() -> bool:
    """Whether this process runs under SCHED_RR (`chrt -r 1 python benchmarks/...`): it and every
    process it starts then get the CPU ahead of all other work on the machine (Linux keeps 5% of each
    CPU for the rest). It is not an idle machine: work beside it still shares the cores' caches and
    runs whenever the benchmark waits, and another Ray cluster beside it can starve past its
    start-up timeouts, so run nothing Ray-based beside a benchmark under it."""
    return os.sched_getscheduler(0) == os.SCHED_RR


def table(header: list[str], rows: list[list[object]]) -> str:
    def cell(x: object) -> str:
        if isinstance(x, float):
            return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)


def update_section(name: str, body: str, path: Path = BENCHMARKS_MD) -> None:
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
