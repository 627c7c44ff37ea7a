"""Vocabulary-subset drafts (hierspec.VocabSubsetLevel) on the bundled family: cost and agreement.

For draft-6l and draft-12l (bfloat16, as the family runs them), each restricted to the
``size`` most frequent tokens (``hierspec.frequent_tokens``) for several sizes, and unrestricted:
    cost        the profiler's cost of a pass over n = 1 (and 4) new tokens after 120 cached
                tokens (forward + processing + truncate, bench/harness.py), relative to the
                float32 target's 1-token pass timed in the same interleaved loop; one thread,
                medians;
    agreement   greedy agreement and overlap sum_x min(p_target, p_draft) with the target on the
                held-out prompts' greedy responses
                (:func:`hierspec.family.distill.evaluate_agreement`);
    coverage    fraction of those held-out target tokens inside the subset (a token outside can
                never be agreed on).
Subsets come from the train-split teacher data only (the target's own responses to training
prompts, :mod:`hierspec.family.teacher`), never from the held-out text, counted two ways:
    responses          the response tokens;
    responses+top64    the response tokens plus the target's 64 most likely tokens at every
                       response position (its near-choices, more signal from the same data).
EOS (and the other special ids of the tokenizer) are always included. Both sources are compared
on draft-6l; the second is used for draft-12l and for the timed subsets.

    OMP_NUM_THREADS=1 .venv/bin/python bench/vocab_subset.py   # bench/results/vocab-subset-cpu.json
"""

from __future__ import annotations

import argparse
import time

import torch
from harness import RESULTS, Report, format_table, pass_costs

from hierspec import VocabSubsetLevel, frequent_tokens
from hierspec.family import load_family
from hierspec.family.distill import DEFAULT_CONFIG, evaluate_agreement
from hierspec.family.teacher import teacher_data

CONTEXT_TOKENS = 120
POINTS = [1, 4]
DRAFTS = ("draft-6l", "draft-12l")
SIZES = (2048, 4096, 8192)
COST_SOURCE = "responses+top64"  # the subsets timed, and the only source for the other drafts


def subset_sources(train, always: list[int], vocab_size: int) -> dict[str, dict[int, torch.Tensor]]:
    """``{source: {size: [size] token ids}}`` from the train-split teacher data ``train``."""
    responses = [seq[start:] for seq, start in zip(train.sequences, train.response_starts)]
    near_choices = [ids[start - 1 :] for ids, start in zip(train.topk_ids, train.response_starts)]
    sources = {"responses": responses, "responses+top64": responses + near_choices}
    return {
        name: {size: frequent_tokens(sequences, size, always, vocab_size) for size in SIZES}
        for name, sequences in sources.items()
    }


def _cell(row: dict | None, key: str) -> str:
    return "-" if row is None else f"{row[key]:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--out", default=str(RESULTS / "vocab-subset-cpu.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    report = Report("vocab_subset")
    started = time.time()
    family = load_family(args.cache, include=DRAFTS, prepare=False)
    target = family.target
    tokenizer = family.tokenizer
    vocab_size = len(tokenizer)
    always = sorted(set(tokenizer.all_special_ids))
    train = teacher_data(family.cache_dir, DEFAULT_CONFIG.data, "train", target=target)
    heldout = teacher_data(family.cache_dir, split="heldout", target=target)
    subsets = subset_sources(train, always, vocab_size)
    train_response_tokens = sum(
        int(seq.numel()) - start for seq, start in zip(train.sequences, train.response_starts)
    )
    heldout_tokens = torch.cat(
        [seq[start:] for seq, start in zip(heldout.sequences, heldout.response_starts)]
    )

    # Agreement (and coverage) for every draft x source x size.
    agreement_rows = []
    for name in DRAFTS:
        model = family.models[family.names.index(name)]
        full = evaluate_agreement(model, target, heldout)
        agreement_rows.append(
            {
                "draft": name,
                "source": None,
                "size": vocab_size,
                "coverage": 1.0,
                "greedy_agreement": full.greedy_agreement,
                "overlap": full.overlap,
            }
        )
        for source, by_size in subsets.items():
            if source != COST_SOURCE and name != DRAFTS[0]:
                continue  # the comparison of sources on the first draft only (run time)
            for size, ids in by_size.items():
                measured = evaluate_agreement(VocabSubsetLevel(model, ids), target, heldout)
                inside = torch.isin(heldout_tokens, ids).double().mean().item()
                agreement_rows.append(
                    {
                        "draft": name,
                        "source": source,
                        "size": size,
                        "coverage": inside,
                        "greedy_agreement": measured.greedy_agreement,
                        "overlap": measured.overlap,
                    }
                )
        print(f"agreement of {name} measured ({time.time() - started:.0f} s)", flush=True)

    # Costs: every draft x size (the subset's contents do not change its cost) and the target,
    # timed together, interleaved pass by pass.
    labels = ["target"]
    levels: list[object] = [target]
    for name in DRAFTS:
        model = family.models[family.names.index(name)]
        labels.append(f"{name}/full")
        levels.append(model)
        for size in SIZES:
            labels.append(f"{name}/{size}")
            levels.append(VocabSubsetLevel(model, subsets[COST_SOURCE][size]))
    context = heldout.sequences[0][None, : CONTEXT_TOKENS + max(POINTS)]
    costs = pass_costs(levels, context, CONTEXT_TOKENS, POINTS, args.repeats)
    target_ms = costs[0].cost_at(1)
    cost_rows = [
        {
            "level": label,
            "cost_ms": dict(zip(measured.measured_n, measured.total_ms)),
            "forward_ms": dict(zip(measured.measured_n, measured.forward_ms)),
            "spread_ms": dict(zip(measured.measured_n, measured.spread_ms)),
            "relative_cost_1": measured.cost_at(1) / target_ms,
        }
        for label, measured in zip(labels, costs)
    ]

    header = ["draft", "size", "c(1) ms", "c(1)/target", "c(4) ms"]
    header += [f"agree {s}" for s in subsets] + [f"overlap {s}" for s in subsets]
    header += [f"coverage {s}" for s in subsets]
    table = []
    by_key = {(r["draft"], r["source"], r["size"]): r for r in agreement_rows}
    for label, row in zip(labels, cost_rows):
        if label == "target":
            table.append(
                [
                    "target",
                    str(vocab_size),
                    f"{row['cost_ms'][1]:.2f}",
                    "1.000",
                    f"{row['cost_ms'][4]:.2f}",
                ]
                + ["-"] * (3 * len(subsets))
            )
            continue
        name, size_text = label.split("/")
        size = vocab_size if size_text == "full" else int(size_text)
        picked = [
            by_key.get((name, None if size_text == "full" else source, size)) for source in subsets
        ]
        table.append(
            [
                name,
                size_text,
                f"{row['cost_ms'][1]:.2f}",
                f"{row['relative_cost_1']:.3f}",
                f"{row['cost_ms'][4]:.2f}",
            ]
            + [_cell(r, "greedy_agreement") for r in picked]
            + [_cell(r, "overlap") for r in picked]
            + [_cell(r, "coverage") for r in picked]
        )
    print(format_table(header, table))
    print(f"{time.time() - started:.0f} s")
    report.write(
        args.out,
        {
            "threads": 1,
            "note": (
                "target = SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32 (packed); "
                "drafts in bfloat16; subsets from the train-split teacher data only"
            ),
            "context_tokens": CONTEXT_TOKENS,
            "repeats": args.repeats,
            "vocab_size": vocab_size,
            "always_included": always,
            "train_response_tokens": train_response_tokens,
            "eval": {
                "prompts": len(heldout.sequences),
                "response_positions": int(heldout_tokens.numel()),
            },
            "cost_subset_source": COST_SOURCE,
            "costs": cost_rows,
            "agreement": agreement_rows,
            "table": {"header": header, "rows": table},
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
