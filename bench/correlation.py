"""Is the bottom level's acceptance correlated in ways the i.i.d. model misses, and what does it
cost the planner's choices? (issue 9, item 5)

The latency model takes each pair's acceptance as i.i.d. per draft and the bottom level's early
stopping as i.i.d. per position (docs/theory.md §1, §11). The n-gram level's confidence and its
drafts' survival come in runs (high while it copies, low after). Three measurements:

1. **Outcome-conditioned acceptance** (no models, seconds). On the recorded verifications of
   ``bench/results/estimator-cpu.json`` (static single-draft configurations, 128 tokens per
   prompt, ``bench/estimator.py``), for each trace: the committed tokens per target pass, the
   i.i.d. prediction ``sum_{k<=T} a^k`` with the trace's own rate ``a`` (accepted / tested, the
   online estimator's count), and the prediction of a two-state Markov model in which the rate
   depends on whether the previous verification accepted every draft (``a_full``,
   ``a_partial``, each the trace's own count; stationary mix of the two states). Both use
   hindsight rates, so the comparison is of the models' shapes, not of estimation.
2. **Calibration replay** (the target's continuations of the profile's calibration prompts, as
   the profiler draws them). A single draft ``drafter -> target`` with draft length ``T`` and
   stopping threshold ``c`` replayed on that text exactly in expectation: each cycle starts where
   the previous one ended (a distribution over positions), the drafter drafts while its
   confidence (the engine's) is at least ``c`` (at most ``T``), and each draft survives with the
   overlap of the two models at its position (0/1 greedy). Greedy, the replay is the engine's
   process on that text (up to the stop decisions after a rejection, which the replay takes
   from the text). The expected cycle cost (the profile's cost rows) over the expected committed
   tokens is the replay's latency. Against it: ``hierspec.evaluate`` with the profile's marginal
   rates (what the planner and ``choose_min_draft_confidence`` use), and a two-regime hidden
   Markov model of the positions (below). Reported: each model's error on the grid and the true
   (replay) latency of the ``(c, T)`` it would pick against the replay's best.
3. **A two-regime model** (the shape the correlation suggests): a hidden regime per position
   (a Markov chain with transition matrix ``P``), in regime ``z`` the drafter drafts with
   probability ``rho_z`` and its draft survives with probability ``a_z``; fitted by EM
   (Baum-Welch) per threshold on the same text, evaluated exactly (the cycles' start regimes form
   a Markov chain; renewal-reward over its stationary law). A comparator here, not in the library.

    OMP_NUM_THREADS=1 python bench/correlation.py                # both modes (~10 min)
    OMP_NUM_THREADS=1 python bench/correlation.py --modes greedy
    python bench/correlation.py --traces-only                    # part 1 only (seconds)

Writes bench/results/correlation-cpu.json. The profiles are the family's cached ones (those
``bench/e2e.py`` and ``hierspec generate`` plan from); a missing one is an error, not measured
here.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from harness import SAMPLING_MODES, Report, cached_family_profile, format_table

import hierspec
from hierspec.sampling import SamplingConfig

RESULTS = Path(__file__).parent / "results"
MAX_DRAFT_LENGTH = 16


# --- 1. outcome-conditioned acceptance on recorded traces ------------------------------------


def geometric_outputs(rate: float, draft_length: int) -> float:
    """E[committed per verification] of a batch of ``draft_length`` i.i.d. drafts:
    ``sum_{k=0}^{T} rate^k``."""
    return sum(rate**k for k in range(draft_length + 1))


def trace_predictions(trace: dict[str, Any]) -> dict[str, Any]:
    """Realised committed tokens per target pass of one single-draft trace and the i.i.d. and
    outcome-conditioned predictions from the trace's own rates (module docstring, part 1)."""
    (draft_length,) = trace["draft_lengths"]
    target = trace["chain"][-1]
    # rows: [drafter, verifier, tested, accepted, batch_length, token, target_pass]
    rows = [row for row in trace["verifications"] if row[1] == target]
    counts = {"all": [0, 0], "full": [0, 0], "partial": [0, 0]}  # accepted, tested
    state = None
    for _, _, tested, accepted, batch, _, _ in rows:
        for key in ("all", state):
            if key is not None:
                counts[key][0] += accepted
                counts[key][1] += tested
        state = "full" if accepted == batch else "partial"

    def rate(key: str) -> float | None:
        accepted, tested = counts[key]
        return accepted / tested if tested else None

    realised = sum(row[3] + 1 for row in rows) / len(rows)
    iid = geometric_outputs(rate("all"), draft_length)
    a_full = rate("full") if rate("full") is not None else rate("all")
    a_partial = rate("partial") if rate("partial") is not None else rate("all")
    to_full = (a_full**draft_length, a_partial**draft_length)  # P(next full | full), (| partial)
    pi_full = to_full[1] / (1.0 - to_full[0] + to_full[1])
    markov = pi_full * geometric_outputs(a_full, draft_length) + (
        1.0 - pi_full
    ) * geometric_outputs(a_partial, draft_length)
    return {
        "mode": trace["mode"],
        "category": trace["category"],
        "chain": trace["chain"],
        "draft_length": draft_length,
        "verifications": len(rows),
        "rate": rate("all"),
        "rate_after_full": rate("full"),
        "rate_after_partial": rate("partial"),
        "realised": realised,
        "iid": iid,
        "markov": markov,
        "iid_error": iid / realised - 1.0,
        "markov_error": markov / realised - 1.0,
    }


def traces_part(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    rows = [trace_predictions(t) for t in data["traces"] if len(t["chain"]) == 2]
    summary = {}
    for mode in sorted({row["mode"] for row in rows}):
        mine = [row for row in rows if row["mode"] == mode]
        summary[mode] = {
            model: {
                "mean_abs_error": float(np.mean([abs(row[f"{model}_error"]) for row in mine])),
                "worst_error": max((row[f"{model}_error"] for row in mine), key=abs),
            }
            for model in ("iid", "markov")
        }
    return {"source": str(path), "summary": summary, "traces": rows}


# --- 2. calibration replay --------------------------------------------------------------------


def calibration_texts(family: Any, drafter: str, sampling: SamplingConfig, profile: Any):
    """Per calibration prompt of the profile (the profiler's prompts, continuation lengths and
    seeds): the drafter's confidence ``[G]`` and the drafter/target overlap ``[G]`` (float64
    numpy) on the target's continuation."""
    from hierspec.cli.candidates import calibration_messages
    from hierspec.levels import as_levels
    from hierspec.profiler.acceptance import calibration_passes, overlap
    from hierspec.prompts import prompt_token_ids

    config = profile.extra["metadata"]["config"]
    names = list(family.names)
    levels = as_levels([family.models[names.index(drafter)], family.models[-1]])
    prompts = prompt_token_ids(
        calibration_messages(profile.extra["acceptance_details"]["prompts"]),
        family.tokenizer,
        levels[-1].vocab_size,
    )
    passes = calibration_passes(
        levels, prompts, sampling, config["calibration_tokens"], seed=config["seed"]
    )
    return [
        (confidences[0].numpy(), overlap(probs[0], probs[1]).numpy())
        for probs, confidences in passes
    ]


def replay(texts, drafter_costs, target_costs, threshold: float, draft_length: int):
    """``(latency, E[committed], E[cycle cost])`` per cycle of ``drafter -> target`` replayed on
    ``texts`` in expectation (module docstring, part 2)."""
    total_cost = total_output = 0.0
    for confidence, overlap in texts:
        length = len(confidence)
        start = np.zeros(length + draft_length + 2)
        start[0] = 1.0
        for position in range(length - draft_length):  # cycles that fit in the text
            weight = start[position]
            if weight == 0.0:
                continue
            batch = 0
            while batch < draft_length and confidence[position + batch] >= threshold:
                batch += 1
            passes = min(batch + 1, draft_length)
            total_cost += weight * (
                drafter_costs[1] + (passes - 1) * drafter_costs[0] + target_costs[batch]
            )
            survive = 1.0  # P(drafts 0..k-1 accepted)
            for accepted in range(batch + 1):
                p = survive * (1.0 - overlap[position + accepted]) if accepted < batch else survive
                total_output += weight * p * (accepted + 1)
                start[position + accepted + 1] += weight * p
                if accepted < batch:
                    survive *= overlap[position + accepted]
    return total_cost / total_output


# --- 3. a two-regime hidden Markov model -------------------------------------------------------


def fit_regimes(texts, threshold: float, iterations: int = 200) -> dict[str, Any]:
    """EM for two regimes: ``rho[z]`` (P(confidence >= threshold)), ``a[z]`` (mean overlap of the
    drafts made), ``P`` (regime transitions per position). Overlaps enter as soft outcomes."""
    regimes = 2
    sequences = [(confidence >= threshold, overlap) for confidence, overlap in texts]
    rho = np.array([0.4, 0.95]) if threshold > 0 else np.ones(regimes)
    acceptance = np.array([0.2, 0.9])
    transition = np.array([[0.9, 0.1], [0.1, 0.9]])
    initial = np.full(regimes, 0.5)
    log_likelihood = -math.inf
    for _ in range(iterations):
        drafted = np.zeros(regimes)
        weight = np.zeros(regimes)
        survived = np.zeros(regimes)
        transitions = np.zeros((regimes, regimes))
        starts = np.zeros(regimes)
        log_likelihood = 0.0
        for drafts, overlap in sequences:
            emission = np.where(
                drafts[:, None],
                rho
                * acceptance ** overlap[:, None]
                * (1.0 - acceptance) ** (1.0 - overlap[:, None]),
                1.0 - rho,
            ).clip(1e-300)
            forward = np.zeros_like(emission)
            scale = np.zeros(len(drafts))
            forward[0] = initial * emission[0]
            for t in range(len(drafts)):
                if t > 0:
                    forward[t] = (forward[t - 1] @ transition) * emission[t]
                scale[t] = forward[t].sum()
                forward[t] /= scale[t]
            backward = np.ones_like(emission)
            for t in range(len(drafts) - 2, -1, -1):
                backward[t] = transition @ (emission[t + 1] * backward[t + 1]) / scale[t + 1]
            posterior = forward * backward
            posterior /= posterior.sum(axis=1, keepdims=True)
            log_likelihood += float(np.log(scale).sum())
            ahead = emission[1:] * backward[1:] / scale[1:, None]
            transitions += transition * (forward[:-1].T @ ahead)
            starts += posterior[0]
            drafted += (posterior * drafts[:, None]).sum(axis=0)
            weight += posterior.sum(axis=0)
            survived += (posterior * (drafts * overlap)[:, None]).sum(axis=0)
        if threshold > 0:
            rho = (drafted / weight).clip(1e-9, 1.0)
        acceptance = (survived / np.maximum(drafted, 1e-12)).clip(1e-9, 1.0 - 1e-9)
        transition = transitions / transitions.sum(axis=1, keepdims=True)
        initial = starts / starts.sum()
    return {
        "continue": rho.tolist(),
        "acceptance": acceptance.tolist(),
        "transition": transition.tolist(),
        "log_likelihood": log_likelihood,
    }


def regimes_cycles(fit: dict[str, Any], draft_length: int) -> dict[str, np.ndarray]:
    """One cycle of ``drafter -> target`` under the two-regime model, per regime at the cycle's
    first position (a forward recursion over the batch; state: regime, and the regime at the
    first rejection once there is one): ``stops[z, b]`` P(the batch has ``b`` drafts), ``output[z]``
    E[committed tokens] and ``next_start[z, z']`` the law of the next cycle's first regime."""
    rho = np.array(fit["continue"])
    acceptance = np.array(fit["acceptance"])
    transition = np.array(fit["transition"])
    regimes = len(rho)
    stops = np.zeros((regimes, draft_length + 1))
    output = np.zeros(regimes)
    next_start = np.zeros((regimes, regimes))
    for first in range(regimes):
        clean = np.zeros(regimes)  # P(no rejection yet, regime z at this position)
        clean[first] = 1.0
        rejected = np.zeros((regimes, regimes))  # [regime at the rejection, current regime]
        for position in range(draft_length):
            stop_clean = clean * (1.0 - rho)
            stop_rejected = rejected * (1.0 - rho)[None, :]
            stops[first, position] += stop_clean.sum() + stop_rejected.sum()
            output[first] += stop_clean.sum() * (position + 1)
            next_start[first] += stop_clean @ transition + stop_rejected.sum(axis=1) @ transition
            drafts = clean * rho
            output[first] += (drafts * (1.0 - acceptance)).sum() * (position + 1)
            rejected = (rejected * rho[None, :]) @ transition + np.diag(
                drafts * (1.0 - acceptance)
            ) @ transition
            clean = (drafts * acceptance) @ transition
        stops[first, draft_length] += clean.sum() + rejected.sum()
        output[first] += clean.sum() * (draft_length + 1)
        next_start[first] += clean @ transition + rejected.sum(axis=1) @ transition
    return {"stops": stops, "output": output, "next_start": next_start}


def regimes_latency(fit: dict[str, Any], drafter_costs, target_costs, draft_length: int) -> float:
    """Exact long-run latency of ``drafter -> target`` under the two-regime model: per start
    regime the cycle's expected cost and committed tokens (:func:`regimes_cycles`);
    renewal-reward over the stationary law of the start regimes."""
    cycles = regimes_cycles(fit, draft_length)

    def cycle_cost(batch: int) -> float:
        return (
            drafter_costs[1]
            + (min(batch + 1, draft_length) - 1) * drafter_costs[0]
            + (target_costs[batch])
        )

    cost = cycles["stops"] @ np.array([cycle_cost(batch) for batch in range(draft_length + 1)])
    values, vectors = np.linalg.eig(cycles["next_start"].T)
    stationary = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    stationary /= stationary.sum()
    return float(stationary @ cost / (stationary @ cycles["output"]))


class RegimeFilter:
    """The two-regime model run online (a comparator, not in the library): the belief over the
    regime at the next text position, updated from what the engine sees of each cycle of
    ``drafter -> target``, and the expected committed tokens of the next cycle.

    ``fits``: per early-stopping threshold, :func:`fit_regimes` on the calibration text (regime
    0 the low-acceptance one at every threshold, so a belief carries over a threshold change).
    Per cycle at threshold ``c`` of ``drafted`` drafts (batch of at most ``draft_length``) of
    which the first ``accepted`` were accepted, the committed positions are observed in order:
    each accepted draft (drafted, accepted), then the rejected draft (drafted, rejected) or, when
    all drafts were accepted, the stop (not drafted; unobserved when the batch was full: the
    bonus token's position); one regime transition per position.
    """

    def __init__(self, fits: dict[float, dict[str, Any]]) -> None:
        self.fits = fits
        self.belief: np.ndarray | None = None
        self._cycles: dict[tuple[float, int], dict[str, np.ndarray]] = {}

    def parameters(self, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(continue, acceptance, transition)`` of the fit at ``threshold``."""
        fit = self.fits[threshold]
        return np.array(fit["continue"]), np.array(fit["acceptance"]), np.array(fit["transition"])

    def start(self, threshold: float) -> np.ndarray:
        """The belief, the fit's stationary law before the first observation."""
        if self.belief is None:
            _, _, transition = self.parameters(threshold)
            values, vectors = np.linalg.eig(transition.T)
            stationary = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
            self.belief = stationary / stationary.sum()
        return self.belief

    def forecast(self, threshold: float, draft_length: int) -> float:
        """E[committed tokens] of the next cycle at ``threshold`` and ``draft_length``."""
        key = (threshold, draft_length)
        if key not in self._cycles:
            self._cycles[key] = regimes_cycles(self.fits[threshold], draft_length)
        return float(self.start(threshold) @ self._cycles[key]["output"])

    def observe(self, threshold: float, drafted: int, draft_length: int, accepted: int) -> None:
        rho, acceptance, transition = self.parameters(threshold)
        belief = self.start(threshold)
        emissions = [rho * acceptance] * accepted
        if accepted < drafted:
            emissions.append(rho * (1.0 - acceptance))
        elif drafted < draft_length:
            emissions.append(1.0 - rho)
        else:
            emissions.append(np.ones_like(rho))
        for emission in emissions:
            belief = belief * emission.clip(1e-300)
            belief = (belief / belief.sum()) @ transition
        self.belief = belief


def replay_part(family: Any, mode: str, drafter: str, progress) -> dict[str, Any]:
    sampling = SAMPLING_MODES[mode]
    profile, path = cached_family_profile(family, sampling, MAX_DRAFT_LENGTH, 16)
    names = list(profile.model_names)
    drafter_index, target_index = names.index(drafter), len(names) - 1
    drafter_costs = profile.costs_ms[drafter_index]
    target_costs = profile.costs_ms[target_index]
    progress(f"[{mode}] calibration text: the target's continuations of the profile's prompts")
    texts = calibration_texts(family, drafter, sampling, profile)
    thresholds = [0.0] + [entry.min_draft_confidence for entry in profile.early_stopping or ()]
    grid = []
    fits = {}
    for threshold in thresholds:
        progress(f"[{mode}] threshold {threshold}: replay, EM fit, models")
        fit = fit_regimes(texts, threshold)
        fits[str(threshold)] = fit
        stopping = {} if threshold == 0 else profile.stopping_rates(threshold)
        rates = stopping.get("bottom_acceptance", profile.acceptance)
        rho = stopping.get("continue_rates", [1.0] * len(names))[drafter_index]
        marginal_rate = rates[drafter_index][target_index]
        pair_costs = [drafter_costs, target_costs]
        pair_acceptance = [[1.0, profile.acceptance[drafter_index][target_index]], [0.0, 1.0]]
        for draft_length in range(1, MAX_DRAFT_LENGTH + 1):
            marginal = hierspec.evaluate(
                pair_costs,
                pair_acceptance,
                [0, 1],
                [draft_length],
                continue_rates=[rho, 1.0],
                bottom_acceptance=[[1.0, marginal_rate], [0.0, 1.0]],
            ).latency
            grid.append(
                {
                    "threshold": threshold,
                    "draft_length": draft_length,
                    "replay": replay(texts, drafter_costs, target_costs, threshold, draft_length),
                    "iid_marginal": marginal,
                    "two_regime": regimes_latency(fit, drafter_costs, target_costs, draft_length),
                }
            )
    best = min(grid, key=lambda row: row["replay"])
    picks = {}
    for model in ("iid_marginal", "two_regime"):
        pick = min(grid, key=lambda row: row[model])
        errors = [row[model] / row["replay"] - 1.0 for row in grid]
        picks[model] = {
            "threshold": pick["threshold"],
            "draft_length": pick["draft_length"],
            "predicted": pick[model],
            "replay_latency": pick["replay"],
            "loss_vs_replay_best": pick["replay"] / best["replay"] - 1.0,
            "error_min": min(errors),
            "error_max": max(errors),
        }
    return {
        "profile": str(path),
        "drafter": drafter,
        "positions": int(sum(len(c) for c, _ in texts)),
        "replay_best": {
            "threshold": best["threshold"],
            "draft_length": best["draft_length"],
            "latency": best["replay"],
        },
        "picks": picks,
        "regime_fits": fits,
        "grid": grid,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--modes", nargs="+", choices=sorted(SAMPLING_MODES), default=sorted(SAMPLING_MODES)
    )
    parser.add_argument("--drafter", default="ngram", help="bottom level replayed (ngram)")
    parser.add_argument("--traces", type=Path, default=RESULTS / "estimator-cpu.json")
    parser.add_argument("--traces-only", action="store_true", help="part 1 only (no models)")
    parser.add_argument("--out", type=Path, default=RESULTS / "correlation-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    report = Report("correlation")
    results: dict[str, Any] = {"traces": traces_part(args.traces)}
    rows = []
    for mode, summary in results["traces"]["summary"].items():
        for model, values in summary.items():
            rows.append(
                [
                    mode,
                    model,
                    f"{values['mean_abs_error']:.1%}",
                    f"{values['worst_error']:+.1%}",
                ]
            )
    print("committed tokens per target pass, predicted vs realised (recorded traces):")
    print(format_table(["mode", "model", "mean |error|", "worst"], rows))
    if not args.traces_only:
        from hierspec.family import load_family

        family = load_family(prepare=False, progress=False)  # the profiles' candidate set
        results["replay"] = {
            mode: replay_part(family, mode, args.drafter, lambda line: print(line, flush=True))
            for mode in args.modes
        }
        rows = []
        for mode, part in results["replay"].items():
            best = part["replay_best"]
            rows.append(
                [
                    mode,
                    "replay (truth)",
                    f"c={best['threshold']} T={best['draft_length']}",
                    f"{best['latency']:.1f}",
                    "",
                    "",
                ]  # fmt: skip
            )
            for model, pick in part["picks"].items():
                rows.append(
                    [
                        mode,
                        model,
                        f"c={pick['threshold']} T={pick['draft_length']}",
                        f"{pick['replay_latency']:.1f}",
                        f"{pick['loss_vs_replay_best']:+.1%}",
                        f"{pick['error_min']:+.0%}..{pick['error_max']:+.0%}",
                    ]
                )
        print("single draft on the calibration text: each model's pick, its replayed latency")
        print(
            format_table(
                ["mode", "model", "pick", "ms/token", "vs best", "error over the grid"], rows
            )
        )
    report.write(args.out, results)


if __name__ == "__main__":
    main()
