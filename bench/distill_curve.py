"""Held-out agreement of a distilled draft against training minutes, per data source.

One training run per data source (``--sources``), with agreement measured at several step counts
of that run (``--checkpoints``; :func:`hierspec.family.distill.distill` ``evaluate_at``, which
does not change the training):
    responses   the target's responses to train-split prompts (on-policy), ``DistillConfig.data``,
                the loss on the response positions only (the drafts' earlier default);
    windows     teacher-forced windows of train-split corpus text (``--windows`` x
                ``--window-tokens`` tokens), ``DistillConfig.windows``;
    mix         both, one pool (responses: response positions; windows: all positions);
    prompted    the responses with the loss on every position (``loss_on="all"``: the prompt's
                positions too, which the forward pass computes anyway), not only the response's.
Agreement = greedy agreement and overlap ``sum_x min(p_target, p_draft)`` (temperature 1) on the
held-out prompts' greedy target responses (:func:`evaluate_agreement`, 12 prompts, the same data
as bench/family.py). Minutes = training wall time up to the checkpoint (evaluations excluded),
one thread; the time the target took to make each data source is measured when this run made it
(``data_sources.*.seconds``; null when the data was already cached).

The learning rate follows the cosine schedule of the full ``--steps`` run, so a checkpoint before
the end is a run cut short at a higher learning rate than a run of that length would end at (a
lower bound of what that many steps give; the end point is exact).

    # bench/results/distill-curve-cpu.json (about 55 minutes, one thread):
    OMP_NUM_THREADS=1 .venv/bin/python bench/distill_curve.py --sources mix,windows,responses
    OMP_NUM_THREADS=1 .venv/bin/python bench/distill_curve.py --sources prompted --steps 240 \
        --checkpoints 60,120,240 --append
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from harness import RESULTS, Report, format_table

from hierspec.family import cache_dir, load_target, prepare_family
from hierspec.family.distill import DEFAULT_CONFIG, DEFAULT_LADDER, distill
from hierspec.family.teacher import (
    CorpusWindowsConfig,
    TeacherData,
    TeacherDataConfig,
    teacher_data,
    window_data,
)
from hierspec.io import machine_info

SOURCES = ("responses", "windows", "mix", "prompted")


def _timed(make, path_glob, root) -> tuple[TeacherData, float | None]:
    """``make()`` and its wall time when it created a new file under ``root/teacher`` (None when
    the data was cached)."""
    before = set((root / "teacher").glob(path_glob))
    started = time.perf_counter()
    data = make()
    seconds = time.perf_counter() - started
    made_now = set((root / "teacher").glob(path_glob)) - before
    return data, (seconds if made_now else None)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default=None)
    parser.add_argument("--draft", default="draft-6l", choices=[s.name for s in DEFAULT_LADDER])
    parser.add_argument("--sources", default="windows,mix,responses")
    parser.add_argument("--steps", type=int, default=480, help="steps of each run (480)")
    parser.add_argument(
        "--checkpoints", default="60,120,240,360,480", help="steps at which to evaluate"
    )
    parser.add_argument("--windows", type=int, default=CorpusWindowsConfig().num_windows)
    parser.add_argument("--window-tokens", type=int, default=CorpusWindowsConfig().window_tokens)
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_CONFIG.learning_rate)
    parser.add_argument("--out", default=str(RESULTS / "distill-curve-cpu.json"))
    parser.add_argument(
        "--append", action="store_true", help="keep the runs already in --out, add these"
    )
    args = parser.parse_args(argv)
    sources = [s for s in args.sources.split(",") if s]
    for source in sources:
        if source not in SOURCES:
            raise ValueError(f"--sources must name some of {SOURCES}, got {source!r}")
    checkpoints = tuple(int(s) for s in args.checkpoints.split(",") if s)
    torch.set_num_threads(1)
    report = Report("distill_curve")
    root = cache_dir(args.cache)
    prepare_family(root, threads=1, progress=False, config=DEFAULT_CONFIG)  # target, n-grams
    target = load_target(root)
    spec = next(s for s in DEFAULT_LADDER if s.name == args.draft)
    windows_config = CorpusWindowsConfig(num_windows=args.windows, window_tokens=args.window_tokens)
    responses_config = DEFAULT_CONFIG.data or TeacherDataConfig()
    evaluation = teacher_data(root, split="heldout", progress=False, target=target)
    responses, responses_seconds = _timed(
        lambda: teacher_data(root, responses_config, "train", False, target), "train-*.pt", root
    )
    data_sources = {"responses": {"config": dataclasses.asdict(responses_config)}}
    data_sources["responses"].update(
        sequences=len(responses.sequences),
        target_positions=responses.num_targets,
        seconds=responses_seconds,
    )
    windows = None
    if {"windows", "mix"} & set(sources):
        windows, windows_seconds = _timed(
            lambda: window_data(root, windows_config, True, target), "windows-*.pt", root
        )
        data_sources["windows"] = {
            "config": dataclasses.asdict(windows_config),
            "sequences": len(windows.sequences),
            "target_positions": windows.num_targets,
            "seconds": windows_seconds,
        }
    runs = []
    rows = []
    if args.append and Path(args.out).is_file():
        previous = json.loads(Path(args.out).read_text())
        for run in previous["runs"]:
            run.setdefault("command", previous["command"])
            run.setdefault("load_average_after", previous["load_average_after"])
        runs, rows = previous["runs"], previous["table"]["rows"]
        data_sources = {**previous["data_sources"], **data_sources}

    def write() -> None:  # after every run, so a long run keeps what it measured
        report.write(
            args.out,
            {
                "threads": 1,
                "draft": dataclasses.asdict(spec),
                "note": "target = SmolLM2-135M-Instruct Q4_1 GGUF dequantized to float32; "
                "agreement on the 12 held-out prompts' greedy target responses; cosine schedule "
                "over the full run, checkpoints inside one run",
                "eval": {
                    "prompts": len(evaluation.sequences),
                    "response_positions": evaluation.num_targets,
                },
                "data_sources": data_sources,
                "runs": runs,
                "table": {
                    "header": ["source", "step", "train min", "KL", "agreement", "overlap"],
                    "rows": rows,
                },
            },
        )

    for source in sources:
        config = dataclasses.replace(
            DEFAULT_CONFIG,
            steps=args.steps,
            learning_rate=args.learning_rate,
            data=None if source == "windows" else responses_config,
            windows=windows_config if source in ("windows", "mix") else None,
            # Explicit, whatever the default: the sources are defined by their loss positions.
            loss_on="all" if source == "prompted" else "response",
        )
        data = {
            "responses": responses,
            "prompted": responses,
            "windows": windows,
            "mix": None if windows is None else TeacherData.concatenate([responses, windows]),
        }[source]
        started = time.time()
        _, result = distill(
            target,
            spec,
            data,
            config,
            evaluation,
            progress=True,
            evaluate_at=tuple(c for c in checkpoints if c <= args.steps),
        )
        points = [
            {
                "step": point.step,
                "train_minutes": point.train_seconds / 60,
                "kl": point.kl,
                "greedy_agreement": point.agreement.greedy_agreement,
                "overlap": point.agreement.overlap,
            }
            for point in result.checkpoints
        ]
        runs.append(
            {
                "source": source,
                "config": config.key(),
                "initial": dataclasses.asdict(result.initial),
                "points": points,
                "seconds": result.seconds,
                "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                "command": report.command,
                "load_average_after": machine_info()["load_average"],
            }
        )
        for point in points:
            rows.append(
                [
                    source,
                    str(point["step"]),
                    f"{point['train_minutes']:.2f}",
                    f"{point['kl']:.3f}",
                    f"{point['greedy_agreement']:.3f}",
                    f"{point['overlap']:.3f}",
                ]
            )
        print(
            format_table(["source", "step", "train min", "KL", "agreement", "overlap"], rows),
            flush=True,
        )
        write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
