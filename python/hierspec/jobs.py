"""The user-facing jobs behind ``hierspec profile`` and ``hierspec generate``.

``hierspec generate`` is the main job: take a set of candidate models (by default the bundled
family of :mod:`hierspec.family`), get their profile (cached per models and conditions, measured
once when missing), plan the latency-optimal hierarchy, decode with it, and report the text, the
plan, tokens/s and the speedup over the target alone measured in the same run.

Model specifications (``MODELS`` of ``hierspec profile``, ``--models`` of ``hierspec generate``),
cheapest first, the target last:
    a family name      ``ngram``, the distilled drafts (``draft-4l``, ...), ``target-bf16``,
                       ``target``; listing only family names keeps the family's order and always
                       includes ``target``;
    a checkpoint dir   a transformers causal LM saved with ``save_pretrained``, optionally
                       ``PATH@bf16`` (or ``@fp16``, ``@fp32``) for its dtype; the tokenizer is the
                       family's when a family name is listed, else the last checkpoint's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .engine import GenerateOutput, HierarchicalDecoder
from .planning import Profile, evaluate, json_safe, load_profile, plan
from .profiler import ProfilerConfig, cached_profile, machine_info, profile, write_profile
from .sampling import SamplingConfig

__all__ = [
    "GenerateReport",
    "LevelReport",
    "add_generate_arguments",
    "add_profile_arguments",
    "family_model_names",
    "load_candidates",
    "read_prompts",
    "run_generate",
    "run_profile",
]

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}  # fmt: skip


def family_model_names() -> tuple[str, ...]:
    """Names of the bundled family's candidates, cheapest first (see :mod:`hierspec.family`)."""
    from .distill import DEFAULT_LADDER

    return ("ngram", *(spec.name for spec in DEFAULT_LADDER), "target-bf16", "target")


def _load_checkpoint(spec: str) -> tuple[str, torch.nn.Module]:
    """``PATH`` or ``PATH@DTYPE`` -> (name, model in eval mode, float32 linears packed)."""
    path_text, dtype = spec, torch.float32
    suffix = ""
    if "@" in spec:
        head, tail = spec.rsplit("@", 1)
        if tail in _DTYPES:
            path_text, dtype, suffix = head, _DTYPES[tail], f"@{tail}"
    path = Path(path_text).expanduser()
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model {spec!r} is neither a family model {list(family_model_names())} nor a "
            "transformers checkpoint directory (no config.json)"
        )
    import transformers

    from .packing import pack_for_cpu

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    pack_for_cpu(model)  # float32 on the CPU: oneDNN, flat in the tokens per pass (no-op for bf16)
    return path.name + suffix, model


def load_candidates(specs: Sequence[str], cache: str | None = None, progress: bool = True):
    """The candidates named by ``specs`` (module docstring) as a :class:`hierspec.family.Family`.

    No specs: the whole bundled family, prepared first if needed (converting the target and
    distilling the drafts, with progress bars; nothing is downloaded).
    """
    from .family import Family, cache_dir, load_family

    known = family_model_names()
    if not specs:
        return load_family(cache, progress=progress)
    family_specs = [spec for spec in specs if spec in known]
    if len(family_specs) == len(specs):
        return load_family(cache, include=tuple(family_specs), progress=progress)
    family = (
        load_family(cache, include=tuple(family_specs), progress=progress) if family_specs else None
    )
    names: list[str] = []
    models: list[object] = []
    for spec in specs:
        if family is not None and spec in family.names:
            name, model = spec, family.models[family.names.index(spec)]
        else:
            name, model = _load_checkpoint(spec)
        while name in names:
            name += "'"
        names.append(name)
        models.append(model)
    if family is not None:
        tokenizer = family.tokenizer
    else:
        import transformers

        target_spec = specs[-1].rsplit("@", 1)[0] if "@" in specs[-1] else specs[-1]
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(Path(target_spec).expanduser())
        except (OSError, ValueError) as error:
            raise ValueError(
                f"no tokenizer found with the target checkpoint {target_spec!r}: {error}"
            ) from None
    return Family(tuple(names), tuple(models), tokenizer, cache_dir(cache))


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: ``.json`` (a list of strings), ``.jsonl`` (one JSON string or object
    with a ``"prompt"`` key per line) or plain text (one prompt per non-empty line)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    prompts: list[Any]
    if path.suffix == ".json":
        prompts = json.loads(text)
        if not isinstance(prompts, list):
            raise ValueError(f"--prompts {path}: a .json prompts file must hold a list of strings")
    elif path.suffix == ".jsonl":
        prompts = []
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                item = json.loads(line)
                prompts.append(item.get("prompt") if isinstance(item, dict) else item)
                if not isinstance(prompts[-1], str):
                    raise ValueError(
                        f'--prompts {path}:{number}: expected a string or {{"prompt": ...}}'
                    )
    else:
        prompts = [line for line in text.splitlines() if line.strip()]
    if not prompts or not all(isinstance(prompt, str) and prompt for prompt in prompts):
        raise ValueError(f"--prompts {path} must hold at least one non-empty prompt string")
    return prompts


def _input_ids(tokenizer: object, prompt: str, raw: bool) -> torch.Tensor:
    """``[1, P]`` int64: ``prompt`` as one user turn of the chat template (unless ``raw`` or the
    tokenizer has none), else the plain encoding."""
    if not raw and getattr(tokenizer, "chat_template", None):
        from .corpus import chat_input_ids

        return chat_input_ids(tokenizer, prompt)
    return torch.tensor([tokenizer(prompt)["input_ids"]], dtype=torch.int64)


def _check_threads(threads: int) -> int:
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    return threads


# --------------------------------------------------------------------------------------------
# hierspec profile


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec profile``."""
    parser.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="candidates, cheapest first, the target last: family names "
        f"({', '.join(family_model_names())}) or checkpoint directories (PATH[@bf16]); "
        "none: the whole bundled family",
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        help="calibration prompts: .json list, .jsonl or one prompt per line "
        "(default: --num-prompts prompts of the corpus validation split)",
    )
    parser.add_argument(
        "--num-prompts",
        type=int,
        default=16,
        help="calibration prompts used (16; the first N of --prompts)",
    )
    parser.add_argument(
        "--out",
        "-o",
        required=True,
        metavar="PROFILE.json",
        help="where to write the profile (docs/profile-format.md)",
    )
    parser.add_argument(
        "--max-draft-length",
        type=int,
        default=16,
        help="largest draft length the planner will consider (16); fixes the cost table width",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=7,
        help="timings per pass length, median kept (7; fewer for n > 8)",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=1.0,
        help="sampling temperature the acceptance rates are for (1.0; 0 = greedy agreement)",
    )
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument(
        "--calibration-tokens",
        type=int,
        default=64,
        help="target continuation tokens per prompt for acceptance (64)",
    )
    parser.add_argument(
        "--context-tokens", type=int, default=120, help="cached tokens before each timed pass (120)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tokenize prompts as plain text, without the chat template",
    )
    parser.add_argument(
        "--cache", help="cache directory (default $HIERSPEC_CACHE or ~/.cache/hierspec)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run_profile(args: argparse.Namespace) -> int:
    """``hierspec profile``: measure the candidates, write the profile JSON, print the plan."""
    progress = not args.no_progress
    torch.set_num_threads(_check_threads(args.threads))
    if args.num_prompts < 1:
        raise ValueError(f"--num-prompts must be >= 1, got {args.num_prompts}")
    candidates = load_candidates(args.models, args.cache, progress)
    if args.prompts:
        prompts = read_prompts(args.prompts)[: args.num_prompts]
    else:
        from .corpus import calibration_prompts

        prompts = [prompt.message for prompt in calibration_prompts(args.num_prompts)]
    prompt_ids = [_input_ids(candidates.tokenizer, prompt, args.raw) for prompt in prompts]
    result = profile(
        candidates.models,
        prompt_ids,
        max_draft_length=args.max_draft_length,
        repeats=args.repeats,
        names=candidates.names,
        progress=progress,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        context_tokens=args.context_tokens,
        calibration_tokens=args.calibration_tokens,
        threads=args.threads,
    )
    write_profile(result, args.out)
    print(_format_profile(result))
    print()
    best = plan(
        result.costs_ms,
        result.acceptance,
        max_draft_length=args.max_draft_length,
        model_names=result.model_names,
    )
    print(best.format_table(unit="ms"))
    print(f"\nwrote {args.out} ({result.extra['metadata']['seconds']:.0f} s)")
    return 0


def _format_profile(result: Profile) -> str:
    """Costs at a few pass lengths and the acceptance matrix, as text."""
    names = result.model_names
    costs = result.costs_ms
    width = len(costs[0]) if costs and isinstance(costs[0], tuple) else 1
    shown = [n for n in (1, 2, 4, 8, 16, 32) if n <= width]
    name_width = max(len(name) for name in names)
    threads = result.extra.get("metadata", {}).get("threads", "?")
    lines = [
        f"cost of one pass over n tokens (ms), {threads} thread(s):",
        "  " + " " * name_width + "".join(f"{f'n={n}':>9}" for n in shown),
    ]
    for name, row in zip(names, costs):
        values = row if isinstance(row, tuple) else (row,) * width
        lines.append(f"  {name:<{name_width}}" + "".join(f"{values[n - 1]:9.2f}" for n in shown))
    temperature = result.extra.get("sampling", {}).get("temperature", "?")
    lines.append(f"acceptance[row drafts, column verifies] at temperature {temperature}:")
    lines.append("  " + " " * name_width + "".join(f"{name[:10]:>11}" for name in names))
    for i, name in enumerate(names):
        cells = "".join(
            f"{result.acceptance[i][j]:11.3f}" if j > i else f"{'-':>11}" for j in range(len(names))
        )
        lines.append(f"  {name:<{name_width}}{cells}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# hierspec generate


@dataclasses.dataclass(frozen=True)
class LevelReport:
    """One level of the planned chain: measured (engine counters, prefill excluded) next to what
    the profile predicts (``hierspec.evaluate``). ``acceptance`` is the rate at which the level
    above accepted this level's drafts (``None`` for the target)."""

    model: str
    passes_per_token: float
    predicted_passes_per_token: float
    model_ms_per_token: float  # inside this level's forward passes
    predicted_ms_per_token: float  # profile cost (forward + processing + truncate)
    acceptance: float | None
    profile_acceptance: float | None


@dataclasses.dataclass(frozen=True)
class GenerateReport:
    """What ``hierspec generate`` measured (written with ``--json``).

    Latencies in ms per new token; ``decode_ms_per_token`` excludes the prompt prefill (what the
    planner predicts), ``tokens_per_second`` includes it. Baseline fields are ``None`` with
    ``--no-baseline``.
    """

    prompt: str
    text: str
    prompt_tokens: int
    new_tokens: int
    plan: dict[str, Any]
    profile_path: str | None
    sampling: dict[str, Any]
    seed: int
    wall_time_s: float
    tokens_per_second: float
    decode_ms_per_token: float
    predicted_ms_per_token: float
    baseline_wall_time_s: float | None
    baseline_tokens_per_second: float | None
    baseline_decode_ms_per_token: float | None
    speedup_vs_target: float | None  # tokens/s over the target alone's tokens/s
    identical_to_target: bool | None  # greedy only: same tokens as the target alone
    levels: tuple[LevelReport, ...]
    machine: dict[str, Any]


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec generate``."""
    parser.add_argument("--prompt", "-p", required=True, help="the user message")
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=128,
        help="tokens to generate at most (128); stops earlier at EOS",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        help="0 (the default) = greedy: deterministic, and checked token for "
        "token against the target alone; > 0 samples exactly the target's "
        "distribution at that temperature",
    )
    parser.add_argument("--top-k", type=int, default=None, help="top-k filter (none)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus filter (none)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (0)")
    parser.add_argument(
        "--models",
        nargs="+",
        metavar="MODEL",
        default=None,
        help="candidates, cheapest first, the target last: family names "
        f"({', '.join(family_model_names())}) or checkpoint directories (PATH[@bf16]); "
        "default: the whole bundled family (prepared on first use)",
    )
    parser.add_argument(
        "--profile",
        metavar="PROFILE.json",
        help="plan from this profile (its model names must be among the "
        "candidates) instead of the cached one",
    )
    parser.add_argument(
        "--reprofile",
        action="store_true",
        help="measure the profile again even if a cached one exists",
    )
    parser.add_argument(
        "--profile-prompts",
        type=int,
        default=16,
        help="calibration prompts when profiling (16, corpus validation split)",
    )
    parser.add_argument(
        "--max-draft-length",
        type=int,
        default=16,
        help="largest draft length the planner considers (16)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads for profiling and generating (1); a cached "
        "profile is per thread count",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="do not run the target alone for the speedup"
    )
    parser.add_argument(
        "--ignore-eos", action="store_true", help="always generate --max-new-tokens tokens"
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="tokenize the prompt as plain text, without the chat template",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the report as JSON to OUT")
    parser.add_argument(
        "--cache", help="cache directory (default $HIERSPEC_CACHE or ~/.cache/hierspec)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _select_for_profile(candidates, loaded: Profile, path: str):
    """The candidates in the order of ``loaded``'s models (a profile may cover a subset)."""
    unknown = [name for name in loaded.model_names if name not in candidates.names]
    if unknown:
        raise ValueError(
            f"--profile {path} has models {unknown} that are not among the candidates "
            f"{list(candidates.names)}"
        )
    if loaded.model_names[-1] != candidates.names[-1]:
        raise ValueError(
            f"--profile {path} ends with {loaded.model_names[-1]!r}, but the target is "
            f"{candidates.names[-1]!r}"
        )
    order = [candidates.names.index(name) for name in loaded.model_names]
    if order != sorted(order):
        raise ValueError(
            f"--profile {path} lists its models in the order {list(loaded.model_names)}, not the "
            f"candidates' order {list(candidates.names)}"
        )
    return candidates.select(list(loaded.model_names))


def _decode_ms_per_token(output: GenerateOutput) -> float:
    stats = output.stats
    return 1e3 * stats.decode_time_s / stats.new_tokens if stats.new_tokens else math.nan


def run_generate(args: argparse.Namespace) -> int:
    """``hierspec generate``: profile (cached), plan, decode, report."""
    progress = not args.no_progress
    torch.set_num_threads(_check_threads(args.threads))
    if args.max_new_tokens < 1:
        raise ValueError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    if not args.prompt:
        raise ValueError("--prompt must be a non-empty string")
    sampling = SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    candidates = load_candidates(args.models or [], args.cache, progress)
    if args.profile:
        loaded = load_profile(args.profile)
        candidates = _select_for_profile(candidates, loaded, args.profile)
        profile_path, measured_now = Path(args.profile), False
    else:
        config = ProfilerConfig(
            max_draft_length=args.max_draft_length, sampling=sampling, threads=args.threads
        )
        loaded, profile_path, measured_now = cached_profile(
            candidates.models,
            candidates.names,
            candidates.tokenizer,
            candidates.cache_dir,
            config,
            num_prompts=args.profile_prompts,
            refresh=args.reprofile,
            progress=progress,
        )
    best = plan(
        loaded.costs_ms,
        loaded.acceptance,
        max_draft_length=args.max_draft_length,
        model_names=loaded.model_names,
    )
    decoder = HierarchicalDecoder.from_plan(candidates.models, best)
    tokenizer = candidates.tokenizer
    input_ids = _input_ids(tokenizer, args.prompt, args.raw)
    eos = None if args.ignore_eos else getattr(tokenizer, "eos_token_id", None)

    def run(chain_decoder: HierarchicalDecoder) -> GenerateOutput:
        return chain_decoder.generate(
            input_ids,
            max_new_tokens=args.max_new_tokens,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            seed=args.seed,
            eos_token_id=eos,
        )

    output = run(decoder)
    baseline = None if args.no_baseline else run(HierarchicalDecoder([candidates.models[-1]], []))
    prompt_length = input_ids.shape[1]
    text = tokenizer.decode(output.sequences[0, prompt_length:], skip_special_tokens=True)
    stats = output.stats
    speedup = identical = None
    if baseline is not None:
        speedup = stats.tokens_per_second / baseline.stats.tokens_per_second
        if sampling.is_greedy:
            identical = torch.equal(output.sequences, baseline.sequences)
    evaluation = evaluate(loaded.costs_ms, loaded.acceptance, best.chain, best.draft_lengths)
    levels = []
    for level, (model, counters) in enumerate(zip(best.chain, stats.levels)):
        above = best.chain[level + 1] if level + 1 < len(best.chain) else None
        tokens = max(stats.new_tokens, 1)
        levels.append(
            LevelReport(
                model=loaded.model_names[model],
                passes_per_token=counters.forward_passes / tokens,
                predicted_passes_per_token=evaluation.passes_per_token[level],
                model_ms_per_token=1e3 * counters.time_s / tokens,
                predicted_ms_per_token=evaluation.cost_per_token[level],
                acceptance=None if above is None else counters.acceptance_rate,
                profile_acceptance=None if above is None else loaded.acceptance[model][above],
            )
        )
    report = GenerateReport(
        prompt=args.prompt,
        text=text,
        prompt_tokens=prompt_length,
        new_tokens=stats.new_tokens,
        plan=best.to_dict(),
        profile_path=str(profile_path),
        sampling=dataclasses.asdict(sampling),
        seed=output.seed,
        wall_time_s=stats.wall_time_s,
        tokens_per_second=stats.tokens_per_second,
        decode_ms_per_token=_decode_ms_per_token(output),
        predicted_ms_per_token=best.latency,
        baseline_wall_time_s=None if baseline is None else baseline.stats.wall_time_s,
        baseline_tokens_per_second=None if baseline is None else baseline.stats.tokens_per_second,
        baseline_decode_ms_per_token=None if baseline is None else _decode_ms_per_token(baseline),
        speedup_vs_target=speedup,
        identical_to_target=identical,
        levels=tuple(levels),
        machine=machine_info(),
    )
    print(text)
    print()
    source = "measured now" if measured_now else "cached"
    print(
        f"profile: {profile_path} ({source}; {len(loaded.model_names)} candidates, "
        f"{args.threads} thread(s), temperature {sampling.temperature:g})"
    )
    print(best.format_table(unit="ms"))
    print()
    print(
        f"hierspec:     {stats.new_tokens} tokens in {stats.wall_time_s:.2f} s = "
        f"{stats.tokens_per_second:.1f} tokens/s (decode {report.decode_ms_per_token:.1f} "
        f"ms/token, predicted {best.latency:.1f})"
    )
    name_width = max(len(level.model) for level in levels)
    for index, level in enumerate(levels):
        line = (
            f"  level {index} {level.model:<{name_width}}  "
            f"{level.passes_per_token:.2f} passes/token"
            f" (predicted {level.predicted_passes_per_token:.2f}), {level.model_ms_per_token:.1f}"
            f" ms/token in passes (predicted {level.predicted_ms_per_token:.1f} incl. processing)"
        )
        if level.acceptance is not None:
            line += f", accepted {level.acceptance:.2f} (profile {level.profile_acceptance:.2f})"
        print(line)
    if baseline is not None:
        print(
            f"target alone: {baseline.stats.new_tokens} tokens in "
            f"{baseline.stats.wall_time_s:.2f} s = {baseline.stats.tokens_per_second:.1f} "
            f"tokens/s (decode {report.baseline_decode_ms_per_token:.1f} ms/token, predicted "
            f"{best.target_latency:.1f})"
        )
        print(f"speedup over the target alone: {speedup:.2f}x (predicted {best.speedup:.2f}x)")
        if identical is not None:
            print(f"greedy output identical to the target alone: {'yes' if identical else 'NO'}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(json_safe(dataclasses.asdict(report)), handle, indent=2)
            handle.write("\n")
        print(f"wrote {args.json}")
    if identical is False:
        # Not an error exit: batched verification passes can round differently from one-token
        # passes and flip a near-tie argmax; bench/e2e.py is the strict check.
        print(
            "warning: the greedy output differs from the target alone's; if the first "
            "difference is a near-tie of the target's top two logits this is floating-point "
            "rounding of batched passes, otherwise please report it",
            file=sys.stderr,
        )
    return 0
