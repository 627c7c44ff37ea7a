"""The command line: ``hierspec plan`` on a written profile, ``hierspec profile`` and
``hierspec generate`` end to end on tiny checkpoints (tiny random Llamas saved with a word-level
tokenizer), prompt files, and errors. What ``generate`` reports is compared with the engine run
directly on the same models (greedy: the counters are deterministic). The bundled family is
exercised by one slow test that skips when the family has not been prepared
(``hierspec distill``)."""

from __future__ import annotations

import json

import pytest
import torch

import hierspec
from hierspec.cli import main
from hierspec.cli.candidates import load_candidates
from hierspec.prompts import encode_prompt, read_prompts
from hierspec.testing import tiny_llama_family

VOCAB = ["<unk>", "<eos>"] + [f"w{index}" for index in range(62)]


def write_tokenizer(directory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(
        models.WordLevel({word: i for i, word in enumerate(VOCAB)}, unk_token="<unk>")
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>"
    ).save_pretrained(directory)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Three tiny Llamas (cheapest first) saved as checkpoints, each with the tokenizer."""
    root = tmp_path_factory.mktemp("checkpoints")
    paths = []
    for index, model in enumerate(tiny_llama_family(3, vocab_size=len(VOCAB), seed=0, noise=0.2)):
        path = root / f"m{index}"
        model.save_pretrained(path)
        write_tokenizer(path)
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("w1 w2 w3 w4 w5\n\nw7 w8 w9 w1 w2 w3\n")
    return path


@pytest.fixture(scope="module")
def written_profile(checkpoints, prompts_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("profile") / "profile.json"
    code = main(
        [
            "profile",
            *checkpoints,
            "--prompts",
            str(prompts_file),
            "--out",
            str(out),
            "--max-draft-length",
            "3",
            "--repeats",
            "1",
            "--calibration-tokens",
            "8",
            "--no-progress",
        ]
    )
    assert code == 0
    return out


# --------------------------------------------------------------------------------------------
# plan


PROFILE = {
    "models": [
        {"name": "ngram", "costs_ms": [0.05, 0.05, 0.05, 0.06, 0.06, 0.06, 0.07, 0.07, 0.08]},
        {"name": "small", "costs_ms": [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8]},
        {"name": "target", "costs_ms": [20.0, 20.5, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0, 25.0]},
    ],
    "acceptance": [[1, 0.6, 0.4], [0, 1, 0.8], [0, 0, 1]],
    "metadata": {"device": "cpu"},
}


def write_profile(path, data) -> None:
    path.write_text(json.dumps(data), encoding="utf-8")


def test_plan_of_two_models_prints_the_chain(tmp_path, capsys):
    path = tmp_path / "profile.json"
    write_profile(
        path,
        {
            "models": [{"name": "tiny", "costs_ms": 1.0}, {"name": "big", "costs_ms": 10.0}],
            "acceptance": [[1, 0.8], [0, 1]],
        },
    )
    assert main(["plan", str(path), "--max-draft-length", "8"]) == 0
    expected = hierspec.plan([1.0, 10.0], [[1, 0.8], [0, 1]], max_draft_length=8)
    assert expected.chain == (0, 1)
    assert "best plan: tiny -> big" in capsys.readouterr().out


@pytest.mark.parametrize(("bottom", "expected"), [(0.9, "below confidence 0.5"), (0.5, "none")])
def test_plan_prints_the_early_stopping_choice(tmp_path, capsys, bottom, expected):
    """With measured early-stopping rates, `hierspec plan` says which threshold the planner
    predicts best (the adaptive decoder's default) or that none pays."""
    path = tmp_path / "profile.json"
    write_profile(
        path,
        {
            "models": [
                {"name": "draft", "costs_ms": [0.5] * 9},
                {"name": "target", "costs_ms": [10.0 * (1 + 0.05 * n) for n in range(9)]},
            ],
            "acceptance": [[1, 0.5], [0, 1]],
            "early_stopping": [
                {
                    "min_draft_confidence": 0.5,
                    "continue_rates": [0.5 if bottom > 0.5 else 0.6, 1.0],
                    "bottom_acceptance": [[1, bottom], [0, 1]],
                }
            ],
        },
    )
    assert main(["plan", str(path), "--max-draft-length", "8"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert expected in next(line for line in lines if line.startswith("early stopping"))


def test_cli_plan_prints_and_writes_json(tmp_path, capsys) -> None:
    profile_path, out_path = tmp_path / "profile.json", tmp_path / "plan.json"
    write_profile(profile_path, PROFILE)
    arguments = ["plan", str(profile_path), "--max-draft-length", "4", "--json", str(out_path)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    expected = hierspec.plan(
        [model["costs_ms"] for model in PROFILE["models"]],
        PROFILE["acceptance"],
        max_draft_length=4,
        model_names=["ngram", "small", "target"],
    )
    assert " -> ".join(expected.best.model_names) in printed
    assert "alternatives" in printed and "target" in printed
    written = json.loads(out_path.read_text(encoding="utf-8"))["plan"]
    assert written["chain"] == list(expected.chain)
    assert written["draft_lengths"] == list(expected.draft_lengths)
    assert written["latency"] == pytest.approx(expected.latency)
    assert written["limited_by_cost_table"] is False  # 9 columns = 2 * 4 + 1


def test_plan_of_a_request_weighs_the_drafts_prefill(tmp_path, capsys) -> None:
    """``--prompt-tokens``: the chain's prompt prefill + new tokens x latency; a draft that is
    slow to prefill is dropped for a short request and kept for a long one."""
    profile = {
        "models": [{"name": "draft", "costs_ms": 1.0}, {"name": "target", "costs_ms": 10.0}],
        "acceptance": [[1, 0.9], [0, 1]],
        "model_details": [
            {"prefill_tokens": 11, "prefill_ms": 301.0},
            {"prefill_tokens": 11, "prefill_ms": 110.0},
        ],
    }
    path, out = tmp_path / "profile.json", tmp_path / "plan.json"
    write_profile(path, profile)
    base = ["plan", str(path), "--prompt-tokens", "11", "--json", str(out)]
    assert main([*base, "--new-tokens", "20"]) == 0
    line = capsys.readouterr().out.splitlines()[-2]
    assert line.startswith("for this prompt (11 tokens) and 20 new tokens: target, predicted")
    assert "prompt prefill does not pay for itself over 20 tokens" in line
    written = json.loads(out.read_text(encoding="utf-8"))["request_plan"]
    assert written["chain"] == ["target"] and written["prefill_costs"] == "measured"
    # prefill of 10 tokens: 1 + 300 * 9 / 10 = 271 ms and 10 + 100 * 9 / 10 = 100 ms
    assert written["total_ms"] == pytest.approx(100.0 + 20 * 10.0)
    assert main([*base, "--new-tokens", "200"]) == 0
    assert "draft -> target T=" in capsys.readouterr().out
    assert json.loads(out.read_text(encoding="utf-8"))["request_plan"]["prefill_ms"] == (
        pytest.approx(371.0)
    )
    assert main(["plan", str(path), "--prompt-tokens", "0"]) == 2
    assert "--prompt-tokens must be >= 1, got 0" in capsys.readouterr().err


def test_cli_reports_bad_profile(tmp_path, capsys) -> None:
    path = tmp_path / "profile.json"
    bad_acceptance = [[1, 1.5, 0.4], [0, 1, 0.8], [0, 0, 1]]
    write_profile(path, {"models": PROFILE["models"], "acceptance": bad_acceptance})
    assert main(["plan", str(path)]) == 2
    assert "acceptance[0][1] = 1.5 is outside [0, 1]" in capsys.readouterr().err


def test_plan_errors(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"models": [{"name": "a", "costs_ms": 1.0}]}))
    assert main(["plan", str(path)]) == 2
    assert "profile has no 'acceptance' key" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# profile


def test_profile_writes_what_plan_reads(written_profile, checkpoints, capsys):
    loaded = hierspec.load_profile(written_profile)
    assert loaded.model_names == ("m0", "m1", "m2")
    assert all(len(row) == 7 for row in loaded.costs_ms)  # 2 * max draft length + 1
    assert loaded.extra["sampling"]["temperature"] == 1.0
    assert loaded.extra["acceptance_details"]["prompts"] == 2
    assert [detail["source"] for detail in loaded.extra["model_details"]] == checkpoints
    assert main(["plan", str(written_profile), "--max-draft-length", "3"]) == 0
    assert "best plan:" in capsys.readouterr().out


def test_profile_errors(checkpoints, tmp_path, capsys):
    out = str(tmp_path / "p.json")
    assert main(["profile", str(tmp_path / "nowhere"), "--out", out, "--no-progress"]) == 2
    assert "is neither a family model" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert main(["profile", *checkpoints, "--prompts", str(empty), "--out", out]) == 2
    assert "must hold at least one non-empty prompt" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --out is required
        main(["profile", *checkpoints])


def test_read_prompts_formats(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps(["one", "two"]))
    (tmp_path / "b.jsonl").write_text('"one"\n\n{"prompt": "two"}\n')
    (tmp_path / "c.txt").write_text("one\n  \ntwo\n")
    for name in ("a.json", "b.jsonl", "c.txt"):
        assert read_prompts(tmp_path / name) == ["one", "two"]
    (tmp_path / "d.json").write_text(json.dumps({"prompt": "x"}))
    with pytest.raises(ValueError, match="must hold a list of strings"):
        read_prompts(tmp_path / "d.json")
    (tmp_path / "e.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match=r"e.jsonl:1: expected a string"):
        read_prompts(tmp_path / "e.jsonl")


def run_engine(checkpoints, profile, prompt, max_new_tokens, max_draft_length):
    """The engine run directly as ``hierspec generate --no-adaptive`` runs it (greedy, EOS
    ignored): the same loaded candidates, prompt encoding and request plan (the least prefill +
    decode time for this prompt, :func:`hierspec.plan_for_prompt`). Returns (output, text,
    request plan)."""
    candidates = load_candidates(checkpoints, progress=False)
    candidates = candidates.select(profile.model_names, "the profile")
    input_ids = encode_prompt(candidates.tokenizer, prompt, raw=False)
    request = hierspec.plan_for_prompt(
        profile, input_ids.shape[1], max_new_tokens, max_draft_length=max_draft_length
    )
    decoder = hierspec.HierarchicalDecoder.from_plan(candidates.models, request.entry)
    output = decoder.generate(input_ids, max_new_tokens=max_new_tokens, temperature=0.0, seed=0)
    text = candidates.tokenizer.decode(
        output.sequences[0, input_ids.shape[1] :], skip_special_tokens=True
    )
    return output, text, request


def assert_levels_match_the_engine(report, output):
    """Each level's passes per token and acceptance are the engine's counters."""
    stats = output.stats
    assert report["new_tokens"] == stats.new_tokens
    assert len(report["levels"]) == len(stats.levels)
    for level, counters in zip(report["levels"], stats.levels):
        assert level["passes_per_token"] == counters.forward_passes / stats.new_tokens
    for level, counters in zip(report["levels"][:-1], stats.levels[:-1]):
        assert level["acceptance"] == counters.acceptance_rate
    assert report["levels"][-1]["acceptance"] is None


# --------------------------------------------------------------------------------------------
# generate


def test_generate_with_a_profile_is_greedy_identical(
    checkpoints, written_profile, tmp_path, capsys
):
    report_path = tmp_path / "report.json"
    code = main(
        [
            "generate",
            "--models",
            *checkpoints,
            "--profile",
            str(written_profile),
            "--prompt",
            "w1 w2 w3",
            "--max-new-tokens",
            "12",
            "--max-draft-length",
            "3",
            "--ignore-eos",
            "--no-adaptive",
            "--no-progress",
            "--json",
            str(report_path),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "best plan:" in printed and "speedup over the target alone" in printed
    assert "greedy output identical to the target alone: yes" in printed
    report = json.loads(report_path.read_text())
    assert report["new_tokens"] == 12 and report["identical_to_target"] is True
    assert report["profile_path"] == str(written_profile)
    assert report["sampling"]["temperature"] == 0.0  # greedy by default
    assert report["speedup_vs_target"] == pytest.approx(
        report["tokens_per_second"] / report["baseline_tokens_per_second"]
    )
    expected = hierspec.load_profile(written_profile)
    planned = hierspec.plan(expected.costs_ms, expected.acceptance, max_draft_length=3)
    assert report["plan"]["chain"] == list(planned.chain)
    levels = report["levels"]
    # It runs the plan for this request (prefill included), which for a short request may
    # drop a draft the per-token plan keeps (the tiny models' measured costs decide).
    output, text, request = run_engine(checkpoints, expected, "w1 w2 w3", 12, 3)
    assert report["request_plan"]["chain"] == [f"m{index}" for index in request.chain]
    assert [level["model"] for level in levels] == [f"m{index}" for index in request.chain]
    assert report["text"] == text
    assert_levels_match_the_engine(report, output)
    evaluation = hierspec.evaluate(
        expected.costs_ms, expected.acceptance, request.chain, request.draft_lengths
    )
    assert [level["predicted_passes_per_token"] for level in levels] == pytest.approx(
        list(evaluation.passes_per_token)
    )


def test_generate_profiles_once_and_caches(checkpoints, tmp_path, capsys):
    arguments = [
        "generate",
        "--models",
        *checkpoints,
        "--prompt",
        "w4 w5",
        "--max-new-tokens",
        "6",
        "--max-draft-length",
        "2",
        "--profile-prompts",
        "1",
        "--cache",
        str(tmp_path),
        "--no-progress",
        "--no-baseline",
        "--temperature",
        "1.0",
        "--seed",
        "3",
    ]
    assert main(arguments) == 0
    first = capsys.readouterr().out
    assert "(measured now;" in first and "target alone:" not in first
    cached = list((tmp_path / "profiles").glob("profile-*.json"))
    assert len(cached) == 1
    assert hierspec.load_profile(cached[0]).extra["sampling"]["temperature"] == 1.0
    assert main(arguments) == 0
    second = capsys.readouterr().out
    assert "(cached;" in second and str(cached[0]) in second
    assert first.split("\n\n")[0] == second.split("\n\n")[0]  # same seed, same text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
        (["--temperature", "-1"], "temperature must be a finite float >= 0"),
        (["--top-k", "0"], "top_k must be >= 1 or None"),
    ],
)
def test_generate_argument_errors(checkpoints, written_profile, extra, message, capsys):
    code = main(
        [
            "generate",
            "--models",
            *checkpoints,
            "--profile",
            str(written_profile),
            "--prompt",
            "w1",
            "--no-progress",
            *extra,
        ]
    )
    assert code == 2
    assert message in capsys.readouterr().err


def test_generate_profile_must_match_the_models(checkpoints, tmp_path, capsys):
    path = tmp_path / "other.json"
    path.write_text(
        json.dumps(
            {
                "models": [{"name": "m0", "costs_ms": 1.0}, {"name": "elsewhere", "costs_ms": 5.0}],
                "acceptance": [[1, 0.5], [0, 1]],
            }
        )
    )
    arguments = ["generate", "--models", *checkpoints, "--prompt", "w1", "--no-progress"]
    assert main([*arguments, "--profile", str(path)]) == 2
    assert "has models ['elsewhere'] that are not among the candidates" in capsys.readouterr().err
    path.write_text(
        json.dumps(
            {
                "models": [{"name": "m0", "costs_ms": 1.0}, {"name": "m1", "costs_ms": 5.0}],
                "acceptance": [[1, 0.5], [0, 1]],
            }
        )
    )
    assert main([*arguments, "--profile", str(path)]) == 2
    assert "ends with 'm1', but the target is 'm2'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --prompt is required
        main(["generate", "--models", *checkpoints])


def test_generate_on_a_profile_subset(checkpoints, tmp_path, capsys):
    """A profile of two of the three candidates plans over those two only."""
    path = tmp_path / "pair.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "m1", "costs_ms": [0.1, 0.1, 0.1]},
                    {"name": "m2", "costs_ms": [10.0, 10.0, 10.0]},
                ],
                "acceptance": [[1, 0.9], [0, 1]],
            }
        )
    )
    report_path = tmp_path / "report.json"
    assert (
        main(
            [
                "generate",
                "--models",
                *checkpoints,
                "--profile",
                str(path),
                "--prompt",
                "w1 w2",
                "--max-new-tokens",
                "5",
                "--max-draft-length",
                "2",
                "--ignore-eos",
                "--no-adaptive",
                "--no-progress",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert report["plan"]["model_names"] == ["m1", "m2"]
    assert report["plan"]["chain"] == [0, 1] and report["identical_to_target"] is True
    assert report["levels"][0]["profile_acceptance"] == 0.9
    output, text, _ = run_engine(checkpoints, hierspec.load_profile(path), "w1 w2", 5, 2)
    assert report["text"] == text
    assert_levels_match_the_engine(report, output)


# --------------------------------------------------------------------------------------------
# the bundled family


@pytest.mark.slow
def test_generate_with_the_bundled_family(tmp_path, capsys):
    """Loads the prepared family and decodes with a given 3-level plan (greedy, identical to
    the target alone). Skips when the family has not been prepared on this machine."""
    from hierspec.family import load_family

    try:
        family = load_family(prepare=False, progress=False)  # everything generate would build
    except (FileNotFoundError, ValueError) as error:
        pytest.skip(f"bundled family not prepared: {error}")
    draft = family.names[1]  # the cheapest distilled draft
    del family
    path = tmp_path / "family.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "ngram", "costs_ms": [1.0] * 8},
                    {"name": draft, "costs_ms": [10.0] * 8},
                    {"name": "target", "costs_ms": [60.0] * 8},
                ],
                "acceptance": [[1, 0.6, 0.5], [0, 1, 0.8], [0, 0, 1]],
            }
        )
    )
    report_path = tmp_path / "report.json"
    torch.set_num_threads(1)
    assert (
        main(
            [
                "generate",
                "--models",
                "ngram",
                draft,
                "target",
                "--profile",
                str(path),
                "--prompt",
                "Write a Python function that adds two numbers.",
                "--max-new-tokens",
                "24",
                "--max-draft-length",
                "4",
                "--no-progress",
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    report = json.loads(report_path.read_text())
    assert len(report["plan"]["chain"]) == 3
    assert report["identical_to_target"] is True and report["text"]


def test_checkpoints_and_plan_do_not_import_the_family(checkpoints, tmp_path):
    """The bundled family is imported only when a family name is listed."""
    import subprocess
    import sys

    path = tmp_path / "profile.json"
    write_profile(path, PROFILE)
    script = (
        "import sys\n"
        "from hierspec.cli import main\n"
        "from hierspec.cli.candidates import load_candidates\n"
        f"assert main(['plan', {str(path)!r}]) == 0\n"
        f"candidates = load_candidates({checkpoints!r}, progress=False)\n"
        "assert candidates.names == ('m0', 'm1', 'm2'), candidates.names\n"
        "print(sorted(name for name in sys.modules if name.startswith('hierspec.family')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# --------------------------------------------------------------------------------------------
# bad arguments: exit status 2 and one line, never a traceback (issue 10)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hierspec {command}: error: "), err
    return lines[0]


def test_plan_bad_arguments_exit_2_with_one_line(tmp_path, capsys):
    path = tmp_path / "profile.json"
    write_profile(path, PROFILE)
    assert main(["plan", str(path), "--max-draft-length", "99999999999"]) == 2
    assert "max_draft_length = 99999999999 must be in [1, 4096]" in one_error_line(capsys, "plan")
    two_models = {"models": PROFILE["models"][:2], "acceptance": PROFILE["acceptance"]}
    write_profile(path, two_models)
    assert main(["plan", str(path)]) == 2
    line = one_error_line(capsys, "plan")
    assert "profile has 2 models ['ngram', 'small'] but its 'acceptance' is 3 x 3" in line
    assert "model_names" not in line
    write_profile(path, {"models": PROFILE["models"][:1] * 2, "acceptance": [[1, 1], [0, 1]]})
    assert main(["plan", str(path)]) == 2
    assert "models[1].name 'ngram' repeats models[0].name" in one_error_line(capsys, "plan")
    path.write_text("{not json", encoding="utf-8")
    assert main(["plan", str(path)]) == 2
    assert "profile.json' is not valid JSON" in one_error_line(capsys, "plan")


def test_type_errors_exit_2(tmp_path, capsys, monkeypatch):
    from hierspec.cli import plan as plan_command

    def refuse(*args, **kwargs):
        raise TypeError("costs[0] must hold numbers;\ngot '1'")

    monkeypatch.setattr(plan_command, "plan", refuse)
    path = tmp_path / "profile.json"
    write_profile(path, PROFILE)
    assert main(["plan", str(path)]) == 2
    assert one_error_line(capsys, "plan").endswith("costs[0] must hold numbers; got '1'")


def test_threads_beyond_a_c_int_exit_2(tmp_path, capsys):
    out = str(tmp_path / "p.json")
    assert main(["profile", "m", "--out", out, "--threads", "99999999999", "--no-progress"]) == 2
    assert "--threads must be <= 1024, got 99999999999" in one_error_line(capsys, "profile")


def test_generate_adaptive_reports_its_plan_history(checkpoints, tmp_path, capsys):
    """--adaptive (the default) starts from the profile's plan, re-plans as it learns the
    acceptance (here: the profile promises 0.95 for a draft that agrees far less), prints the
    plan history and stays greedy-identical to the target alone."""
    path = tmp_path / "optimistic.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "m0", "costs_ms": [6.0] * 8},
                    {"name": "m2", "costs_ms": [10.0] * 8},
                ],
                "acceptance": [[1, 0.95], [0, 1]],
            }
        )
    )
    report_path = tmp_path / "report.json"
    arguments = ["generate", "--models", checkpoints[0], checkpoints[2], "--profile", str(path)]
    arguments += ["--prompt", "w1 w2 w3", "--max-new-tokens", "40", "--max-draft-length", "4"]
    arguments += ["--ignore-eos", "--no-progress", "--no-stream", "--json", str(report_path)]
    arguments += ["--min-draft-confidence", "0"]  # every draft tested (tiny drafts are unsure)
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["adaptive"] is True and report["identical_to_target"] is True
    assert "plan history (" in printed and "no early stopping" in printed
    assert report["min_draft_confidence"] == 0.0
    history = report["plan_history"]
    assert [change["token"] for change in history] == sorted(change["token"] for change in history)
    for change in history:
        assert f"token {change['token']}: {change['previous']}  =>  {change['new']}" in printed
        # The measured / predicted ratios the configurations were compared at.
        ratios = change["previous_calibration"], change["calibration"]
        assert all(ratio > 0 for ratio in ratios)
        printed_ratios = f"measured/predicted x{ratios[0]:.2f} -> x{ratios[1]:.2f}"
        assert (printed_ratios in printed) == (ratios != (1.0, 1.0))
    # The drafter's measured acceptance is far below the profile's 0.95: at a draft cost of
    # 0.6 target passes it does not pay, and the decoder falls back to the target alone.
    drafter = next(level for level in report["levels"] if level["model"] == "m0")
    assert drafter["acceptance"] < 0.6
    assert history and history[-1]["new"] == "m2"
    assert history[0]["acceptance"]["m0->m2"] < 0.95
    # A profile without per-prompt rates: the constant prior strength, and how to get better.
    assert report["prior_strengths"] == {"m0->m2": 32.0}
    assert report["prior_strength_source"] == "fallback"
    assert "prior strength 32 for every pair (the profile has no per-prompt rates" in printed
    assert "--reprofile measures them" in printed


def test_generate_prints_the_empirical_bayes_prior_strengths(checkpoints, tmp_path, capsys):
    profile = {
        "models": [{"name": "m0", "costs_ms": [6.0] * 8}, {"name": "m2", "costs_ms": [10.0] * 8}],
        "acceptance": [[1, 0.5], [0, 1]],
        "acceptance_details": {
            "by_prompt": [[None, [0.2, 0.8, 0.3, 0.7]], [None, None]],
            "prompt_positions": [64, 64, 64, 64],
        },
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    report_path = tmp_path / "report.json"
    arguments = ["generate", "--models", checkpoints[0], checkpoints[2], "--profile", str(path)]
    arguments += ["--prompt", "w1 w2 w3", "--max-new-tokens", "8", "--max-draft-length", "4"]
    arguments += ["--no-progress", "--no-stream", "--json", str(report_path)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    strength = report["prior_strengths"]["m0->m2"]
    assert strength == pytest.approx(1.98, abs=0.01)  # the doctest of prior_strengths
    assert report["prior_strength_source"] == "profile"
    assert (
        "prior strengths (observations a pair's profile rate counts as, from its per-prompt "
        f"rates): m0->m2 {strength:.3g}" in printed
    )


def test_generate_reports_the_shadow_of_the_target_alone(checkpoints, tmp_path, capsys):
    """A drafter at 1% of the target's cost whose drafts cost the target 10x its 1-token pass
    to verify: the request runs the target alone, the drafter shadows it, and the report says
    on how many tokens and at what would-be acceptance."""
    path = tmp_path / "dear-verification.json"
    target_costs = [10.0 * n for n in range(1, 9)]
    path.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "m0", "costs_ms": [0.1] * 8},
                    {"name": "m2", "costs_ms": target_costs},
                ],
                "acceptance": [[1, 0.3], [0, 1]],
            }
        )
    )
    report_path = tmp_path / "report.json"
    arguments = ["generate", "--models", checkpoints[0], checkpoints[2], "--profile", str(path)]
    arguments += ["--prompt", "w1 w2 w3", "--max-new-tokens", "24", "--ignore-eos"]
    arguments += ["--no-progress", "--no-stream", "--json", str(report_path)]
    assert main(arguments) == 0
    printed = capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["request_plan"]["chain"] == ["m2"] and not report["plan_history"]
    drafter = next(level for level in report["levels"] if level["model"] == "m0")
    assert drafter["shadow_tokens"] == 24  # every token the target committed alone
    assert 0.0 <= drafter["shadow_acceptance"] <= 1.0
    assert drafter["passes_per_token"] == 0.0 and drafter["model_ms_per_token"] > 0.0
    line = "shadowed the chain on 24 tokens, would-be acceptance "
    assert line + f"{drafter['shadow_acceptance']:.2f}" in printed
