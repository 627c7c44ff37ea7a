"""``hierspec distill``: prepare the bundled family (:func:`hierspec.family.prepare_family`)."""

from __future__ import annotations

import argparse
import dataclasses
import time

HELP = "prepare the bundled family: convert the target, count corpus n-grams, distil drafts"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec distill`` (defaults: the family's distillation defaults)."""
    from hierspec.family.distill import DEFAULT_CONFIG
    from hierspec.family.teacher import CorpusWindowsConfig

    parser.add_argument(
        "--cache", help="cache directory (default $HIERSPEC_CACHE or ~/.cache/hierspec)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_CONFIG.steps,
        help=f"optimizer steps per draft ({DEFAULT_CONFIG.steps})",
    )
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_CONFIG.learning_rate)
    parser.add_argument("--seed", type=int, default=DEFAULT_CONFIG.seed)
    responses = DEFAULT_CONFIG.data
    windows = DEFAULT_CONFIG.windows
    parser.add_argument(
        "--prompts",
        type=int,
        default=0 if responses is None else responses.num_prompts,
        help="train-split prompts the target answers (on-policy data; 0: none) "
        f"({0 if responses is None else responses.num_prompts})",
    )
    parser.add_argument(
        "--windows",
        type=int,
        default=0 if windows is None else windows.num_windows,
        help="train-split corpus windows the target scores teacher-forced (0: none) "
        f"({0 if windows is None else windows.num_windows})",
    )
    parser.add_argument(
        "--window-tokens",
        type=int,
        default=(windows or CorpusWindowsConfig()).window_tokens,
        help=f"tokens per corpus window ({(windows or CorpusWindowsConfig()).window_tokens})",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Converts the target, counts corpus n-grams, distils the ladder; prints what it built."""
    from hierspec.family import load_tokenizer, prepare_family
    from hierspec.family.distill import DEFAULT_CONFIG, DEFAULT_LADDER, draft_path, draft_record
    from hierspec.family.ngram_statistics import load_corpus_statistics
    from hierspec.family.target import target_path
    from hierspec.family.teacher import CorpusWindowsConfig, TeacherDataConfig

    for name in ("prompts", "windows"):
        if getattr(args, name) < 0:
            raise ValueError(f"--{name} must be >= 0, got {getattr(args, name)}")
    responses = DEFAULT_CONFIG.data or TeacherDataConfig()
    windows = DEFAULT_CONFIG.windows or CorpusWindowsConfig()
    config = dataclasses.replace(
        DEFAULT_CONFIG,
        steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        data=None
        if args.prompts == 0
        else dataclasses.replace(responses, num_prompts=args.prompts, seed=args.seed),
        windows=None
        if args.windows == 0
        else dataclasses.replace(
            windows, num_windows=args.windows, window_tokens=args.window_tokens, seed=args.seed
        ),
    )
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    progress = not args.no_progress
    if config != DEFAULT_CONFIG:
        print(
            "note: non-default settings; load_family() and `hierspec generate` use the drafts "
            "distilled with the defaults, these are cached separately"
        )
    started = time.perf_counter()
    root = prepare_family(args.cache, args.threads, progress, config=config, force=args.force)
    print(f"target: {target_path(root)} (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32)")
    statistics = load_corpus_statistics(load_tokenizer(root), cache=root, progress=progress)
    print(f"n-gram statistics: {statistics.num_tokens} corpus tokens")
    for spec in DEFAULT_LADDER:
        final = draft_record(spec, root, config)["result"]["final"]
        print(
            f"{spec.name:>10}: {len(spec.layers):2d} layers, greedy agreement "
            f"{final['greedy_agreement']:.3f}, overlap {final['overlap']:.3f}  "
            f"{draft_path(spec, root, config)}"
        )
    print(f"family ready in {root} ({time.perf_counter() - started:.0f} s)")
    return 0
