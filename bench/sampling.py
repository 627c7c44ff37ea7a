"""Token drawing: hierspec's inverse CDF against the exponential race and torch.multinomial.

``hierspec.sampling.sample`` draws every token of the bottom level at temperature > 0 (one call
per draft), so its cost is paid per draft on top of the level's forward pass: about 1 ms per row
at a 49k vocabulary with ``vocab`` exponentials, as much as the n-gram level's own pass.

Two measurements, one torch thread:

    per row      median time of one draw from a ``[rows, vocab]`` softmax row, vocab 49152 (the
                 bundled family's), rows 1 and 8: ``inverse cdf`` (``sample``, one float64
                 uniform per row, float64 cumulative sums, ``searchsorted``), ``exponential
                 race`` (``argmax(probs / E)``, ``E ~ Exp(1)`` per entry: the method ``sample``
                 used before, and ``hierspec.verify``'s resampling), ``torch.multinomial``;
    end to end   (``--prompts N`` > 0) the bundled family at temperature 1, 128 new tokens per
                 prompt (held-out, one per category, then ungrounded), ``ngram -> target`` T=2
                 and ``ngram -> target-bf16 -> target`` T=2,5, each prompt decoded with both
                 drawing methods in alternating order on the same seed: decode ms/token and the
                 mean speed ratio race / inverse CDF with its standard error (the two methods use
                 the random stream differently, so the texts differ: the ratio carries their
                 spread besides the timing noise); in the same run, per prompt and seed,
                 transformers' prompt lookup decoding (``prompt_lookup_num_tokens`` = k,
                 ``--prompt-lookup-grid``, sampled like hierspec: temperature 1, no top-k/top-p)
                 on the same packed target, the nearest peer of the n-gram level: each chain's
                 speed ratio with the inverse CDF against the best k (mean decode time over the
                 prompts), and its per-prompt mean with standard error.

    OMP_NUM_THREADS=1 python bench/sampling.py                # both (~12 min, 2-core CPU)
    OMP_NUM_THREADS=1 python bench/sampling.py --prompts 0    # per row only (seconds)

Writes bench/results/sampling-cpu.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from harness import (
    RESULTS,
    Report,
    add_prompt_lookup_grid,
    format_table,
    hf_generate,
    hf_prefill_seconds,
    standard_error,
    start_family_benchmark,
)

import hierspec.sampling
from hierspec import HierarchicalDecoder
from hierspec.sampling import SamplingConfig

VOCAB = 49152
TOKENS = 128


def exponential_race(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``argmax_v probs[v] / E[v]``, ``E ~ Exp(1)`` i.i.d. (clamped above 0): ``sample`` before."""
    exponentials = torch.empty_like(probs, dtype=torch.float32).exponential_(generator=generator)
    exponentials.clamp_min_(torch.finfo(torch.float32).tiny)
    return (probs / exponentials).argmax(dim=-1, keepdim=True)


def multinomial(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(probs, 1, generator=generator)


METHODS = {
    "inverse cdf": hierspec.sampling.sample,
    "exponential race": exponential_race,
    "torch.multinomial": multinomial,
}


def per_row(repeats: int) -> list[dict[str, Any]]:
    generator = torch.Generator().manual_seed(0)
    rows_out = []
    for rows in (1, 8):
        probs = torch.softmax(torch.randn(rows, VOCAB, generator=generator) * 3, dim=-1)
        for name, method in METHODS.items():
            method(probs, generator)  # warm-up
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                method(probs, generator)
                times.append(time.perf_counter() - started)
            rows_out.append({"method": name, "rows": rows, "ms": 1e3 * statistics.median(times)})
    return rows_out


def end_to_end(family, prompts: int, lookup_grid: list[int], log) -> dict[str, Any]:
    from adaptive import select_prompts

    models = dict(zip(family.names, family.models))
    chains = {
        "ngram -> target T=2": ([models["ngram"], models["target"]], [2]),
        "ngram -> target-bf16 -> target T=2,5": (
            [models["ngram"], models["target-bf16"], models["target"]],
            [2, 5],
        ),
    }
    decoders = {
        name: HierarchicalDecoder(chain, lengths) for name, (chain, lengths) in chains.items()
    }
    chosen = select_prompts(family.tokenizer, 1, max(0, prompts - 8))[:prompts]
    methods = {"inverse cdf": hierspec.sampling.sample, "exponential race": exponential_race}
    for decoder in decoders.values():  # warm-up
        decoder.generate(chosen[0]["input_ids"][:, :64], max_new_tokens=8, eos_token_id=None)
    times: dict[str, dict[str, list[float]]] = {n: {m: [] for m in methods} for n in decoders}
    target = models["target"]
    pad_token_id = family.tokenizer.pad_token_id or 0
    sampling = SamplingConfig(temperature=1.0)
    warm_up = chosen[0]["input_ids"][:, :64]
    hf_generate(target, warm_up, sampling, 8, 0, pad_token_id, prompt_lookup_num_tokens=2)
    lookup: dict[int, list[float]] = {k: [] for k in lookup_grid}
    try:
        for index, prompt in enumerate(chosen):
            input_ids = prompt["input_ids"]
            # transformers' prompt lookup: decode time = wall - one prefill of the target.
            prefill_s = hf_prefill_seconds(target, input_ids)
            for k in lookup_grid:
                started = time.perf_counter()
                sequences = hf_generate(
                    target,
                    input_ids,
                    sampling,
                    TOKENS,
                    1000 + index,
                    pad_token_id,
                    prompt_lookup_num_tokens=k,
                )
                wall = time.perf_counter() - started
                new_tokens = sequences.shape[1] - input_ids.shape[1]
                lookup[k].append(1e3 * (wall - prefill_s) / new_tokens)
            order = list(methods) if index % 2 == 0 else list(reversed(methods))
            for name, decoder in decoders.items():
                for method in order:
                    hierspec.sampling.sample = methods[method]  # draw() calls it by name
                    stats = decoder.generate(
                        input_ids,
                        max_new_tokens=TOKENS,
                        temperature=1.0,
                        seed=1000 + index,
                        eos_token_id=None,
                    ).stats
                    times[name][method].append(1e3 * stats.decode_time_s / stats.new_tokens)
                log(
                    f"prompt {index + 1}/{len(chosen)} ({prompt['category']}) {name}: "
                    + ", ".join(f"{m} {times[name][m][-1]:.1f}" for m in methods)
                    + " ms/token"
                )
            log(
                f"prompt {index + 1}/{len(chosen)} prompt lookup: "
                + ", ".join(f"k={k} {lookup[k][-1]:.1f}" for k in lookup_grid)
                + " ms/token"
            )
    finally:
        hierspec.sampling.sample = methods["inverse cdf"]
    lookup_ms = {k: statistics.fmean(values) for k, values in lookup.items()}
    best_k = min(lookup_ms, key=lookup_ms.__getitem__)
    result: dict[str, Any] = {
        "prompt_lookup": {
            "decode_ms_per_token": {str(k): value for k, value in lookup_ms.items()},
            "best_k": best_k,
        }
    }
    for name, by_method in times.items():
        ratios = [r / i for r, i in zip(by_method["exponential race"], by_method["inverse cdf"])]
        versus_lookup = [p / i for p, i in zip(lookup[best_k], by_method["inverse cdf"])]
        result[name] = {
            "prompts": len(ratios),
            "decode_ms_per_token": {m: statistics.fmean(v) for m, v in by_method.items()},
            "speed_ratio_inverse_cdf_vs_race": statistics.fmean(ratios),
            "standard_error": standard_error(ratios),
            # Mean decode time of the best k over the prompts / this chain's (inverse CDF).
            "speed_ratio_vs_prompt_lookup": lookup_ms[best_k]
            / statistics.fmean(by_method["inverse cdf"]),
            "speed_ratio_vs_prompt_lookup_per_prompt": statistics.fmean(versus_lookup),
            "speed_ratio_vs_prompt_lookup_standard_error": standard_error(versus_lookup),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="draws timed per cell (200)")
    parser.add_argument(
        "--prompts", type=int, default=12, help="end-to-end prompts (12; 0: per row only)"
    )
    add_prompt_lookup_grid(parser, [2, 4, 10])
    parser.add_argument("--out", type=Path, default=RESULTS / "sampling-cpu.json")
    args = parser.parse_args()
    if args.repeats < 1 or args.prompts < 0:
        parser.error(
            f"--repeats must be >= 1 and --prompts >= 0, got {args.repeats}, {args.prompts}"
        )
    started = time.perf_counter()
    if args.prompts:  # one thread, the family (EOS off), the report and a timed log
        report, log, family = start_family_benchmark("sampling", 1, None, False)
    else:
        torch.set_num_threads(1)
        report = Report("sampling")
    rows = per_row(args.repeats)
    print(
        format_table(
            ("method", "rows", "ms per call"),
            [(r["method"], str(r["rows"]), f"{r['ms']:.3f}") for r in rows],
        )
    )
    results: dict[str, Any] = {"vocab": VOCAB, "per_row": rows}
    if args.prompts:
        results["end_to_end"] = end_to_end(family, args.prompts, args.prompt_lookup_grid, log)
        lookup = results["end_to_end"]["prompt_lookup"]
        print(
            "transformers prompt lookup: "
            + ", ".join(f"k={k} {v:.1f}" for k, v in lookup["decode_ms_per_token"].items())
            + f" ms/token (best k={lookup['best_k']})"
        )
        for name, entry in results["end_to_end"].items():
            if name == "prompt_lookup":
                continue
            print(
                f"{name}: race {entry['decode_ms_per_token']['exponential race']:.1f}, inverse "
                f"cdf {entry['decode_ms_per_token']['inverse cdf']:.1f} ms/token; speed ratio "
                f"{entry['speed_ratio_inverse_cdf_vs_race']:.3f}"
                + ("" if entry["standard_error"] is None else f" +- {entry['standard_error']:.3f}")
                + f"; vs prompt lookup (best k) {entry['speed_ratio_vs_prompt_lookup']:.3f}"
            )
    results["duration_s"] = time.perf_counter() - started
    report.write(args.out, results)


if __name__ == "__main__":
    main()
