"""``hierspec plan PROFILE.json --export vllm``: the best plan a serving engine can run.

vLLM (and SGLang) run one draft (a draft model, or n-gram prompt lookup) under the target, not a
hierarchy. From the same profile, :func:`vllm_export` takes the best chain of at most two models
(for each candidate draft the planner's best draft length with that draft alone under the target,
then the fastest of those; the target alone when no draft pays) and writes it as vLLM's
``speculative_config``, with the predicted speedup of that plan beside the full hierarchy's.

Which ``method`` (the rule, by the profile alone):
    ``"ngram"``        the draft is an n-gram / prompt-lookup level: its ``model_details[m].kind``
                       names ``NGramDrafter`` (what ``hierspec profile`` writes for hierspec's
                       n-gram drafter), or its name, lower-cased with ``-`` / ``_`` / spaces
                       removed, contains ``ngram`` or ``promptlookup``. Keys ``prompt_lookup_min``
                       / ``prompt_lookup_max`` (defaults 1 and 6: hierspec's drafter matches
                       contexts of 1 to ``NGramConfig.max_local_order`` = 6 tokens) and
                       ``num_speculative_tokens``.
    ``"draft_model"``  any other transformers checkpoint: ``model`` is ``model_details[m].source``
                       (the checkpoint path or hub name it was loaded from) when the profile has
                       it, else the model's name; and ``num_speculative_tokens``.
    Other :class:`hierspec.DraftModel` levels (``kind`` ``"DraftModel ..."``, not n-gram) have no
    vLLM equivalent and are skipped.

The keys are those of vLLM's ``SpeculativeConfig`` (``vllm/config/speculative.py``:
``method`` in ``"ngram"``, ``"draft_model"``, ...; ``model``; ``num_speculative_tokens > 0``;
``prompt_lookup_min`` / ``prompt_lookup_max >= 1``), checked against that file's source in the
vllm-project/vllm repository (``docs/serving.md`` says which revision); vLLM itself was not
installed here.

vLLM's n-gram proposer is prompt lookup only and proposes nothing when the lookup finds no match,
while hierspec's n-gram level always drafts (it backs off to corpus statistics), so an exported
n-gram plan's predicted speedup is the hierspec level's, an estimate for vLLM's proposer.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from typing import Any

from hierspec.io import write_json
from hierspec.planning import Plan, Profile, evaluate, plan

__all__ = [
    "ENGINES",
    "VllmExport",
    "add_arguments",
    "is_ngram",
    "print_export",
    "run",
    "vllm_export",
]

ENGINES = ("vllm",)
"""Values of ``--export``."""

DEFAULT_PROMPT_LOOKUP_MIN = 1
DEFAULT_PROMPT_LOOKUP_MAX = 6  # hierspec.ngram.NGramConfig().max_local_order


@dataclasses.dataclass(frozen=True)
class VllmExport:
    """A plan vLLM can run, and what the full hierarchy would predict.

    Attributes
    ----------
    speculative_config : dict or None
        vLLM's ``speculative_config``; ``None`` when the target alone is best (no draft pays).
    chain : tuple of str
        The exported chain's model names (the draft, if any, then the target).
    draft_lengths : tuple of int
        ``(T,)`` for one draft, ``()`` for the target alone.
    predicted_speedup : float
        Of the exported plan over the target alone (1 for the target alone).
    hierarchy_chain, hierarchy_draft_lengths, hierarchy_predicted_speedup
        The planner's best configuration over every candidate (any depth).
    target : str
        The target's checkpoint (``source``) or name: the model vLLM serves.
    """

    speculative_config: dict[str, Any] | None
    chain: tuple[str, ...]
    draft_lengths: tuple[int, ...]
    predicted_speedup: float
    hierarchy_chain: tuple[str, ...]
    hierarchy_draft_lengths: tuple[int, ...]
    hierarchy_predicted_speedup: float
    target: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON file: ``speculative_config`` and, beside it, ``hierspec`` (the plan and both
        predicted speedups)."""
        return {
            "speculative_config": self.speculative_config,
            "hierspec": {
                "engine": "vllm",
                "target": self.target,
                "chain": list(self.chain),
                "draft_lengths": list(self.draft_lengths),
                "predicted_speedup": self.predicted_speedup,
                "hierarchy": {
                    "chain": list(self.hierarchy_chain),
                    "draft_lengths": list(self.hierarchy_draft_lengths),
                    "predicted_speedup": self.hierarchy_predicted_speedup,
                },
            },
        }


def _detail(profile: Profile, model: int, key: str) -> Any:
    details = profile.extra.get("model_details")
    if isinstance(details, list) and model < len(details) and isinstance(details[model], dict):
        return details[model].get(key)
    return None


def is_ngram(profile: Profile, model: int) -> bool:
    """Whether candidate ``model`` is an n-gram / prompt-lookup level (the module docstring's
    rule)."""
    kind = _detail(profile, model, "kind")
    if isinstance(kind, str) and "NGramDrafter" in kind:
        return True
    name = profile.model_names[model].lower()
    for separator in ("-", "_", " "):
        name = name.replace(separator, "")
    return "ngram" in name or "promptlookup" in name


def _checkpoint(profile: Profile, model: int) -> str:
    source = _detail(profile, model, "source")
    return source if isinstance(source, str) and source else profile.model_names[model]


def _runnable_draft(profile: Profile, model: int) -> bool:
    if is_ngram(profile, model):
        return True
    kind = _detail(profile, model, "kind")
    return not (isinstance(kind, str) and kind.startswith("DraftModel"))


def vllm_export(
    profile: Profile,
    max_draft_length: int = 16,
    prompt_lookup_min: int = DEFAULT_PROMPT_LOOKUP_MIN,
    prompt_lookup_max: int = DEFAULT_PROMPT_LOOKUP_MAX,
    hierarchy: Plan | None = None,
) -> VllmExport:
    """The best plan of at most two models of ``profile`` as vLLM's ``speculative_config``.

    Parameters
    ----------
    profile : hierspec.Profile
    max_draft_length : int
        Largest ``num_speculative_tokens`` considered.
    prompt_lookup_min, prompt_lookup_max : int
        The n-gram window when the draft is an n-gram level (``1 <= min <= max``).
    hierarchy : hierspec.Plan, optional
        The full plan of ``profile`` (planned here when not given).

    Returns
    -------
    VllmExport

    Raises
    ------
    ValueError
        A bad prompt-lookup window; the planner's errors for a bad profile.
    """
    if not 1 <= prompt_lookup_min <= prompt_lookup_max:
        raise ValueError(
            f"--prompt-lookup-min / --prompt-lookup-max must satisfy 1 <= min <= max, got "
            f"{prompt_lookup_min} and {prompt_lookup_max}"
        )
    names = profile.model_names
    target = len(names) - 1
    if hierarchy is None:
        hierarchy = plan(profile.costs_ms, profile.acceptance, max_draft_length, model_names=names)
    target_latency = hierarchy.target_latency
    best_latency, best_draft, best_length = target_latency, None, None
    for draft in range(target):
        if not _runnable_draft(profile, draft):
            continue
        # The planner over the pair (draft, target) alone: chains of length <= 2 exactly.
        pair = [draft, target]
        pair_plan = plan(
            [profile.costs_ms[model] for model in pair],
            [[profile.acceptance[row][column] for column in pair] for row in pair],
            max_draft_length,
            model_names=[names[model] for model in pair],
        )
        if pair_plan.chain == (0, 1) and pair_plan.latency < best_latency:
            best_latency = pair_plan.latency
            best_draft, best_length = draft, pair_plan.draft_lengths[0]
    if best_draft is None:
        config = None
        chain, lengths, speedup = (names[target],), (), 1.0
    else:
        if is_ngram(profile, best_draft):
            config = {
                "method": "ngram",
                "prompt_lookup_min": prompt_lookup_min,
                "prompt_lookup_max": prompt_lookup_max,
                "num_speculative_tokens": best_length,
            }
        else:
            config = {
                "method": "draft_model",
                "model": _checkpoint(profile, best_draft),
                "num_speculative_tokens": best_length,
            }
        chain, lengths = (names[best_draft], names[target]), (best_length,)
        # The same number the full planner reports for this configuration.
        speedup = (
            target_latency
            / evaluate(profile.costs_ms, profile.acceptance, [best_draft, target], lengths).latency
        )
    return VllmExport(
        speculative_config=config,
        chain=chain,
        draft_lengths=lengths,
        predicted_speedup=speedup,
        hierarchy_chain=tuple(hierarchy.best.model_names),
        hierarchy_draft_lengths=tuple(hierarchy.draft_lengths),
        hierarchy_predicted_speedup=hierarchy.speedup,
        target=_checkpoint(profile, target),
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--export`` arguments of ``hierspec plan``."""
    parser.add_argument(
        "--export",
        choices=ENGINES,
        help="also write the best plan this serving engine can run (one draft at most) as its "
        "speculative_config, with its predicted speedup beside the full hierarchy's",
    )
    parser.add_argument(
        "--output", metavar="FILE", help="with --export: write the JSON to FILE (else print it)"
    )
    parser.add_argument(
        "--prompt-lookup-min",
        type=int,
        default=DEFAULT_PROMPT_LOOKUP_MIN,
        help=f"with --export and an n-gram draft: prompt_lookup_min ({DEFAULT_PROMPT_LOOKUP_MIN})",
    )
    parser.add_argument(
        "--prompt-lookup-max",
        type=int,
        default=DEFAULT_PROMPT_LOOKUP_MAX,
        help=f"with --export and an n-gram draft: prompt_lookup_max ({DEFAULT_PROMPT_LOOKUP_MAX})",
    )


def run(args: argparse.Namespace, profile: Profile, hierarchy: Plan) -> None:
    """``--export``: plans the engine's best configuration and prints / writes it."""
    exported = vllm_export(
        profile,
        max_draft_length=args.max_draft_length,
        prompt_lookup_min=args.prompt_lookup_min,
        prompt_lookup_max=args.prompt_lookup_max,
        hierarchy=hierarchy,
    )
    print_export(exported, args.output)


def print_export(export: VllmExport, output: str | None) -> None:
    """Prints the exported plan, both predicted speedups and the JSON (written to ``output``
    when given)."""

    def describe(chain: tuple[str, ...], lengths: tuple[int, ...]) -> str:
        sizes = ",".join(str(size) for size in lengths)
        return " -> ".join(chain) + (f"  T={sizes}" if sizes else "")

    print()
    print(f"vLLM (one draft at most): {describe(export.chain, export.draft_lengths)}")
    print(f"  predicted speedup over the target alone: {export.predicted_speedup:.3f}x")
    hierarchy = describe(export.hierarchy_chain, export.hierarchy_draft_lengths)
    print(f"full hierarchy: {hierarchy}")
    print(f"  predicted speedup over the target alone: {export.hierarchy_predicted_speedup:.3f}x")
    if export.predicted_speedup > 0 and not math.isnan(export.hierarchy_predicted_speedup):
        ratio = export.hierarchy_predicted_speedup / export.predicted_speedup
        print(f"  the hierarchy would be {ratio:.3f}x the exported plan's speed")
    if export.speculative_config is None:
        print("no draft pays: serve the target without speculative decoding")
    print(f"vLLM target model: {export.target}")
    data = export.to_dict()
    if output:
        write_json(output, data)
        print(f"wrote {output} (pass its speculative_config to vLLM)")
    else:
        print(json.dumps(data, indent=2))
