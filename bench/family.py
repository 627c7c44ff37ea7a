"""Agreement and cost of every candidate of the bundled family against the target.

For each candidate (n-gram drafter, distilled drafts, bf16 target copy) on the held-out prompts
(:func:`hierspec.family.corpus.heldout_prompts`, never used for distillation) with the target's
greedy responses, on the response positions:
    greedy agreement   fraction of positions where the candidate's argmax is the target's;
    overlap            mean sum_x min(p_target(x), p_candidate(x)) at temperature 1 (the
                       probability that one drafted token is accepted by the target).
Cost: the profiler's cost of a pass over n new tokens after 120 cached tokens (n = 1, 2, 4, 8;
forward + processing + truncate, the forward part reported too; bench/harness.py), one thread,
median of repeats.

    OMP_NUM_THREADS=1 .venv/bin/python bench/family.py   # writes bench/results/family-cpu.json
"""

from __future__ import annotations

import argparse

import torch
from harness import RESULTS, Report, pass_costs

from hierspec.family import load_family
from hierspec.family.distill import DEFAULT_LADDER, draft_record, evaluate_agreement
from hierspec.family.teacher import teacher_data

CONTEXT_TOKENS = 120
SIZES = [1, 2, 4, 8]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(RESULTS / "family-cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = Report("family")
    family = load_family(args.cache)
    target = family.target
    data = teacher_data(family.cache_dir, split="heldout", target=target)
    context = data.sequences[0][None, : CONTEXT_TOKENS + max(SIZES)]
    rows = []
    for name, model in zip(family.names, family.models):
        measured = evaluate_agreement(model, target, data) if model is not target else None
        (costs,) = pass_costs([model], context, CONTEXT_TOKENS, SIZES, args.repeats)
        rows.append(
            {
                "name": name,
                "cost_ms": dict(zip(costs.measured_n, costs.total_ms)),
                "forward_ms": dict(zip(costs.measured_n, costs.forward_ms)),
                "greedy_agreement": None if measured is None else measured.greedy_agreement,
                "overlap": None if measured is None else measured.overlap,
                "positions": None if measured is None else measured.num_positions,
            }
        )
        agree = "-" if measured is None else f"{measured.greedy_agreement:.3f}"
        over = "-" if measured is None else f"{measured.overlap:.3f}"
        print(
            f"{name:>12}  agreement {agree:>6}  overlap {over:>6}  "
            + "  ".join(f"c({n})={costs.cost_at(n):7.2f}ms" for n in SIZES),
            flush=True,
        )
    report.write(
        args.out,
        {
            "threads": 1,
            "note": "target = SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32",
            "eval": {"prompts": len(data.sequences), "response_positions": rows[0]["positions"]},
            "candidates": rows,
            "distillation": {
                spec.name: draft_record(spec, family.cache_dir) for spec in DEFAULT_LADDER
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
