"""The float32 target's cost per pass, MKL (``F.linear``) against oneDNN prepacked (pack_for_cpu).

One forward pass of ``n`` new tokens after ``--context`` cached tokens, through the same level
wrapper the engine uses, rolled back after each pass; the two variants interleaved pass by pass
(so machine load drifts hit both alike), one thread, median of ``--repeats``. Also checks that
both variants give the same greedy tokens on the calibration text and reports the largest logit
difference.

    OMP_NUM_THREADS=1 .venv/bin/python bench/packing.py   # writes bench/results/packing-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hierspec import corpus, family
from hierspec.levels import TransformersLevel
from hierspec.packing import pack_for_cpu
from hierspec.planning import write_json
from hierspec.profiler import machine_info


@torch.inference_mode()
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8, 12, 16])
    parser.add_argument("--context", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="family cache directory")
    parser.add_argument("--out", default="bench/results/packing-cpu.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    tokenizer = family.load_tokenizer(args.cache)
    plain = family.load_target(args.cache)
    packed = family.load_target(args.cache)
    layers = pack_for_cpu(packed)
    text = corpus.chat_input_ids(tokenizer, corpus.calibration_prompts(1)[0].message)
    if text.shape[1] < args.context + max(args.tokens):
        raise ValueError(
            f"calibration prompt has {text.shape[1]} tokens, need "
            f"{args.context + max(args.tokens)}: lower --context"
        )
    context = text[:, : args.context]
    new = text[:, args.context : args.context + max(args.tokens)]

    levels = {"mkl": TransformersLevel(plain), "onednn_packed": TransformersLevel(packed)}
    for level in levels.values():
        level.append(context)
    times: dict[str, dict[int, list[float]]] = {
        name: {n: [] for n in args.tokens} for name in levels
    }
    for repeat in range(args.repeats + 1):  # the first round warms up
        for n in args.tokens if repeat % 2 == 0 else args.tokens[::-1]:
            for name, level in levels.items():
                started = time.perf_counter()
                level.append(new[:, :n])
                elapsed = time.perf_counter() - started
                level.truncate(args.context)
                if repeat:
                    times[name][n].append(elapsed)
    medians = {
        name: {n: 1e3 * statistics.median(values) for n, values in per_n.items()}
        for name, per_n in times.items()
    }

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
    report = {
        "command": "OMP_NUM_THREADS=1 python bench/packing.py",
        "config": vars(args),
        "machine": machine_info(),
        "packed_layers": layers,
        "cost_ms": {
            name: {str(n): value for n, value in row.items()} for name, row in medians.items()
        },
        "max_abs_logit_difference": difference,
        "same_argmax": same_argmax,
    }
    write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
