"""Agreement and cost of every candidate of the bundled family against the target.

For each candidate (n-gram drafter, distilled drafts, bf16 target copy) on the held-out prompts
(:func:`hierspec.corpus.heldout_prompts`, never used for distillation) with the target's greedy
responses, on the response positions:
    greedy agreement   fraction of positions where the candidate's argmax is the target's;
    overlap            mean sum_x min(p_target(x), p_candidate(x)) at temperature 1 (the
                       probability that one drafted token is accepted by the target).
Cost: one forward pass processing n new tokens after 120 cached tokens (n = 1, 2, 4, 8), one
thread, median of repeats (rolled back after each pass).

    OMP_NUM_THREADS=1 .venv/bin/python bench/family.py   # writes bench/results/family-cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from hierspec import distill, family
from hierspec.levels import TransformersLevel


@torch.inference_mode()
def pass_cost_ms(model, context: torch.Tensor, sizes: list[int], repeats: int) -> dict[int, float]:
    level = TransformersLevel(model) if isinstance(model, torch.nn.Module) else model
    level.reset()
    level.append(context)
    base = level.length
    new_tokens = context[:, : max(sizes)]
    costs = {}
    for size in sizes:
        times = []
        for repeat in range(repeats + 1):
            start = time.perf_counter()
            level.append(new_tokens[:, :size])
            elapsed = time.perf_counter() - start
            level.truncate(base)
            if repeat:  # the first is a warm-up
                times.append(elapsed * 1e3)
        costs[size] = statistics.median(times)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="bench/results/family-cpu.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    fam = family.load_family(args.cache)
    target = fam.target
    data = distill.teacher_data(fam.cache_dir, split="heldout", target=target)
    context = data.sequences[0][None, :120]
    sizes = [1, 2, 4, 8]
    rows = []
    for name, model in zip(fam.names, fam.models):
        measured = distill.evaluate_agreement(model, target, data) if model is not target else None
        costs = pass_cost_ms(model, context, sizes, args.repeats)
        rows.append(
            {
                "name": name,
                "cost_ms": costs,
                "greedy_agreement": None if measured is None else measured.greedy_agreement,
                "overlap": None if measured is None else measured.overlap,
                "positions": None if measured is None else measured.num_positions,
            }
        )
        agree = "-" if measured is None else f"{measured.greedy_agreement:.3f}"
        over = "-" if measured is None else f"{measured.overlap:.3f}"
        print(
            f"{name:>12}  agreement {agree:>6}  overlap {over:>6}  "
            + "  ".join(f"c({n})={costs[n]:7.2f}ms" for n in sizes),
            flush=True,
        )
    records = {}
    for spec in distill.DEFAULT_LADDER:
        records[spec.name] = distill.draft_record(spec, fam.cache_dir)
    result = {
        "device": platform.processor() or platform.machine(),
        "threads": 1,
        "load_average": os.getloadavg(),
        "versions": family.environment_note(),
        "note": "target = SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32",
        "eval": {"prompts": len(data.sequences), "response_positions": rows[0]["positions"]},
        "candidates": rows,
        "distillation": records,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
