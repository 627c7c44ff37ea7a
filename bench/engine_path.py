"""The engine's own work per target pass: its token path against the one it replaced.

The engine's work outside the forward passes (``GenerateStats.overhead_time_s``) is paid in every
target cycle. Three steps of it cost a pass over the vocabulary each, several times a cycle:

    greedy token    the first maximal index of a row (every greedy processed row and drawn
                    token): ``torch.argmax``, about 45 us a 49k row on one CPU core, before;
                    ``hierspec.sampling.first_argmax`` (block maxima, then one block) now;
    greedy verify   ``hierspec.verify`` on one-hot rows (a vocabulary of noise drawn and a race
                    run whose outcome the one-hot rows fix) before; ``hierspec.verify.
                    verify_greedy`` on the rows' tokens now (the same result, no noise);
    confidence      the bottom level's confidence per draft (early stopping, and the adaptive
                    decoder's record of it): ``1 / exp(logits - max).sum()`` before,
                    ``softmax(logits).amax()`` now (PyTorch's softmax vectorizes its exp);
    draw clamp      ``inverse_cdf``'s last positive token: ``argmax`` of the float64 cumulative
                    sums before, a binary search now.

The previous path is kept here (``PREVIOUS``) and swapped into the library for the "before" runs.
Per configuration, each prompt (held-out, one per category of ``bench/adaptive.py``, then
``--ungrounded-prompts`` ungrounded) is decoded with both paths in alternating order, same seed,
``--tokens`` new tokens, EOS off, one thread; the outputs must be identical (checked: the paths
compute the same tokens), so the difference is the engine's work alone. Reported: the engine's
own work per target pass (median over runs) and decode ms/token of each path, and the mean
per-prompt speed ratio now / before with its standard error.

    OMP_NUM_THREADS=1 python bench/engine_path.py        # ~10 min on a 2-core CPU

Writes bench/results/engine-path-cpu.json. Needs the cached greedy and temperature-1 profiles
(``bench/adaptive.py`` or ``hierspec generate`` make them).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

import torch
from adaptive import select_prompts
from harness import (
    RESULTS,
    SAMPLING_MODES,
    cached_family_profile,
    format_table,
    profile_plan,
    standard_error,
    start_family_benchmark,
)

import hierspec.engine.decoder as engine
import hierspec.sampling as sampling
from hierspec import HierarchicalDecoder
from hierspec.verify import verify

MAX_DRAFT_LENGTH = 16  # bench/adaptive.py's profiles
PROFILE_PROMPTS = 16


def previous_argmax(values: torch.Tensor) -> torch.Tensor:
    return values.argmax(dim=-1, keepdim=True)


def previous_confidence(logits: torch.Tensor) -> torch.Tensor:
    shifted = logits - logits.amax(dim=-1, keepdim=True)
    return torch.nan_to_num(1.0 / torch.exp(shifted).sum(dim=-1), nan=0.0)


def previous_inverse_cdf(probs: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
    cumulative = probs.to(torch.float64).cumsum(dim=-1)
    index = torch.searchsorted(cumulative, uniforms * cumulative[:, -1:], right=True)
    return torch.minimum(index, cumulative.argmax(dim=-1, keepdim=True))


def previous_verify(self, draft_token_ids, draft_probs, target_probs):
    """``_Run._verify`` before the greedy path: ``hierspec.verify`` whatever the rows."""
    if draft_token_ids.shape[1] == 0:
        token = engine.draw(target_probs[:, 0], self.config, self.generator)
        return token, torch.zeros(1, dtype=torch.long, device=token.device)
    return verify(draft_token_ids, draft_probs, target_probs, self.generator, validate=False)


CURRENT = {
    "argmax": sampling.first_argmax,
    "confidence": sampling.confidence,
    "inverse_cdf": sampling.inverse_cdf,
    "verify": engine._Run._verify,
}
PREVIOUS = {
    "argmax": previous_argmax,
    "confidence": previous_confidence,
    "inverse_cdf": previous_inverse_cdf,
    "verify": previous_verify,
}


def use(path: dict[str, Any]) -> None:
    """Swap ``path`` into the library (module globals the engine and sampling look up)."""
    sampling.first_argmax = engine.first_argmax = path["argmax"]
    sampling.confidence = engine.confidence = path["confidence"]
    sampling.inverse_cdf = path["inverse_cdf"]
    engine._Run._verify = path["verify"]


def run(decoder, prompts, mode: str, tokens: int, log, label: str) -> dict[str, Any]:
    temperature = SAMPLING_MODES[mode].temperature
    runs: dict[str, list[dict[str, float]]] = {"before": [], "now": []}
    ratios = []
    for index, prompt in enumerate(prompts):
        order = ("before", "now") if index % 2 == 0 else ("now", "before")
        outputs = {}
        for name in order:
            use(PREVIOUS if name == "before" else CURRENT)
            output = decoder.generate(
                prompt["input_ids"],
                max_new_tokens=tokens,
                temperature=temperature,
                seed=1000 + index,
                eos_token_id=None,
            )
            stats = output.stats
            outputs[name] = output.sequences
            runs[name].append(
                {
                    "decode_ms_per_token": 1e3 * stats.decode_time_s / stats.new_tokens,
                    "engine_ms_per_target_pass": 1e3 * stats.overhead_time_s / stats.target_passes,
                }
            )
        use(CURRENT)
        if not torch.equal(outputs["before"], outputs["now"]):
            raise SystemExit(f"{label}: prompt {index} decoded differently by the two paths")
        ratios.append(
            runs["before"][-1]["decode_ms_per_token"] / runs["now"][-1]["decode_ms_per_token"]
        )
        log(f"{label}: prompt {index + 1}/{len(prompts)} speed ratio now/before {ratios[-1]:.3f}")
    summary = {
        name: {
            "engine_ms_per_target_pass": statistics.median(
                r["engine_ms_per_target_pass"] for r in rows
            ),
            "decode_ms_per_token": statistics.mean(r["decode_ms_per_token"] for r in rows),
        }
        for name, rows in runs.items()
    }
    return {
        "configuration": label,
        "mode": mode,
        **summary,
        "speed_ratio_now_vs_before": statistics.mean(ratios),
        "standard_error": standard_error(ratios),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--ungrounded-prompts", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "engine-path-cpu.json")
    args = parser.parse_args()
    report, log, family = start_family_benchmark("engine_path", 1, None, False)
    prompts = select_prompts(family.tokenizer, 1, args.ungrounded_prompts)
    models = list(family.models)
    results = []
    for mode, kind in (("greedy", "static"), ("greedy", "adaptive"), ("temperature1", "adaptive")):
        profile, _ = cached_family_profile(
            family, SAMPLING_MODES[mode], MAX_DRAFT_LENGTH, PROFILE_PROMPTS
        )
        if kind == "adaptive":
            decoder = HierarchicalDecoder.adaptive(models, profile)
            label = f"{mode} adaptive"
        else:
            plan = profile_plan(profile, MAX_DRAFT_LENGTH)
            decoder = HierarchicalDecoder.from_plan(models, plan)
            label = f"{mode} static {plan.best.describe()}"
        decoder.generate(prompts[0]["input_ids"][:, :64], max_new_tokens=8, eos_token_id=None)
        results.append(run(decoder, prompts, mode, args.tokens, log, label))
    print(
        format_table(
            (
                "configuration",
                "engine ms/pass before",
                "now",
                "decode ms/token before",
                "now",
                "speed now/before",
            ),
            [
                (
                    r["configuration"],
                    f"{r['before']['engine_ms_per_target_pass']:.2f}",
                    f"{r['now']['engine_ms_per_target_pass']:.2f}",
                    f"{r['before']['decode_ms_per_token']:.1f}",
                    f"{r['now']['decode_ms_per_token']:.1f}",
                    f"{r['speed_ratio_now_vs_before']:.3f} +- {r['standard_error']:.3f}",
                )
                for r in results
            ],
        )
    )
    report.write(args.out, {"settings": vars(args) | {"out": str(args.out)}, "results": results})


if __name__ == "__main__":
    main()
