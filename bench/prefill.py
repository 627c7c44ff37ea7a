"""Prompt prefill: what it costs each model and what planning for the whole request buys.

Every model of a chain prefills the prompt before the first draft, so a draft that pays per
token may not pay for a request: bench/e2e.py measured the temperature-1 plan (``target-bf16 ->
target``) at 1.24x the target's decode speed but 0.86x its wall time, the bf16 copy taking
6.5 s to prefill a 191-token prompt on this AVX2 host. Two changes answer it, and this benchmark
measures both on the bundled family, per sampling mode, one torch thread:

1. **The engine's prefill skips the vocabulary head** (``hierspec.protocol.prefill``: a
   transformers level computes logits of the last position only, the n-gram drafter builds no
   rows). Per model and held-out prompt: the prefill as the engine runs it now vs one ``append``
   over the prompt (the head on every position, what the engine ran before), medians of
   ``--repeats`` interleaved timings.
2. **The request planner** (``hierspec.planning.plan_request``): the chain and draft lengths
   with the least expected ``prefill + max_new_tokens x latency`` for the prompt's length, vs
   ``hierspec.plan``'s least latency per token (the decode plan). End to end on
   ``--num-prompts`` held-out prompts (never used for profiling), ``--max-new-tokens`` tokens
   each (EOS ignored), interleaved per prompt in a rotating order after a warm-up: the target
   alone, the decode plan, the request plan (per prompt), and transformers' prompt lookup
   decoding on the same target at each k of ``--prompt-lookup-grid`` (the best k in hindsight is
   its figure: generous to the peer). Wall time per new token, prompt prefill included, is the
   measure; the request plan's predicted wall time (``RequestPlan.total``) is compared with it.
   Greedy: every hierspec output must equal the target's greedy output.

The profile is the cached one ``hierspec generate`` plans from; one without measured prefill
costs (written before the profiler measured them) is measured again (``--reprofile`` forces it).

Usage:
    OMP_NUM_THREADS=1 python bench/prefill.py                  # both modes, about 35 min plus
                                                               # profiling (2 x 12 min if due)
    OMP_NUM_THREADS=1 python bench/prefill.py --modes temperature1 --num-prompts 4
    OMP_NUM_THREADS=1 python bench/prefill.py --quick --out /tmp/prefill.json  # smoke run
Writes bench/results/prefill-cpu.json (``summary`` first).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
from harness import (
    RESULTS,
    add_prompt_lookup_grid,
    compare_greedy,
    family_profile,
    family_prompts,
    format_table,
    hf_generate,
    start_family_benchmark,
)

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.levels import as_level
from hierspec.planning import has_prefill_costs, plan_for_prompt
from hierspec.profiler.timing import time_prefill
from hierspec.sampling import SamplingConfig

MODES = {"greedy": 0.0, "temperature1": 1.0}


def prefill_timings(family, prompts, repeats: int) -> dict[str, dict[str, float]]:
    """Per model: median seconds over prompts of the engine's prefill and of a full-logits
    ``append`` of each prompt (minus its last token, as the engine keeps one pending)."""
    levels = [as_level(model, name) for model, name in zip(family.models, family.names)]
    samples = {name: {"prefill": [], "append": []} for name in family.names}
    with torch.inference_mode():
        for input_ids in prompts:
            tokens = input_ids[:, :-1]
            per_prompt = {name: {"prefill": [], "append": []} for name in family.names}
            for repeat in range(repeats):
                for kind in ("prefill", "append") if repeat % 2 == 0 else ("append", "prefill"):
                    for name, level in zip(family.names, levels):
                        seconds = time_prefill(level, tokens, logits=kind == "append")
                        per_prompt[name][kind].append(seconds)
            for name in family.names:
                for kind in ("prefill", "append"):
                    samples[name][kind].append(statistics.median(per_prompt[name][kind]))
    return {
        name: {
            "prefill_ms": 1e3 * statistics.median(values["prefill"]),
            "append_ms": 1e3 * statistics.median(values["append"]),
            "saved": 1 - statistics.median(values["prefill"]) / statistics.median(values["append"]),
        }
        for name, values in samples.items()
    }


def describe(names, chain, draft_lengths) -> str:
    sizes = ",".join(map(str, draft_lengths))
    return " -> ".join(names[index] for index in chain) + (f" T={sizes}" if sizes else "")


def run_mode(family, mode: str, args, prompts, log) -> dict[str, Any]:
    sampling = SamplingConfig(temperature=MODES[mode])
    started = time.perf_counter()

    def load(refresh: bool):
        return family_profile(
            family, sampling, args.quick, args.max_draft_length, args.threads, args.profile_prompts,
            progress=not args.no_progress, refresh=refresh,
        )  # fmt: skip

    profile, path, measured = load(args.reprofile)
    if not has_prefill_costs(profile):
        log(f"[{mode}] profile {path} has no measured prefill costs: measuring it again")
        profile, path, measured = load(True)
    log(f"[{mode}] profile {path} ({'measured now' if measured else 'cached'}, "
        f"{time.perf_counter() - started:.0f} s)")  # fmt: skip
    names = profile.model_names
    decode_plan = hierspec.plan(
        profile.costs_ms, profile.acceptance, args.max_draft_length, model_names=names
    )
    target = len(names) - 1
    pad = family.tokenizer.pad_token_id or 0
    decoders: dict[tuple, HierarchicalDecoder] = {}

    def hierspec_run(chain, draft_lengths, input_ids, seed):
        key = (tuple(chain), tuple(draft_lengths))
        if key not in decoders:
            decoders[key] = HierarchicalDecoder(
                [family.models[index] for index in chain], list(draft_lengths)
            )
        output = decoders[key].generate(
            input_ids, args.max_new_tokens, temperature=sampling.temperature, seed=seed,
            eos_token_id=None,
        )  # fmt: skip
        return output.sequences, output.stats.wall_time_s, output.stats.prefill_time_s

    def lookup_run(k, input_ids, seed):
        started = time.perf_counter()
        sequences = hf_generate(
            family.models[target], input_ids, sampling, args.max_new_tokens, seed, pad,
            prompt_lookup_num_tokens=k,
        )  # fmt: skip
        return sequences, time.perf_counter() - started, None

    # warm-up: every kind of run once, short
    warm = prompts[0][:, :32]
    hierspec_run((target,), (), warm, 0)
    hierspec_run(decode_plan.chain, decode_plan.draft_lengths, warm, 0)
    for draft in range(target):
        hierspec_run((draft, target), (4,), warm, 0)
    for k in args.prompt_lookup_grid:
        lookup_run(k, warm, 0)
    per_prompt = []
    for index, input_ids in enumerate(prompts):
        seed = 1000 + index
        prompt_tokens = input_ids.shape[1]
        request = plan_for_prompt(
            profile, prompt_tokens, args.max_new_tokens, max_draft_length=args.max_draft_length
        )
        runs: dict[str, Any] = {
            "target": lambda ids, s: hierspec_run((target,), (), ids, s),
            "decode plan": lambda ids, s: hierspec_run(
                decode_plan.chain, decode_plan.draft_lengths, ids, s
            ),
            "request plan": lambda ids, s, r=request: hierspec_run(
                r.chain, r.draft_lengths, ids, s
            ),
        }
        for k in args.prompt_lookup_grid:
            runs[f"prompt lookup k={k}"] = lambda ids, s, k=k: lookup_run(k, ids, s)
        order = list(runs)
        shift = index % len(order)
        measured_runs: dict[str, Any] = {}
        outputs = {}
        for name in order[shift:] + order[:shift]:
            sequences, wall, prefill_s = runs[name](input_ids, seed)
            outputs[name] = sequences
            measured_runs[name] = {
                "wall_ms_per_token": 1e3 * wall / (sequences.shape[1] - prompt_tokens),
                "prefill_s": prefill_s,
            }
        if sampling.is_greedy:
            for name in ("decode plan", "request plan"):
                identical, mismatch = compare_greedy(
                    outputs[name], outputs["target"], prompt_tokens
                )
                measured_runs[name]["identical_to_target"] = identical
                measured_runs[name]["first_mismatch"] = mismatch
        entry = {
            "prompt_tokens": prompt_tokens,
            "request_plan": describe(names, request.chain, request.draft_lengths),
            "request_predicted_wall_ms_per_token": request.total / args.max_new_tokens,
            "decode_plan_predicted_wall_ms_per_token": request.decode_total / args.max_new_tokens,
            "runs": measured_runs,
        }
        per_prompt.append(entry)
        log(
            f"[{mode}] prompt {index + 1}/{len(prompts)} ({prompt_tokens} tokens): request plan "
            f"{entry['request_plan']}; "
            + ", ".join(
                f"{name} {run['wall_ms_per_token']:.1f}" for name, run in measured_runs.items()
            )
            + " ms/token"
        )

    def mean_wall(name: str) -> float:
        return statistics.fmean(entry["runs"][name]["wall_ms_per_token"] for entry in per_prompt)

    lookups = {
        f"prompt lookup k={k}": mean_wall(f"prompt lookup k={k}") for k in args.prompt_lookup_grid
    }
    best_lookup = min(lookups, key=lookups.get) if lookups else None
    request_wall = mean_wall("request plan")
    predicted = statistics.fmean(e["request_predicted_wall_ms_per_token"] for e in per_prompt)
    summary = {
        "request_plan_vs_decode_plan": mean_wall("decode plan") / request_wall,
        "request_plan_vs_target": mean_wall("target") / request_wall,
        "decode_plan_vs_target": mean_wall("target") / mean_wall("decode plan"),
        "request_plan_vs_prompt_lookup": None
        if best_lookup is None
        else lookups[best_lookup] / request_wall,
        "best_prompt_lookup": best_lookup,
        "request_plan_prediction_error": (predicted - request_wall) / request_wall,
    }
    if sampling.is_greedy:
        summary["greedy_outputs_identical_to_target"] = all(
            entry["runs"][name]["identical_to_target"]
            for entry in per_prompt
            for name in ("decode plan", "request plan")
        )
    return {
        "mode": mode,
        "sampling": {"temperature": sampling.temperature},
        "profile_path": str(path),
        "profile_prefill_ms": {
            name: {"prefill_tokens": d.get("prefill_tokens"), "prefill_ms": d.get("prefill_ms")}
            for name, d in zip(names, profile.extra.get("model_details", []))
        },
        "decode_plan": describe(names, decode_plan.chain, decode_plan.draft_lengths),
        "decode_plan_latency_ms": decode_plan.latency,
        "wall_ms_per_token": {
            name: mean_wall(name) for name in ["target", "decode plan", "request plan", *lookups]
        },
        "summary": summary,
        "prompts": per_prompt,
    }


def parse_arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--num-prompts", type=int, default=8, help="held-out prompts (8)")
    parser.add_argument("--max-new-tokens", type=int, default=128, help="new tokens per run (128)")
    add_prompt_lookup_grid(parser, [2, 10], optional=True, note="bench/e2e.py's picks")
    parser.add_argument("--repeats", type=int, default=3, help="prefill timings per prompt (3)")
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument("--profile-prompts", type=int, default=16)
    parser.add_argument("--reprofile", action="store_true", help="measure the profiles again")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="family cache directory")
    parser.add_argument("--out", type=Path, default=RESULTS / "prefill-cpu.json")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: a cheap profile (cached apart), 1 prompt, 8 tokens, 1 repeat",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.num_prompts, args.max_new_tokens, args.repeats = 1, 8, 1
    return args


def main(argv=None) -> int:
    args = parse_arguments(argv)
    started = time.perf_counter()
    report, log, family = start_family_benchmark(
        "prefill", args.threads, args.cache, not args.no_progress
    )
    heldout, prompts = family_prompts(family.tokenizer, "heldout", args.num_prompts)
    timings = prefill_timings(family, prompts, args.repeats)
    log(
        "prefill (engine vs head on every position), median over prompts: "
        + ", ".join(
            f"{name} {t['prefill_ms']:.0f} vs {t['append_ms']:.0f} ms"
            for name, t in timings.items()
        )
    )
    modes = [run_mode(family, mode, args, prompts, log) for mode in args.modes]
    rows = [
        [
            mode["mode"],
            mode["decode_plan"],
            f"{mode['wall_ms_per_token']['target']:.1f}",
            f"{mode['wall_ms_per_token']['decode plan']:.1f}",
            f"{mode['wall_ms_per_token']['request plan']:.1f}",
            f"{mode['summary']['request_plan_vs_decode_plan']:.2f}x",
            f"{mode['summary']['request_plan_vs_target']:.2f}x",
            "-"
            if mode["summary"]["request_plan_vs_prompt_lookup"] is None
            else f"{mode['summary']['request_plan_vs_prompt_lookup']:.2f}x",
            f"{mode['summary']['request_plan_prediction_error']:+.0%}",
        ]
        for mode in modes
    ]
    print(
        format_table(
            [
                "mode",
                "decode plan",
                "target",
                "decode plan",
                "request plan",
                "vs decode plan",
                "vs target",
                "vs prompt lookup",
                "prediction",
            ],
            rows,
        )  # fmt: skip
    )
    summary = {
        "prefill_saved_by_skipping_the_head": {
            name: timing["saved"] for name, timing in timings.items()
        },
        **{
            key: {mode["mode"]: mode["summary"][key] for mode in modes}
            for key in (
                "request_plan_vs_decode_plan",
                "request_plan_vs_target",
                "decode_plan_vs_target",
                "request_plan_vs_prompt_lookup",
                "request_plan_prediction_error",
            )
        },
    }
    greedy = [mode for mode in modes if mode["sampling"]["temperature"] == 0.0]
    if greedy:
        summary["greedy_outputs_identical_to_target"] = greedy[0]["summary"][
            "greedy_outputs_identical_to_target"
        ]
    report.write(
        args.out,
        {
            "summary": summary,
            "duration_s": time.perf_counter() - started,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "family": list(family.names),
            "prompts": [
                {"kind": p.kind, "name": p.name, "tokens": int(ids.shape[1])}
                for p, ids in zip(heldout, prompts)
            ],
            "prefill_ms_per_model": timings,
            "timing": "wall = whole generate call incl. the prompt prefill of every model in the "
            "chain, per new token; EOS ignored; runs interleaved per prompt after a warm-up",
            "modes": modes,
        },
    )
    log(f"wrote {args.out}")
    if greedy and not summary["greedy_outputs_identical_to_target"]:
        print("ERROR: a hierspec greedy output differs from the target's", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
