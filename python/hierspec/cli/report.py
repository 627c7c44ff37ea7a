"""What the commands print: a profile's costs and acceptance, and the report of ``hierspec
generate`` (measured next to predicted, per level)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from hierspec.adaptive import FALLBACK_PRIOR_STRENGTH
from hierspec.planning import Plan, Profile, RequestPlan, choose_min_draft_confidence

__all__ = [
    "GenerateReport",
    "LevelReport",
    "PlanChangeReport",
    "early_stopping_line",
    "format_profile",
    "print_generate_report",
]


def format_profile(result: Profile) -> str:
    """Costs at a few pass lengths and the acceptance matrix, as text."""
    names = result.model_names
    costs = result.costs_ms
    width = len(costs[0]) if costs and isinstance(costs[0], tuple) else 1
    shown = [n for n in (1, 2, 4, 8, 16, 32) if n <= width]
    name_width = max(len(name) for name in names)
    threads = result.extra.get("metadata", {}).get("threads", "?")
    lines = [
        f"cost of one pass over n tokens (ms), {threads} thread(s):",
        "  " + " " * name_width + "".join(f"{f'n={n}':>9}" for n in shown),
    ]
    for name, row in zip(names, costs):
        values = row if isinstance(row, tuple) else (row,) * width
        lines.append(f"  {name:<{name_width}}" + "".join(f"{values[n - 1]:9.2f}" for n in shown))
    temperature = result.extra.get("sampling", {}).get("temperature", "?")
    lines.append(f"acceptance[row drafts, column verifies] at temperature {temperature}:")
    lines.append("  " + " " * name_width + "".join(f"{name[:10]:>11}" for name in names))
    for i, name in enumerate(names):
        cells = "".join(
            f"{result.acceptance[i][j]:11.3f}" if j > i else f"{'-':>11}" for j in range(len(names))
        )
        lines.append(f"  {name:<{name_width}}{cells}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class LevelReport:
    """One level of the planned chain (or, adaptive, one candidate that ran): measured (engine
    counters, prefill excluded) next to what the profile predicts (``hierspec.evaluate``; ``None``
    when adaptive, whose chain changes). ``acceptance`` is the rate at which the level above
    accepted this level's drafts (``None`` for the target)."""

    model: str
    passes_per_token: float
    predicted_passes_per_token: float | None
    model_ms_per_token: float  # inside its forward passes (and catch-up and shadow passes)
    predicted_ms_per_token: float | None  # profile cost (forward + processing + truncate)
    acceptance: float | None
    profile_acceptance: float | None
    # adaptive: tokens it shadowed the chain on (while out of it) and its would-be drafts'
    # acceptance there
    shadow_tokens: int = 0
    shadow_acceptance: float | None = None


@dataclasses.dataclass(frozen=True)
class PlanChangeReport:
    """One switch of the adaptive decoder: at which new token, from which configuration to which,
    the acceptance estimates behind it, the learned factors on the profile's costs per model
    (empty without ``learn_costs``) and the engine's work per pass in them (``overhead_ms``, 0
    without ``learn_overhead``), the latencies (ms/token) it predicted and the measured /
    predicted ratios of the two configurations in the request so far (latency times ratio: the
    calibrated forecast; the decision compared those with ``AdaptiveConfig.calibrate``)."""

    token: int
    previous: str
    new: str
    acceptance: dict[str, float]
    previous_latency_ms: float
    predicted_latency_ms: float
    catch_up_ms: float
    cost_scales: dict[str, float] = dataclasses.field(default_factory=dict)
    previous_calibration: float = 1.0
    calibration: float = 1.0
    overhead_ms: float = 0.0


@dataclasses.dataclass(frozen=True)
class GenerateReport:
    """What ``hierspec generate`` measured (written with ``--json``).

    Latencies in ms per new token; ``decode_ms_per_token`` excludes the prompt prefill (what the
    planner predicts), ``tokens_per_second`` includes it. Baseline fields are ``None`` with
    ``--no-baseline``.
    """

    prompt: str
    text: str
    prompt_tokens: int
    new_tokens: int
    plan: dict[str, Any]
    profile_path: str | None
    sampling: dict[str, Any]
    seed: int
    wall_time_s: float
    tokens_per_second: float
    decode_ms_per_token: float
    predicted_ms_per_token: float
    baseline_wall_time_s: float | None
    baseline_tokens_per_second: float | None
    baseline_decode_ms_per_token: float | None
    speedup_vs_target: float | None  # tokens/s over the target alone's tokens/s
    identical_to_target: bool | None  # greedy only: same tokens as the target alone
    levels: tuple[LevelReport, ...]
    machine: dict[str, Any]
    adaptive: bool = False
    plan_history: tuple[PlanChangeReport, ...] = ()
    min_draft_confidence: float = 0.0  # the bottom level's early stopping at the start (0: none)
    # adaptive: the thresholds it re-plans among (one: fixed)
    min_draft_confidence_candidates: tuple[float, ...] = ()
    # adaptive: pseudo-observations each pair's profile rate counts as (empirical Bayes)
    prior_strengths: dict[str, float] = dataclasses.field(default_factory=dict)
    # where they come from (hierspec.adaptive.Replanner.prior_strength_source; "" when static)
    prior_strength_source: str = ""
    # the configuration the run started with, chosen for this prompt (request_plan_report)
    request_plan: dict[str, Any] = dataclasses.field(default_factory=dict)
    prefill_time_s: float | None = None  # the measured prompt prefill of the run


def request_plan_report(
    request: RequestPlan, names: Sequence[str], measured_prefill: bool
) -> dict[str, Any]:
    """The request plan as ``GenerateReport.request_plan``: the chosen configuration, its
    predicted prefill and total (ms) and the decode-optimal plan's total for the same request;
    ``prefill_costs`` says whether the profile measured the prefill or the cost table was
    extrapolated (:func:`hierspec.planning.has_prefill_costs`)."""
    return {
        "chain": [names[model] for model in request.chain],
        "draft_lengths": list(request.draft_lengths),
        "latency_ms": request.latency,
        "new_tokens": request.new_tokens,
        "prefill_ms": request.prefill_total,
        "total_ms": request.total,
        "decode_plan": request.decode_entry.describe(),
        "decode_plan_total_ms": request.decode_total,
        "prefill_costs": "measured" if measured_prefill else "extrapolated",
    }


def request_plan_line(request: dict[str, Any], prompt_tokens: int) -> str:
    """One line on a request plan (:func:`request_plan_report`) for a prompt of
    ``prompt_tokens`` tokens: the configuration, its predicted prefill and total, and why."""
    chain = " -> ".join(request["chain"])
    lengths = ",".join(str(length) for length in request["draft_lengths"])
    line = (
        f"for this prompt ({prompt_tokens} tokens) and {request['new_tokens']} new tokens:"
        f" {chain}" + (f" T={lengths}" if lengths else "") + f", predicted "
        f"{request['prefill_ms'] / 1e3:.2f} s prefill + {request['latency_ms']:.1f} ms/token = "
        f"{request['total_ms'] / 1e3:.2f} s"
    )
    if request["total_ms"] < request["decode_plan_total_ms"]:
        line += (
            f" (the fastest per token, {request['decode_plan']}: "
            f"{request['decode_plan_total_ms'] / 1e3:.2f} s; its drafts' prompt prefill does "
            f"not pay for itself over {request['new_tokens']} tokens)"
        )
    if request["prefill_costs"] == "extrapolated":
        line += "; prefill costs extrapolated from the cost table (--reprofile measures them)"
    return line


def print_generate_report(
    report: GenerateReport,
    best: Plan,
    profile_line: str,
    baseline_new_tokens: int | None,
    text_printed: bool = False,
) -> None:
    """Prints the text (unless ``text_printed``: it was streamed), ``profile_line``, the plan and
    the measured-against-predicted lines of ``report`` (the baseline's lines when
    ``baseline_new_tokens`` is not ``None``)."""
    if not text_printed:
        print(report.text)
    print()
    print(profile_line)
    print(best.format_table(unit="ms"))
    if report.request_plan:
        print(request_plan_line(report.request_plan, report.prompt_tokens))
    print()
    print(
        f"hierspec:     {report.new_tokens} tokens in {report.wall_time_s:.2f} s = "
        f"{report.tokens_per_second:.1f} tokens/s ("
        + ("" if report.prefill_time_s is None else f"prefill {report.prefill_time_s:.2f} s, ")
        + f"decode {report.decode_ms_per_token:.1f} "
        f"ms/token, predicted {report.predicted_ms_per_token:.1f}"
        + (", adaptive: per-request acceptance estimates)" if report.adaptive else ")")
    )
    if report.adaptive:
        stopping = (
            f"the bottom level stops below confidence {report.min_draft_confidence:g}"
            if report.min_draft_confidence > 0
            else "no early stopping"
        )
        if len(report.min_draft_confidence_candidates) > 1:
            candidates = ", ".join(f"{value:g}" for value in report.min_draft_confidence_candidates)
            stopping = f"starts with {stopping}, re-planned among thresholds {candidates}"
        if report.prior_strength_source == "profile":
            print(
                "prior strengths (observations a pair's profile rate counts as, from its "
                "per-prompt rates): "
                + ", ".join(f"{pair} {n0:.3g}" for pair, n0 in report.prior_strengths.items())
            )
        elif report.prior_strength_source == "fallback":
            print(
                f"prior strength {FALLBACK_PRIOR_STRENGTH:g} for every pair (the profile has no "
                "per-prompt rates to estimate them from; --reprofile measures them)"
            )
        print(f"plan history ({len(report.plan_history)} change(s), adaptive; {stopping}):")
        for change in report.plan_history:
            estimates = ", ".join(f"{pair} {rate:.2f}" for pair, rate in change.acceptance.items())
            scales = ", ".join(f"{name} x{scale:.2f}" for name, scale in change.cost_scales.items())
            print(
                f"  token {change.token}: {change.previous}  =>  {change.new}  (predicted "
                f"{change.previous_latency_ms:.1f} -> {change.predicted_latency_ms:.1f} ms/token, "
                f"catch-up {change.catch_up_ms:.1f} ms; acceptance {estimates}"
                + (f"; costs {scales}" if scales else "")
                + (f", engine {change.overhead_ms:.1f} ms/pass" if change.overhead_ms else "")
                + (
                    f"; measured/predicted x{change.previous_calibration:.2f} -> "
                    f"x{change.calibration:.2f}"
                    if (change.previous_calibration, change.calibration) != (1.0, 1.0)
                    else ""
                )
                + ")"
            )
    name_width = max(len(level.model) for level in report.levels)
    for index, level in enumerate(report.levels):
        label = (
            f"{level.model:<{name_width}}"
            if report.adaptive
            else f"level {index} " + (f"{level.model:<{name_width}}")
        )
        line = f"  {label}  {level.passes_per_token:.2f} passes/token"
        if level.predicted_passes_per_token is not None:
            line += f" (predicted {level.predicted_passes_per_token:.2f})"
        line += f", {level.model_ms_per_token:.1f} ms/token in passes"
        if level.predicted_ms_per_token is not None:
            line += f" (predicted {level.predicted_ms_per_token:.1f} incl. processing)"
        if level.acceptance is not None:
            line += f", accepted {level.acceptance:.2f}"
            if level.profile_acceptance is not None:
                line += f" (profile {level.profile_acceptance:.2f})"
        if level.shadow_tokens:
            line += (
                f"; shadowed the chain on {level.shadow_tokens} tokens, would-be "
                f"acceptance {level.shadow_acceptance:.2f}"
            )
        print(line)
    if baseline_new_tokens is not None:
        print(
            f"target alone: {baseline_new_tokens} tokens in "
            f"{report.baseline_wall_time_s:.2f} s = {report.baseline_tokens_per_second:.1f} "
            f"tokens/s (decode {report.baseline_decode_ms_per_token:.1f} ms/token, predicted "
            f"{best.target_latency:.1f})"
        )
        print(
            f"speedup over the target alone: {report.speedup_vs_target:.2f}x "
            f"(predicted {best.target_latency / report.predicted_ms_per_token:.2f}x)"
        )
        if report.identical_to_target is not None:
            identical = "yes" if report.identical_to_target else "NO"
            print(f"greedy output identical to the target alone: {identical}")


def early_stopping_line(profile: Profile, max_draft_length: int) -> str | None:
    """What :func:`hierspec.planning.choose_min_draft_confidence` makes of a profile with
    measured early-stopping rates (``None`` without them): the threshold the adaptive decoder
    takes by default and the plan at it."""
    if not profile.early_stopping:
        return None
    threshold, best = choose_min_draft_confidence(profile, max_draft_length)
    if threshold == 0.0:
        measured = ", ".join(f"{entry.min_draft_confidence:g}" for entry in profile.early_stopping)
        return f"early stopping: none predicted to pay (measured at {measured})"
    names = " -> ".join(profile.model_names[index] for index in best.chain)
    lengths = ",".join(str(length) for length in best.draft_lengths)
    return (
        f"early stopping: below confidence {threshold:g} predicted best: {names} T={lengths}, "
        f"{best.latency:.2f} ms/token (the adaptive decoder's default threshold)"
    )
