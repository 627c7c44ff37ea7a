"""The float32 target's cost per pass, MKL (``F.linear``) against oneDNN prepacked (pack_for_cpu).

The profiler's cost of a pass over ``n`` new tokens after ``--context`` cached tokens (forward +
processing + truncate, through the same level wrapper the engine uses; bench/harness.py), the two
variants interleaved pass by pass (so machine load drifts hit both alike), one thread, median of
``--repeats``; the forward part is reported too. Also checks that
both variants give the same greedy tokens on the calibration text and reports the largest logit
difference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/packing.py   # writes bench/results/packing-cpu.json
"""

from __future__ import annotations

import argparse

import torch
from harness import RESULTS, Report, family_prompts, pass_costs

from hierspec.levels import TransformersLevel
from hierspec.packing import pack_for_cpu


@torch.inference_mode()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16])
    parser.add_argument("--context", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="family cache directory")
    parser.add_argument("--out", default=str(RESULTS / "packing-cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hierspec.family import load_target, load_tokenizer

    report = Report("packing")
    tokenizer = load_tokenizer(args.cache)
    plain = load_target(args.cache)
    packed = load_target(args.cache)
    layers = pack_for_cpu(packed)
    _, (text,) = family_prompts(tokenizer, "calibration", 1)
    if text.shape[1] < args.context + max(args.tokens):
        raise ValueError(
            f"calibration prompt has {text.shape[1]} tokens, need "
            f"{args.context + max(args.tokens)}: lower --context"
        )
    context = text[:, : args.context]
    new = text[:, args.context : args.context + max(args.tokens)]

    variants = {"mkl": plain, "onednn_packed": packed}
    measured = pass_costs(list(variants.values()), text, args.context, args.tokens, args.repeats)
    costs = dict(zip(variants, measured))
    medians = {name: dict(zip(cost.measured_n, cost.total_ms)) for name, cost in costs.items()}
    forward = {name: dict(zip(cost.measured_n, cost.forward_ms)) for name, cost in costs.items()}
    levels = {name: TransformersLevel(model) for name, model in variants.items()}
    for level in levels.values():
        level.append(context)
    logits = {name: level.append(new).float() for name, level in levels.items()}
    difference = float((logits["mkl"] - logits["onednn_packed"]).abs().max())
    same_argmax = bool((logits["mkl"].argmax(-1) == logits["onednn_packed"].argmax(-1)).all())

    print(
        f"float32 target, {args.context} cached tokens, {args.threads} thread(s), median of "
        f"{args.repeats}; {layers} linear layers packed"
    )
    print(f"{'tokens':>14} " + " ".join(f"{n:>7}" for n in args.tokens))
    for name, row in medians.items():
        print(f"{name + ' ms':>14} " + " ".join(f"{row[n]:7.1f}" for n in args.tokens))
    print(
        f"{'packed/mkl':>14} "
        + " ".join(f"{medians['onednn_packed'][n] / medians['mkl'][n]:7.2f}" for n in args.tokens)
    )
    print(
        f"max |logit difference| over {new.shape[1]} positions: {difference:.2e}; "
        f"same argmax: {same_argmax}"
    )
    report.write(
        args.out,
        {
            "config": vars(args),
            "packed_layers": layers,
            "cost_ms": {
                name: {str(n): value for n, value in row.items()} for name, row in medians.items()
            },
            "forward_ms": {
                name: {str(n): value for n, value in row.items()} for name, row in forward.items()
            },
            "max_abs_logit_difference": difference,
            "same_argmax": same_argmax,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
