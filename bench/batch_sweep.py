"""One draft + the target over a range of draft lengths T: measured against the latency model.

For each T, hierspec decodes the first ``--num-prompts`` held-out prompts (the benchmark's, see
bench/e2e.py) with ``draft -> target``; the target alone runs too. Reported per T, summed over
prompts: decode ms per new token, and tokens committed per target pass, against two predictions
from the cached profile (the same profile bench/e2e.py and ``hierspec generate`` use):

    iid           ``hierspec.evaluate``: every draft accepted independently with the profile's
                  rate ``a`` (docs/policy.md), tokens per target pass ``(1 - a^(T+1)) / (1 - a)``;
    by position   the profile's acceptance by position ``c_k`` (P(draft k accepted | the drafts
                  before it were)): tokens per target pass ``1 + sum_k prod_{i<=k} c_i``. The cost
                  of one cycle does not depend on acceptance for one draft, so its latency is the
                  iid latency scaled by the ratio of tokens per target pass.

Where the two disagree, acceptance is not i.i.d. (runs of accepted drafts: an n-gram drafter
copying from the prompt) and the measurement says which describes the engine.

    OMP_NUM_THREADS=1 .venv/bin/python bench/batch_sweep.py
    # writes bench/results/batch-sweep-cpu.json
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from harness import RESULTS, Report, family_prompts

import hierspec
from hierspec import HierarchicalDecoder
from hierspec.cli.candidates import candidates_profile, from_family
from hierspec.profiler import ProfilerConfig
from hierspec.sampling import SamplingConfig


def tokens_per_target_pass_by_position(conditional: list[float | None], draft_length: int) -> float:
    """``1 + sum_{k=1..T} prod_{i<=k} c_i`` (a missing ``c_i``: no window reached it; stop)."""
    total, run = 1.0, 1.0
    for rate in conditional[:draft_length]:
        if rate is None:
            raise ValueError(f"the profile has no acceptance by position up to T={draft_length}")
        run *= rate
        total += run
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draft", default="ngram", help="family name of the draft (ngram)")
    parser.add_argument(
        "--draft-lengths", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6, 8, 10, 12, 16]
    )
    parser.add_argument("--num-prompts", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--profile-prompts", type=int, default=16)
    parser.add_argument("--max-draft-length", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", default=None, help="family cache directory")
    parser.add_argument("--out", default=str(RESULTS / "batch-sweep-cpu.json"))
    args = parser.parse_args(argv)
    if max(args.draft_lengths) > args.max_draft_length:
        parser.error(f"--draft-lengths must be <= --max-draft-length {args.max_draft_length}")
    torch.set_num_threads(args.threads)

    from hierspec.family import load_family

    report = Report("batch_sweep")
    family = load_family(args.cache, progress=False)
    if args.draft not in family.names[:-1]:
        parser.error(f"--draft must be one of {list(family.names[:-1])}, got {args.draft!r}")
    sampling = SamplingConfig(temperature=args.temperature)
    config = dataclasses.replace(
        ProfilerConfig(),
        max_draft_length=args.max_draft_length,
        sampling=sampling,
        threads=args.threads,
    )
    profile, profile_path, measured_now = candidates_profile(
        from_family(family), config, args.profile_prompts, progress=False
    )
    draft, target = family.names.index(args.draft), len(family.names) - 1
    rate = profile.acceptance[draft][target]
    conditional = profile.extra["acceptance_details"]["by_position"][draft][target]
    _, prompts = family_prompts(family.tokenizer, "heldout", args.num_prompts)
    print(
        f"profile {profile_path} ({'measured now' if measured_now else 'cached'}); "
        f"{args.draft} -> target acceptance {rate:.3f}, by position "
        + " ".join(f"{c:.2f}" for c in conditional[: max(args.draft_lengths)] if c is not None)
    )

    def measure(models, draft_lengths) -> dict:
        decoder = HierarchicalDecoder(models, draft_lengths)
        decoder.generate(prompts[0][:, :32], max_new_tokens=4, temperature=args.temperature)  # warm
        decode = tokens = passes = 0.0
        for index, input_ids in enumerate(prompts):
            stats = decoder.generate(
                input_ids,
                max_new_tokens=args.max_new_tokens,
                temperature=args.temperature,
                seed=1000 + index,
            ).stats
            decode += stats.decode_time_s
            tokens += stats.new_tokens
            passes += stats.target_passes
        return {
            "decode_ms_per_token": 1e3 * decode / tokens,
            "new_tokens": int(tokens),
            "tokens_per_target_pass": tokens / passes,
        }

    started = time.perf_counter()
    target_alone = measure([family.target], [])
    target_predicted = hierspec.evaluate(profile.costs_ms, profile.acceptance, [target], []).latency
    rows = []
    for draft_length in args.draft_lengths:
        measured = measure([family.models[draft], family.target], [draft_length])
        iid = hierspec.evaluate(
            profile.costs_ms, profile.acceptance, [draft, target], [draft_length]
        )
        by_position = tokens_per_target_pass_by_position(conditional, draft_length)
        rows.append(
            {
                "draft_length": draft_length,
                **measured,
                "speedup_vs_target": target_alone["decode_ms_per_token"]
                / measured["decode_ms_per_token"],
                "predicted_iid_ms": iid.latency,
                "predicted_by_position_ms": iid.latency * iid.tokens_per_target_pass / by_position,
                "tokens_per_target_pass_iid": iid.tokens_per_target_pass,
                "tokens_per_target_pass_by_position": by_position,
            }
        )
        row = rows[-1]
        print(
            f"T={draft_length:2d}  measured {row['decode_ms_per_token']:6.1f} ms/token "
            f"({row['speedup_vs_target']:.2f}x), predicted iid {row['predicted_iid_ms']:6.1f}, "
            f"by position {row['predicted_by_position_ms']:6.1f}; tokens/target pass "
            f"{row['tokens_per_target_pass']:.2f} (iid {row['tokens_per_target_pass_iid']:.2f}, "
            f"by position {row['tokens_per_target_pass_by_position']:.2f})",
            flush=True,
        )

    best = min(rows, key=lambda row: row["decode_ms_per_token"])
    picks = {
        "iid": min(rows, key=lambda row: row["predicted_iid_ms"])["draft_length"],
        "by_position": min(rows, key=lambda row: row["predicted_by_position_ms"])["draft_length"],
        "measured": best["draft_length"],
    }

    def error(key: str) -> float:  # mean |relative error| of a prediction over the T grid
        return sum(abs(row[key] / row["decode_ms_per_token"] - 1) for row in rows) / len(rows)

    print(
        f"target alone: measured {target_alone['decode_ms_per_token']:.1f} ms/token, predicted "
        f"{target_predicted:.1f}; best T measured {picks['measured']}, picked by iid "
        f"{picks['iid']}, by position {picks['by_position']}; mean |error| iid "
        f"{error('predicted_iid_ms'):.1%}, by position {error('predicted_by_position_ms'):.1%} "
        f"({time.perf_counter() - started:.0f} s)"
    )
    report.write(
        args.out,
        {
            "config": vars(args),
            "profile": str(profile_path),
            "acceptance": rate,
            "acceptance_by_position": conditional,
            "target_alone": {**target_alone, "predicted_ms": target_predicted},
            "rows": rows,
            "picks": picks,
            "mean_abs_error": {
                "iid": error("predicted_iid_ms"),
                "by_position": error("predicted_by_position_ms"),
            },
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
