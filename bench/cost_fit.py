"""Which cost table the planner should get: the timed medians or their nondecreasing fit.

The profiler times each pass length ``n`` a few times (``repeats`` 7, 4 for ``n > 8``) and keeps
the median. On a shared CPU one median can sit 10-20% below its neighbours by chance, and the
planner then picks the draft length whose verification pass falls in the dip, predicting a
latency no run will see. The profiler's default (``ProfilerConfig.cost_fit="nondecreasing"``)
replaces each row by the medians' nondecreasing least-squares fit
(``hierspec.profiler.nondecreasing_fit``, weighted by the repeats); ``"none"`` keeps the medians.
This benchmark measures what each costs the plan:

1. Reference timings: the models named by ``--models`` (default: every model of the bundled
   family) are timed at every pass length ``n = 1..N`` (the profile's table width)
   ``--reference-repeats`` times after the profiler's cached context, by the profiler's own
   loop (``hierspec.profiler.measure_pass_costs``: passes of every length and model
   interleaved, alternating direction), at greedy processing. A model not named keeps the
   greedy profile's medians in every table (trial and reference alike: no noise of its own);
   name the models the plans are made of (on a CPU where passes grow steeply with ``n``,
   timing the bf16 models 31 times at up to 33 tokens takes half an hour).
2. ``--trials`` simulated profiles: per model and ``n``, the profiler's number of timings is drawn
   without replacement from the reference timings; the table of their medians is ``none``, its
   fit ``nondecreasing``. The timings not drawn give the trial's reference table (their medians:
   independent of the drawn ones).
3. Each table is planned (``hierspec.plan`` over the cached profile's acceptance of each sampling
   mode, the static plan of ``bench/adaptive.py``) and the chosen configuration priced on the
   trial's reference table (``hierspec.expected_latency``). Reported per mode and fit: the
   regret (reference latency of the chosen configuration / that of the reference table's own
   plan - 1: mean, 90th percentile, share of trials at 0), the prediction error (the planned
   latency / the chosen configuration's reference latency - 1: mean and mean absolute) and the
   configurations chosen.
4. Recorded profiles: the profiles stored in ``bench/results/adaptive*.json`` (other hosts, other
   days; their medians and repeats are in ``model_details``) are planned on their medians and on
   the fit, and the medians' plan priced on the fitted table: how much of each medians' plan's
   predicted latency came from dips (no reference timings exist for them).

    OMP_NUM_THREADS=1 python bench/cost_fit.py --models ngram target    # ~5 min, 2-core CPU

Writes bench/results/cost-fit-cpu.json. Needs the cached greedy and temperature-1 profiles of
``hierspec generate`` / ``bench/adaptive.py`` (made here if missing: 3-15 minutes each on a 2-core
CPU).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    RESULTS,
    SAMPLING_MODES,
    family_profile,
    family_prompts,
    format_table,
    start_family_benchmark,
)

import hierspec
from hierspec.levels import as_levels
from hierspec.profiler import ProfilerConfig, measure_pass_costs, nondecreasing_fit
from hierspec.profiler.timing import timing_context

MAX_DRAFT_LENGTH = 16  # bench/adaptive.py's profiles
PROFILE_PROMPTS = 16
FITS = ("none", "nondecreasing")


def reference_timings(
    family: Any,
    timed: list[int],
    width: int,
    repeats: int,
    config: ProfilerConfig,
    log: Any,
) -> dict[int, list[list[float]]]:
    """``{model: [n - 1] -> every timed total (ms) of a pass over n tokens}`` for the models
    ``timed`` (indices into the family; step 1)."""
    import torch

    _, prompt_ids = family_prompts(family.tokenizer, "calibration", PROFILE_PROMPTS)
    context = timing_context(prompt_ids, config.context_tokens + width)
    started = time.perf_counter()
    with torch.inference_mode():
        measurements = measure_pass_costs(
            as_levels([family.models[index] for index in timed]),
            context,
            num_cached=config.context_tokens,
            points=list(range(1, width + 1)),
            repeats=repeats,
            sampling=SAMPLING_MODES["greedy"],
            seed=config.seed,
        )
    log(f"reference timings: {repeats} per pass length, {time.perf_counter() - started:.0f} s")
    return {
        index: [list(samples) for samples in measurement.samples_ms]
        for index, measurement in zip(timed, measurements)
    }


def trial_tables(
    timings: dict[int, list[list[float]]],
    fixed: list[list[float]],
    config: ProfilerConfig,
    rng: random.Random,
) -> tuple[dict[str, list[list[float]]], list[list[float]]]:
    """One simulated profile (step 2): ``({fit: table}, reference table)``; a model without
    reference timings has its row of ``fixed`` in every table."""
    tables: dict[str, list[list[float]]] = {fit: [] for fit in FITS}
    reference: list[list[float]] = []
    for model, row in enumerate(fixed):
        if model not in timings:
            for table in (*tables.values(), reference):
                table.append(list(row))
            continue
        per_n = timings[model]
        medians, weights, rest = [], [], []
        for n, samples in enumerate(per_n, start=1):
            drawn = set(rng.sample(range(len(samples)), config.repeats_for(n)))
            medians.append(statistics.median(samples[i] for i in drawn))
            weights.append(len(drawn))
            rest.append(statistics.median(s for i, s in enumerate(samples) if i not in drawn))
        tables["none"].append(medians)
        tables["nondecreasing"].append(nondecreasing_fit(medians, weights).tolist())
        reference.append(rest)
    return tables, reference


def score_mode(
    timings: dict[int, list[list[float]]],
    fixed: list[list[float]],
    acceptance: Any,
    names: tuple[str, ...],
    trials: int,
    config: ProfilerConfig,
    seed: int,
) -> dict[str, Any]:
    """Step 3 for one mode's acceptance: per fit the regrets, prediction errors and choices."""
    rng = random.Random(seed)
    regrets: dict[str, list[float]] = {fit: [] for fit in FITS}
    errors: dict[str, list[float]] = {fit: [] for fit in FITS}
    chosen: dict[str, collections.Counter[str]] = {fit: collections.Counter() for fit in FITS}
    reference_choices: collections.Counter[str] = collections.Counter()
    for _ in range(trials):
        tables, reference = trial_tables(timings, fixed, config, rng)
        best = hierspec.plan(reference, acceptance, MAX_DRAFT_LENGTH, model_names=names)
        reference_choices[best.best.describe()] += 1
        for fit, table in tables.items():
            planned = hierspec.plan(table, acceptance, MAX_DRAFT_LENGTH, model_names=names).best
            actual = hierspec.expected_latency(
                reference, acceptance, planned.chain, planned.draft_lengths
            )
            regrets[fit].append(actual / best.latency - 1.0)
            errors[fit].append(planned.latency / actual - 1.0)
            chosen[fit][planned.describe()] += 1
    result: dict[str, Any] = {"reference_plans": dict(reference_choices.most_common())}
    for fit in FITS:
        values = np.array(regrets[fit])
        result[fit] = {
            "regret_mean": float(values.mean()),
            "regret_p90": float(np.percentile(values, 90)),
            "share_at_reference_optimum": float(np.mean(values <= 1e-12)),
            "prediction_error_mean": float(np.mean(errors[fit])),
            "prediction_error_mean_abs": float(np.mean(np.abs(errors[fit]))),
            "plans": dict(chosen[fit].most_common()),
        }
    return result


def monotone_violations(timings: dict[int, list[list[float]]], names: tuple[str, ...]) -> dict:
    """Per timed model: how far the reference medians (all timings) fall below an earlier one."""
    out = {}
    for index, per_n in timings.items():
        name = names[index]
        medians = np.array([statistics.median(samples) for samples in per_n])
        running_max = np.maximum.accumulate(medians)
        out[name] = {
            "medians_ms": medians.round(3).tolist(),
            "largest_dip_relative": float(np.max(1.0 - medians / running_max)),
        }
    return out


def recorded_profiles(paths: list[Path]) -> list[dict[str, Any]]:
    """Step 4: each distinct profile stored in ``paths`` planned on its medians and on their fit."""
    seen = set()
    out = []
    for path in paths:
        data = json.loads(path.read_text())
        for mode in data.get("modes", []):
            stored = mode.get("profile") or {}
            details = stored.get("model_details")
            if not details or stored["metadata"]["date"] in seen:
                continue
            if any(detail["interpolated_n"] for detail in details):
                continue  # a fit over sparse points: not what the default profile does
            seen.add(stored["metadata"]["date"])
            names = tuple(model["name"] for model in stored["models"])
            medians = [detail["total_ms"] for detail in details]
            fitted = [
                nondecreasing_fit(detail["total_ms"], detail["repeats"]).tolist()
                for detail in details
            ]
            acceptance = stored["acceptance"]
            on_medians = hierspec.plan(medians, acceptance, MAX_DRAFT_LENGTH, model_names=names)
            on_fit = hierspec.plan(fitted, acceptance, MAX_DRAFT_LENGTH, model_names=names)
            priced = hierspec.expected_latency(
                fitted, acceptance, on_medians.chain, on_medians.draft_lengths
            )
            out.append(
                {
                    "file": path.name,
                    "profile_date": stored["metadata"]["date"],
                    "mode": mode["label"],
                    "cpu_flags": data["machine"]["cpu_flags"],
                    "medians_plan": on_medians.best.describe(),
                    "medians_plan_predicted_ms": on_medians.latency,
                    "medians_plan_on_fitted_table_ms": priced,
                    "fitted_plan": on_fit.best.describe(),
                    "fitted_plan_predicted_ms": on_fit.latency,
                    "dip_share_of_prediction": 1.0 - on_medians.latency / priced,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--reference-repeats", type=int, default=31, help="timings per pass length (31)"
    )
    parser.add_argument("--trials", type=int, default=400, help="simulated profiles (400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="NAME",
        help="the models timed (default: all; the others keep the profile's medians)",
    )
    parser.add_argument("--cache", default=None, help="the family's cache (as hierspec generate)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS / "cost-fit-cpu.json")
    args = parser.parse_args()
    config = ProfilerConfig()
    if args.reference_repeats < 2 * config.repeats:
        parser.error(
            f"--reference-repeats must be >= {2 * config.repeats} (twice the profiler's "
            f"repeats, so that a trial's reference has as many timings), got "
            f"{args.reference_repeats}"
        )
    if args.trials < 1:
        parser.error(f"--trials must be >= 1, got {args.trials}")
    report, log, family = start_family_benchmark(
        "cost_fit", 1, args.cache, progress=not args.no_progress
    )
    profiles = {}
    for mode in ("greedy", "temperature1"):
        profile, path, _ = family_profile(
            family,
            SAMPLING_MODES[mode],
            False,
            MAX_DRAFT_LENGTH,
            1,
            PROFILE_PROMPTS,
            progress=not args.no_progress,
        )
        log(f"[{mode}] profile {path}")
        profiles[mode] = profile
    names = profiles["greedy"].model_names
    width = len(profiles["greedy"].costs_ms[0])
    chosen_models = list(names) if args.models is None else args.models
    unknown = sorted(set(chosen_models) - set(names))
    if unknown:
        parser.error(f"--models: {unknown} not in the family ({', '.join(names)})")
    timed = [index for index, name in enumerate(names) if name in chosen_models]
    fixed = [detail["total_ms"] for detail in profiles["greedy"].extra["model_details"]]
    timings = reference_timings(family, timed, width, args.reference_repeats, config, log)
    modes = {}
    rows = []
    for mode, profile in profiles.items():
        scored = score_mode(
            timings, fixed, profile.acceptance, names, args.trials, config, args.seed
        )
        modes[mode] = scored
        for fit in FITS:
            entry = scored[fit]
            top = next(iter(entry["plans"]))
            rows.append(
                [
                    mode,
                    fit,
                    f"{100 * entry['regret_mean']:.2f}%",
                    f"{100 * entry['regret_p90']:.2f}%",
                    f"{100 * entry['share_at_reference_optimum']:.0f}%",
                    f"{100 * entry['prediction_error_mean']:+.1f}%",
                    f"{100 * entry['prediction_error_mean_abs']:.1f}%",
                    f"{top} ({entry['plans'][top]}/{args.trials})",
                ]
            )
    header = [
        "mode",
        "cost fit",
        "regret mean",
        "regret p90",
        "at optimum",
        "pred. error",
        "|pred. error|",
        "most chosen plan",
    ]
    print(format_table(header, rows))
    for mode, scored in modes.items():
        print(f"{mode}: reference plans {scored['reference_plans']}")
    recorded = recorded_profiles(sorted(RESULTS.glob("adaptive*.json")))
    print("\nrecorded profiles (planned on the medians / on their fit):")
    print(
        format_table(
            ["profile", "mode", "medians' plan", "predicted", "on the fit", "fit's plan"],
            [
                [
                    entry["profile_date"][:16],
                    entry["mode"],
                    entry["medians_plan"],
                    f"{entry['medians_plan_predicted_ms']:.1f} ms",
                    f"{entry['medians_plan_on_fitted_table_ms']:.1f} ms",
                    f"{entry['fitted_plan']} ({entry['fitted_plan_predicted_ms']:.1f} ms)",
                ]
                for entry in recorded
            ],
        )
    )
    report.write(
        args.out,
        {
            "settings": {
                "reference_repeats": args.reference_repeats,
                "trials": args.trials,
                "seed": args.seed,
                "timed_models": [names[index] for index in timed],
                "profiler_repeats": [config.repeats_for(n) for n in range(1, width + 1)],
                "max_draft_length": MAX_DRAFT_LENGTH,
                "profile_prompts": PROFILE_PROMPTS,
            },
            "definitions": {
                "regret": "reference latency of the configuration planned on the trial table / "
                "reference latency of the reference table's own plan - 1",
                "prediction_error": "latency the plan predicted on the trial table / reference "
                "latency of that configuration - 1",
                "reference table": "per model and n, the median of the reference timings not "
                "drawn for the trial",
            },
            "model_names": list(names),
            "reference": monotone_violations(timings, names),
            "modes": modes,
            "recorded_profiles": recorded,
        },
    )


if __name__ == "__main__":
    main()
