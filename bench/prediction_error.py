"""Why the adaptive decoder's predicted decode time misses the measured one (issue 9, item 5).

``bench/adaptive.py`` reports each category's prediction error: measured decode time against
the time the adaptive decoder predicted (each decision's ``predicted_latency`` times the tokens
committed until the next decision, plus predicted catch-up costs). This script splits that error
on real runs and asks what a forecast that knows the n-gram level's regimes would have said.

The adaptive decoder (``AdaptiveConfig()``, ``--change-rate`` set; the family's cached
profiles, the held-out and ungrounded prompts and seeds of ``bench/adaptive.py``) generates
``--tokens`` tokens per prompt with a recording replanner (a
:class:`hierspec.adaptive.Replanner` whose hooks record every timed pass, verification and
decision; its decisions are the real ones). Per target cycle
between two decisions (the decoder decides after every target pass; the cycle before the first
decision and the last one are left out):

    measured    the cycle's wall time (from the end of one decision to the start of the next:
                the decision itself, ~1 ms, is left out) and the tokens it committed;
    model cost  the profile's cost of the passes the cycle ran (``costs_ms`` of each model at
                each pass length, scaled by the cost factors the decoder had learned at the
                decision before it), plus the predicted cost of a switch's catch-up pass (not
                a timed pass): what the latency model charges for that work;
    predicted   the decision's predicted latency per token times the tokens committed (plus
                its predicted catch-up cost when it switched);
    i.i.d.      the expected committed tokens of the cycle under the decision's estimates
                (``hierspec.evaluate``'s tokens per target pass for the configuration in use,
                at its early-stopping threshold);
    two-regime  the expected committed tokens of the cycle under a two-regime hidden Markov
                model of the n-gram level (``bench/correlation.py``: per threshold, fitted by EM
                on the profile's calibration text; run online by ``RegimeFilter`` from the
                cycles the engine saw), for cycles whose chain is ``ngram -> target``.

Per category, measured / predicted = (measured / model cost) x (model cost / predicted): the
first factor is the cost side (engine work the model does not charge, cost-scale error), the
second the acceptance side (the cycles ran more passes per token than the estimates promised).
The token forecasts are compared with the tokens the cycles committed (relative bias of the sum).

    OMP_NUM_THREADS=1 python bench/prediction_error.py                 # both modes (~15 min)
    OMP_NUM_THREADS=1 python bench/prediction_error.py --modes greedy --prompts-per-category 1

Writes bench/results/prediction-error-cpu.json. A missing cached profile is an error (run
``bench/adaptive.py`` or ``hierspec generate`` first); nothing is re-profiled here.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from adaptive import UNGROUNDED, select_prompts
from correlation import RegimeFilter, calibration_texts, fit_regimes
from harness import (
    RESULTS,
    SAMPLING_MODES,
    cached_family_profile,
    format_table,
    start_family_benchmark,
)

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.adaptive import AdaptiveConfig, BottomBatch, PlanDecision, Replanner
from hierspec.planning import pass_cost

MAX_DRAFT_LENGTH = 16  # bench/adaptive.py's
PROFILE_PROMPTS = 16


class RecordingReplanner(Replanner):
    """The decoder's own replanner, recording what it is told and what it decides."""

    def reset(self) -> None:
        super().reset()
        self.events: list[tuple] = []

    def observe(
        self,
        drafter: int,
        verifier: int,
        tested: int,
        accepted: int,
        bottom: BottomBatch | None = None,
    ) -> None:
        self.events.append(("verify", drafter, verifier, tested, accepted, bottom))
        super().observe(drafter, verifier, tested, accepted, bottom)

    def observe_pass(self, model: int, num_tokens: int, seconds: float) -> None:
        self.events.append(("pass", model, num_tokens))
        super().observe_pass(model, num_tokens, seconds)

    def decide(self, chain, draft_lengths, gaps, tokens_left, token, target_pass, **kwargs):
        started = time.perf_counter()
        decision = super().decide(
            chain, draft_lengths, gaps, tokens_left, token, target_pass, **kwargs
        )
        shifts = self.drafter_shifts()  # the estimates the decision priced at its means
        inputs = {
            "costs": self.costs(),
            "acceptance": self.estimator.estimates(shifts=shifts).tolist(),
            **self._early_stopping_estimates(decision.min_draft_confidence, shifts),
        }
        evaluation = hierspec.evaluate(
            chain=list(decision.chain), draft_lengths=list(decision.draft_lengths), **inputs
        )
        self.events.append(("decide", started, time.perf_counter(), decision, evaluation, inputs))
        return decision


def cycles_of(events: list[tuple]) -> list[dict[str, Any]]:
    """Per target cycle between two decisions: its wall time, committed tokens, passes and
    verifications, and the decision it ran under."""
    cycles = []
    previous: tuple | None = None
    passes: list[tuple] = []
    verifications: list[tuple] = []
    for event in events:
        if event[0] == "pass":
            passes.append(event)
        elif event[0] == "verify":
            verifications.append(event)
        else:
            if previous is not None:
                decision: PlanDecision = previous[3]
                cycles.append(
                    {
                        "seconds": event[1] - previous[2],
                        "tokens": event[3].token - decision.token,
                        "decision": decision,
                        "evaluation": previous[4],
                        "inputs": previous[5],
                        "passes": passes,
                        "verifications": verifications,
                    }
                )
            previous, passes, verifications = event, [], []
    return cycles


def ordered(fit: dict[str, Any]) -> dict[str, Any]:
    """``fit`` with regime 0 the low-acceptance one."""
    if fit["acceptance"][0] <= fit["acceptance"][1]:
        return fit
    swap = [1, 0]
    transition = np.array(fit["transition"])[np.ix_(swap, swap)]
    return {
        **fit,
        "continue": [fit["continue"][i] for i in swap],
        "acceptance": [fit["acceptance"][i] for i in swap],
        "transition": transition.tolist(),
    }


def regime_latency(
    inputs: dict[str, Any],
    regimes: RegimeFilter,
    threshold: float,
    decision: PlanDecision,
    ngram: int,
    target: int,
) -> float:
    """The decision's latency with the n-gram pair's rates replaced by the regime filter's
    plug-in for the next position: continue ``b . rho`` and acceptance ``b . (rho a) / b . rho``
    (``b`` the belief; the fit at ``threshold``), everything else as the decoder had it."""
    rho, acceptance, _ = regimes.parameters(threshold)
    belief = regimes.start(threshold)
    drafting = float(belief @ rho)
    rate = float(belief @ (rho * acceptance)) / drafting
    arguments = {key: value for key, value in inputs.items()}
    if threshold > 0.0:
        bottom = [list(row) for row in inputs["bottom_acceptance"]]
        bottom[ngram][target] = rate
        rates = list(inputs["continue_rates"])
        rates[ngram] = drafting
        arguments.update(bottom_acceptance=bottom, continue_rates=rates)
    else:
        pairs = [list(row) for row in inputs["acceptance"]]
        pairs[ngram][target] = rate
        arguments["acceptance"] = pairs
    return hierspec.evaluate(
        chain=list(decision.chain), draft_lengths=list(decision.draft_lengths), **arguments
    ).latency


def account(
    cycles: list[dict[str, Any]], regimes: RegimeFilter, ngram: int, target: int
) -> dict[str, float]:
    """Sums over one run's cycles (module docstring)."""
    totals = defaultdict(float)
    for cycle in cycles:
        decision: PlanDecision = cycle["decision"]
        inputs = cycle["inputs"]
        costs = inputs["costs"]
        model_cost = sum(pass_cost(np.asarray(costs[model]), n) for _, model, n in cycle["passes"])
        model_cost += decision.catch_up_cost  # a catch-up pass is not among the timed passes
        totals["catch_up_ms"] += decision.catch_up_cost
        totals["measured_ms"] += 1e3 * cycle["seconds"]
        totals["model_cost_ms"] += model_cost
        # A switch's catch-up pass runs in the cycle after the decision.
        totals["predicted_ms"] += decision.predicted_latency * cycle["tokens"]
        totals["predicted_ms"] += decision.catch_up_cost
        totals["tokens"] += cycle["tokens"]
        totals["iid_tokens"] += cycle["evaluation"].tokens_per_target_pass
        totals["cycles"] += 1
        bottom = [v for v in cycle["verifications"] if v[5] is not None]
        if decision.chain == (ngram, target) and len(bottom) == 1:
            _, _, _, tested, accepted, batch = bottom[0]
            threshold = decision.min_draft_confidence
            (draft_length,) = decision.draft_lengths
            totals["regime_cycles"] += 1
            totals["regime_tokens"] += cycle["tokens"]
            totals["regime_iid_tokens"] += cycle["evaluation"].tokens_per_target_pass
            totals["regime_forecast_tokens"] += regimes.forecast(threshold, draft_length)
            totals["regime_predicted_ms"] += decision.catch_up_cost + cycle["tokens"] * (
                regime_latency(inputs, regimes, threshold, decision, ngram, target)
            )
            totals["regime_measured_ms"] += 1e3 * cycle["seconds"]
            totals["regime_iid_predicted_ms"] += decision.catch_up_cost + (
                decision.predicted_latency * cycle["tokens"]
            )
            regimes.observe(threshold, len(batch.confidences), draft_length, accepted)
    return dict(totals)


def summarize(group: list[dict[str, float]]) -> dict[str, float]:
    total = defaultdict(float)
    for row in group:
        for key, value in row.items():
            total[key] += value
    measured, cost, predicted = total["measured_ms"], total["model_cost_ms"], total["predicted_ms"]
    result = {
        "prompts": len(group),
        "cycles": int(total["cycles"]),
        "measured_ms_per_token": measured / total["tokens"],
        "predicted_ms_per_token": predicted / total["tokens"],
        "prediction_error": measured / predicted - 1.0,
        "cost_side": measured / cost - 1.0,
        "acceptance_side": cost / predicted - 1.0,
        "iid_tokens_bias": total["iid_tokens"] / total["tokens"] - 1.0,
        "regime_share_of_cycles": total["regime_cycles"] / max(total["cycles"], 1.0),
    }
    if total["regime_cycles"]:
        result["ngram_cycles_prediction_error"] = (
            total["regime_measured_ms"] / total["regime_iid_predicted_ms"] - 1.0
        )
        result["ngram_cycles_two_regime_prediction_error"] = (
            total["regime_measured_ms"] / total["regime_predicted_ms"] - 1.0
        )
        result["ngram_cycles_iid_bias"] = total["regime_iid_tokens"] / total["regime_tokens"] - 1
        result["ngram_cycles_two_regime_bias"] = (
            total["regime_forecast_tokens"] / total["regime_tokens"] - 1.0
        )
    return result


def run_mode(family, mode: str, prompts, args, log) -> dict[str, Any]:
    sampling = SAMPLING_MODES[mode]
    profile, path = cached_family_profile(family, sampling, MAX_DRAFT_LENGTH, PROFILE_PROMPTS)
    names = list(profile.model_names)
    ngram, target = names.index("ngram"), len(names) - 1
    log(f"[{mode}] two-regime fits on the calibration text of {path.name}")
    texts = calibration_texts(family, "ngram", sampling, profile)
    thresholds = [0.0] + [entry.min_draft_confidence for entry in profile.early_stopping or ()]
    fits = {threshold: ordered(fit_regimes(texts, threshold)) for threshold in thresholds}
    replanner = RecordingReplanner(profile, AdaptiveConfig(change_rate=args.change_rate))
    decoder = HierarchicalDecoder.adaptive(list(family.models), profile, replanner=replanner)
    # Warm-up (the first passes of each shape pay for allocations and kernel selection), as
    # bench/adaptive.py does before it measures.
    decoder.generate(prompts[0]["input_ids"][:, :64], max_new_tokens=8, eos_token_id=None)
    rows = []
    for index, prompt in enumerate(prompts):
        decoder.generate(
            prompt["input_ids"],
            max_new_tokens=args.tokens,
            temperature=sampling.temperature,
            seed=1000 + index,  # bench/adaptive.py's
            eos_token_id=None,
        )
        cycles = cycles_of(replanner.events)
        totals = account(cycles, RegimeFilter(fits), ngram, target)
        rows.append({"category": prompt["category"], **totals})
        one = summarize([totals])
        log(
            f"[{mode}] prompt {index + 1}/{len(prompts)} ({prompt['category']}): measured "
            f"{one['measured_ms_per_token']:.1f}, predicted {one['predicted_ms_per_token']:.1f} "
            f"ms/token ({one['prediction_error']:+.0%}: cost side {one['cost_side']:+.0%}, "
            f"acceptance side {one['acceptance_side']:+.0%})"
        )
    categories = {}
    for category in dict.fromkeys(row["category"] for row in rows):
        group = [
            {k: v for k, v in r.items() if k != "category"}
            for r in rows
            if r["category"] == category
        ]
        categories[category] = summarize(group)
    everything = [{k: v for k, v in r.items() if k != "category"} for r in rows]
    categories["all"] = summarize(everything)
    return {
        "profile_path": str(path),
        "regime_fits": {str(k): v for k, v in fits.items()},
        "categories": categories,
        "prompts": rows,
    }


def table(result: dict[str, Any]) -> str:
    def percent(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:+.0%}" if key in row else ""

    rows = []
    for mode, part in result["modes"].items():
        for category, row in part["categories"].items():
            rows.append(
                [
                    mode,
                    category,
                    f"{row['measured_ms_per_token']:.1f}",
                    f"{row['predicted_ms_per_token']:.1f}",
                    percent(row, "prediction_error"),
                    percent(row, "cost_side"),
                    percent(row, "acceptance_side"),
                    f"{row['regime_share_of_cycles']:.0%}",
                    percent(row, "ngram_cycles_prediction_error"),
                    percent(row, "ngram_cycles_two_regime_prediction_error"),
                    percent(row, "ngram_cycles_iid_bias"),
                    percent(row, "ngram_cycles_two_regime_bias"),
                ]
            )
    header = [
        "mode",
        "category",
        "ms/token",
        "predicted",
        "error",
        "cost side",
        "accept. side",
        "ngram cycles",
        "their error",
        "two-regime",
        "tokens i.i.d.",
        "two-regime",
    ]
    return format_table(header, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes", nargs="+", choices=sorted(SAMPLING_MODES), default=sorted(SAMPLING_MODES)
    )
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--prompts-per-category", type=int, default=1)
    parser.add_argument("--ungrounded-prompts", type=int, default=4)
    parser.add_argument(
        "--change-rate",
        type=float,
        default=AdaptiveConfig().change_rate,
        help="the decoder's AdaptiveConfig.change_rate (default: the library's)",
    )
    parser.add_argument("--cache", help="family cache directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "prediction-error-cpu.json")
    args = parser.parse_args(argv)
    report, log, family = start_family_benchmark("prediction_error", 1, args.cache, False)
    prompts = select_prompts(family.tokenizer, args.prompts_per_category, args.ungrounded_prompts)
    log(
        f"{len(prompts)} prompts ({args.prompts_per_category} per held-out kind, "
        f"{sum(p['category'] == UNGROUNDED for p in prompts)} ungrounded)"
    )
    started = time.perf_counter()
    result: dict[str, Any] = {"settings": vars(args) | {"out": str(args.out)}, "modes": {}}
    for mode in args.modes:
        result["modes"][mode] = run_mode(family, mode, prompts, args, log)
    result["duration_s"] = time.perf_counter() - started
    result["definitions"] = {
        "prediction_error": "measured / predicted decode time - 1 over the cycles after the "
        "first decision (predicted: each decision's predicted_latency x the tokens committed "
        "until the next)",
        "cost_side": "measured / model cost - 1 (model cost: the profile's costs of the passes "
        "the cycles ran, at the learned cost scales)",
        "acceptance_side": "model cost / predicted - 1; (1 + error) = (1 + cost side) x "
        "(1 + acceptance side)",
        "iid_tokens_bias": "sum over cycles of the decision's expected committed tokens "
        "(hierspec.evaluate tokens_per_target_pass) / committed tokens - 1",
        "ngram_cycles_prediction_error": "prediction_error over the cycles run as ngram -> target",
        "ngram_cycles_two_regime_prediction_error": "the same with each decision's latency "
        "recomputed with the n-gram pair's rates replaced by the regime filter's plug-in "
        "(continue b . rho, acceptance b . (rho a) / b . rho; b the belief before the cycle)",
        "ngram_cycles_iid_bias": "iid_tokens_bias over the cycles run as ngram -> target",
        "ngram_cycles_two_regime_bias": "the two-regime forecast (bench/correlation.py "
        "RegimeFilter) over the same cycles / committed tokens - 1",
    }
    print(table(result))
    report.write(args.out, result)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
