"""What every benchmark script shares: pass timing, prompts, reports and tables.

    pass timing   :func:`pass_costs`: :func:`hierspec.profiler.timing.measure_pass_costs`, the
                  profiler's loop, so a benchmark's "cost of a pass" is the profile's (forward +
                  processing + truncate, the parts reported apart);
    prompts       :func:`family_prompts`: the bundled family's held-out / calibration prompts,
                  chat-formatted (:func:`hierspec.prompts.chat_input_ids`);
    profiles      :func:`family_profile`: the cached profile of the family that ``hierspec
                  generate`` plans from (``QUICK_PROFILE``: a cheap one for smoke runs, cached
                  apart); :func:`single_draft_length`: the planner's best ``T`` for one draft;
    transformers  :func:`hf_generate` (plain, assisted or prompt lookup decoding, sampling set to
                  match hierspec's exactly), :func:`hf_prefill_seconds` (its prefill, timed
                  apart: transformers reports none); :func:`compare_greedy` (token identity);
    reports       :func:`write_report`: JSON through :func:`hierspec.io.write_json` (strict,
                  atomic) with the machine (:func:`hierspec.io.machine_info`) recorded at the
                  start and the load average at the end, and the command line;
    tables        :func:`format_table`: left-aligned columns of strings.

Scripts import it as ``from harness import ...`` (``bench/`` is the script's folder, so it is on
``sys.path`` when a script runs).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

import hierspec
from hierspec.io import machine_info, write_json
from hierspec.levels import as_levels
from hierspec.profiler import ProfilerConfig
from hierspec.profiler.timing import CostMeasurement, measure_pass_costs
from hierspec.sampling import SamplingConfig

__all__ = [
    "QUICK_PROFILE",
    "RESULTS",
    "Report",
    "compare_greedy",
    "family_profile",
    "family_profile_path",
    "family_prompts",
    "format_table",
    "hf_generate",
    "hf_prefill_seconds",
    "pass_costs",
    "planned_profile",
    "profile_plan",
    "SAMPLING_MODES",
    "single_draft_length",
    "write_report",
]

RESULTS = Path(__file__).resolve().parent / "results"
_DEFAULT_SAMPLING = SamplingConfig()
# The benchmarks' sampling modes by their command-line names (``--modes``, ``--mode``).
SAMPLING_MODES = {
    "greedy": SamplingConfig(temperature=0.0),
    "temperature1": SamplingConfig(temperature=1.0),
}


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


# Smoke runs: a cheap profile (few timings, interpolated costs, short calibration), cached apart.
QUICK_PROFILE = ProfilerConfig(repeats=2, calibration_tokens=24, cost_points=(1, 2, 4, 8, 16, 32))


def _profile_config(
    sampling: SamplingConfig, quick: bool, max_draft_length: int, threads: int
) -> ProfilerConfig:
    return dataclasses.replace(
        QUICK_PROFILE if quick else ProfilerConfig(),
        max_draft_length=max_draft_length,
        sampling=sampling,
        threads=threads,
    )


def family_profile(
    family: Any,
    sampling: SamplingConfig,
    quick: bool,
    max_draft_length: int,
    threads: int,
    num_prompts: int,
    progress: bool = True,
    refresh: bool = False,
) -> tuple[Any, Path, bool]:
    """``(profile, path, measured_now)``: the cached profile of ``family`` at ``sampling`` on
    ``num_prompts`` calibration prompts, the one ``hierspec generate`` plans from (measured once
    if missing or when ``refresh``; ``quick``: :data:`QUICK_PROFILE`)."""
    from hierspec.cli.candidates import candidates_profile, from_family

    config = _profile_config(sampling, quick, max_draft_length, threads)
    return candidates_profile(
        from_family(family), config, num_prompts, refresh=refresh, progress=progress
    )


def planned_profile(
    family: Any,
    sampling: SamplingConfig,
    quick: bool,
    max_draft_length: int,
    threads: int,
    num_prompts: int,
    progress: bool,
    log: Any,
    label: str,
) -> tuple[Any, Path, Any]:
    """``(profile, path, plan)``: :func:`family_profile` (logged with how long it took) and the
    planner's plan over it."""
    started = time.perf_counter()
    profile, path, measured_now = family_profile(
        family, sampling, quick, max_draft_length, threads, num_prompts, progress=progress
    )
    log(
        f"[{label}] profile {path} ({'measured now' if measured_now else 'cached'}, "
        f"{time.perf_counter() - started:.0f} s)"
    )
    return profile, path, profile_plan(profile, max_draft_length)


def profile_plan(profile: Any, max_draft_length: int) -> Any:
    """The planner's plan over ``profile`` (its costs and acceptance, named)."""
    return hierspec.plan(
        profile.costs_ms,
        profile.acceptance,
        max_draft_length=max_draft_length,
        model_names=profile.model_names,
    )


def family_profile_path(
    family: Any,
    sampling: SamplingConfig,
    quick: bool,
    max_draft_length: int,
    threads: int,
    num_prompts: int,
) -> Path:
    """Where :func:`family_profile` caches (the file may not exist yet)."""
    from hierspec.cli.candidates import candidates_profile_path, from_family

    config = _profile_config(sampling, quick, max_draft_length, threads)
    return candidates_profile_path(from_family(family), config, num_prompts)


def cached_family_profile(
    family: Any, sampling: SamplingConfig, max_draft_length: int, num_prompts: int
) -> tuple[Any, Path]:
    """``(profile, path)``: the family's cached one-thread profile (the one ``bench/e2e.py``,
    ``bench/adaptive.py`` and ``hierspec generate`` plan from), for benchmarks that never
    profile; a missing one stops the benchmark with what to run first."""
    from hierspec.planning import load_profile

    path = family_profile_path(family, sampling, False, max_draft_length, 1, num_prompts)
    if not path.exists():
        raise SystemExit(
            f"no cached profile at {path} (sampling {sampling}): run `OMP_NUM_THREADS=1 python "
            "bench/adaptive.py` or hierspec generate first (this benchmark does not profile)"
        )
    return load_profile(path), path


def single_draft_length(profile: Any, draft: int, max_draft_length: int) -> tuple[int, float]:
    """The planner's best draft length for ``draft -> target`` alone and its predicted latency."""
    target = len(profile.model_names) - 1
    sub_costs = [profile.costs_ms[draft], profile.costs_ms[target]]
    sub_acceptance = [[1.0, profile.acceptance[draft][target]], [0.0, 1.0]]
    result = hierspec.plan(sub_costs, sub_acceptance, max_draft_length=max_draft_length)
    entry = result.best_single_draft
    assert entry is not None
    return entry.draft_lengths[0], entry.latency


def hf_generate(
    target: torch.nn.Module,
    input_ids: torch.Tensor,  # [1, P] int64
    sampling: SamplingConfig,
    max_new_tokens: int,
    seed: int,
    pad_token_id: int,
    assistant: torch.nn.Module | None = None,
    prompt_lookup_num_tokens: int | None = None,
) -> torch.Tensor:
    """transformers' ``generate`` of ``target``: plain, assisted by ``assistant`` (set its
    generation config before) or prompt lookup decoding with ``prompt_lookup_num_tokens``;
    ``[1, P + new]``. Sampling matches hierspec's ``sampling`` exactly: transformers fills unset
    options from the model's generation config, then its global defaults (``top_k=50``), so
    top-k and top-p are always set (0 and 1.0: no truncation unless ``sampling`` asks)."""
    from transformers import GenerationConfig

    options: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=pad_token_id)
    if sampling.is_greedy:
        options["do_sample"] = False
    else:
        options.update(
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k or 0,
            top_p=sampling.top_p or 1.0,
        )
    if prompt_lookup_num_tokens is not None:
        options["prompt_lookup_num_tokens"] = prompt_lookup_num_tokens
    torch.manual_seed(seed)  # transformers samples from the global RNG
    return target.generate(
        input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=GenerationConfig(**options),
        assistant_model=assistant,
    )


def hf_prefill_seconds(model: torch.nn.Module, input_ids: torch.Tensor) -> float:
    """Seconds of a prefill of ``input_ids`` ``[1, P]`` as transformers' generate runs it: one
    forward pass into a fresh cache, logits of the last position only."""
    from transformers import DynamicCache

    started = time.perf_counter()
    with torch.inference_mode():
        model(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            cache=DynamicCache(config=model.config),
            use_cache=True,
            logits_to_keep=1,
        )
    return time.perf_counter() - started


def compare_greedy(
    sequences: torch.Tensor,  # [1, P + new] int64
    reference: torch.Tensor,  # [1, P + new'] int64
    prompt_length: int,
) -> tuple[bool, int | None]:
    """``(identical, first differing new-token position or None)``."""
    if sequences.shape == reference.shape and torch.equal(sequences, reference):
        return True, None
    length = min(sequences.shape[1], reference.shape[1])
    differs = (sequences[0, :length] != reference[0, :length]).nonzero()
    return False, (int(differs[0, 0]) if differs.numel() else length) - prompt_length


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


def start_family_benchmark(
    name: str,
    threads: int,
    cache: str | None,
    progress: bool,
    include: Sequence[str] | None = None,
) -> tuple[Report, Callable[[str], None], Any]:
    """The common start of a benchmark over the bundled family: ``threads`` torch threads,
    transformers quiet, a :class:`Report`, a ``log`` that prefixes the seconds since the start,
    and the family from ``cache`` (``include``: only those models) with EOS turned off, so that
    every run makes exactly ``max_new_tokens`` tokens."""
    torch.set_num_threads(threads)
    import transformers

    from hierspec.family import load_family

    transformers.logging.set_verbosity_error()
    started = time.perf_counter()
    report = Report(name)

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    family = load_family(
        cache,
        include=None if include is None else tuple(include),
        prepare=False,
        progress=progress,
    )
    for model in family.models:
        if isinstance(model, torch.nn.Module):
            model.generation_config.eos_token_id = None
    return report, log, family


def write_report(path: str | os.PathLike[str], report: dict[str, Any]) -> None:
    """Writes ``report`` as strict JSON (atomically; a ``machine`` entry is added when missing)
    and prints where."""
    if "machine" not in report:
        report = {"machine": machine_info(), **report}
    write_json(path, report)
    print(f"wrote {path}")


def add_prompt_arguments(
    parser: Any, full: dict[str, Any], quick: dict[str, Any] | None = None
) -> None:
    """``--tokens``, ``--prompts-per-category``, ``--ungrounded-prompts`` and ``--modes`` of the
    benchmarks over the family's held-out and ungrounded prompts (``bench/adaptive.py``,
    ``bench/estimator.py``); their help shows the ``full`` (and ``quick``) defaults."""

    def default(key: str) -> str:
        return f"{full[key]}" + (f"; quick {quick[key]}" if quick is not None else "")

    parser.add_argument("--tokens", type=int, help=f"new tokens per run ({default('tokens')})")
    parser.add_argument(
        "--prompts-per-category",
        type=int,
        help=f"held-out prompts per kind of task ({default('prompts_per_category')})",
    )
    parser.add_argument(
        "--ungrounded-prompts",
        type=int,
        help=f"ungrounded chat prompts, the README's first ({default('ungrounded_prompts')})",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=list(SAMPLING_MODES),
        help=f"sampling modes ({' '.join(full['modes'])}"
        + (f"; quick: {' '.join(quick['modes'])})" if quick is not None else ")"),
    )


def add_prompt_lookup_grid(
    parser: Any, default: Sequence[int], optional: bool = False, note: str = ""
) -> None:
    """``--prompt-lookup-grid``: transformers' ``prompt_lookup_num_tokens`` values each run per
    prompt, every one >= 1 (``optional``: none given skips the peer); ``note`` ends its help."""

    def positive(text: str) -> int:
        value = int(text)
        if value < 1:
            raise argparse.ArgumentTypeError(
                f"--prompt-lookup-grid values must be >= 1, got {value}"
            )
        return value

    defaults = " ".join(map(str, default))
    parser.add_argument(
        "--prompt-lookup-grid",
        type=positive,
        nargs="*" if optional else "+",
        default=list(default),
        metavar="K",
        help=f"transformers' prompt_lookup_num_tokens values run per prompt ({defaults}"
        + ("; none: skip the peer" if optional else "")
        + (f"; {note}" if note else "")
        + ")",
    )


def standard_error(values: Sequence[float]) -> float | None:
    """Standard error of the mean of ``values`` (sample standard deviation / sqrt(n), the values
    taken as independent); ``None`` for fewer than two."""
    if len(values) < 2:
        return None
    return statistics.stdev(values) / math.sqrt(len(values))


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]], gap: str = "  ") -> str:
    """``header`` and ``rows`` (strings) as left-aligned columns, one line each."""
    widths = [max(len(row[col]) for row in (header, *rows)) for col in range(len(header))]
    return "\n".join(
        gap.join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in (header, *rows)
    )
