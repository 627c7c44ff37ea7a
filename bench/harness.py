"""What every benchmark script shares: pass timing, prompts, reports and tables.

    pass timing   :func:`pass_costs`: :func:`hierspec.profiler.timing.measure_pass_costs`, the
                  profiler's loop, so a benchmark's "cost of a pass" is the profile's (forward +
                  processing + truncate, the parts reported apart);
    prompts       :func:`family_prompts`: the bundled family's held-out / calibration prompts,
                  chat-formatted (:func:`hierspec.prompts.chat_input_ids`);
    reports       :func:`write_report`: JSON through :func:`hierspec.io.write_json` (strict,
                  atomic) with the machine (:func:`hierspec.io.machine_info`) recorded at the
                  start and the load average at the end, and the command line;
    tables        :func:`format_table`: left-aligned columns of strings.

Scripts import it as ``from harness import ...`` (``bench/`` is the script's folder, so it is on
``sys.path`` when a script runs).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from hierspec.io import machine_info, write_json
from hierspec.levels import as_levels
from hierspec.profiler.timing import CostMeasurement, measure_pass_costs
from hierspec.sampling import SamplingConfig

__all__ = [
    "RESULTS",
    "Report",
    "family_prompts",
    "format_table",
    "pass_costs",
    "write_report",
]

RESULTS = Path(__file__).resolve().parent / "results"
_DEFAULT_SAMPLING = SamplingConfig()


def pass_costs(
    models: Sequence[object],
    context: torch.Tensor,  # [1, num_cached + max(points)] int64
    num_cached: int,
    points: Sequence[int],
    repeats: int,
    sampling: SamplingConfig = _DEFAULT_SAMPLING,
) -> list[CostMeasurement]:
    """The cost of a pass of each model (transformers LM or DraftModel, wrapped as the engine
    wraps it) over each of ``points`` new tokens after ``num_cached`` cached tokens: the
    profiler's definition and loop; several models are timed interleaved pass by pass."""
    levels = as_levels(models)
    with torch.inference_mode():
        return measure_pass_costs(levels, context, num_cached, points, repeats, sampling)


def family_prompts(tokenizer: Any, split: str, count: int) -> tuple[list[Any], list[torch.Tensor]]:
    """The first ``count`` prompts of the bundled family's ``split`` (``"heldout"``: never used
    for profiling or distillation; ``"calibration"``: the validation split the profiles are
    measured on) and each chat-formatted, ``[1, P]`` int64."""
    from hierspec.family import corpus
    from hierspec.prompts import chat_input_ids

    chosen: dict[str, Callable[[int], Sequence[Any]]] = {
        "heldout": corpus.heldout_prompts,
        "calibration": corpus.calibration_prompts,
    }
    if split not in chosen:
        raise ValueError(f"split must be one of {sorted(chosen)}, got {split!r}")
    prompts = list(chosen[split](count))
    return prompts, [chat_input_ids(tokenizer, prompt.message) for prompt in prompts]


class Report:
    """The conditions of one benchmark run: the machine at the start (``machine``), the command
    and the UTC date; :meth:`write` adds the load average at the end and writes the JSON."""

    def __init__(self, benchmark: str) -> None:
        self.benchmark = benchmark
        self.started = time.time()
        self.machine = machine_info()
        self.command = " ".join(
            [
                f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '')}",
                os.path.basename(sys.executable),
                *sys.argv,
            ]
        )

    def write(self, path: str | os.PathLike[str], results: dict[str, Any]) -> None:
        """Writes ``{benchmark, command, date_utc, machine, load_average_after, **results}``."""
        write_report(
            path,
            {
                "benchmark": self.benchmark,
                "command": self.command,
                "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "machine": self.machine,
                "load_average_after": machine_info()["load_average"],
                **results,
            },
        )


def write_report(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Writes ``report`` as strict JSON (atomically; a ``machine`` entry is added when missing)
    and prints where."""
    if "machine" not in report:
        report = {"machine": machine_info(), **report}
    write_json(path, report)
    print(f"wrote {path}")


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], gap: str = "  ") -> str:
    """``header`` and ``rows`` (strings) as left-aligned columns, one line each."""
    widths = [max(len(row[col]) for row in (header, *rows)) for col in range(len(header))]
    return "\n".join(
        gap.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in (header, *rows)
    )
