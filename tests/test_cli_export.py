"""``hierspec plan PROFILE --export vllm``: the best chain of at most two models as vLLM's
``speculative_config`` (exact against an exhaustive search over pairs and draft lengths), the
n-gram / draft-model rule, the target alone when nothing pays, and the full hierarchy's
predicted speedup beside the exported plan's."""

from __future__ import annotations

import json

import pytest

import hierspec
from hierspec.cli import main
from hierspec.cli.export import is_ngram, vllm_export

# The fields of vLLM's SpeculativeConfig that an export may use (vllm/config/speculative.py,
# vllm-project/vllm at 002e77c1f0ef9b19cff8b9e21cfbd6feb3d6b443; docs/serving.md).
VLLM_FIELDS = {
    "method",
    "model",
    "num_speculative_tokens",
    "prompt_lookup_min",
    "prompt_lookup_max",
}
VLLM_METHODS = {"ngram", "draft_model"}

COSTS = {
    "ngram": [0.05, 0.05, 0.05, 0.06, 0.06, 0.06, 0.07, 0.07, 0.08],
    "small": [2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8],
    "target": [20.0, 20.5, 21.0, 21.5, 22.0, 22.5, 23.0, 24.0, 25.0],
}


def profile_data(acceptance, details=None):
    data = {
        "models": [{"name": name, "costs_ms": costs} for name, costs in COSTS.items()],
        "acceptance": acceptance,
    }
    if details is not None:
        data["model_details"] = details
    return data


def best_pair(profile, max_draft_length, runnable=(0, 1)):
    """Exhaustive: the fastest (draft, T) under the target, or None when none beats it."""
    target = len(profile.model_names) - 1
    alone = hierspec.evaluate(profile.costs_ms, profile.acceptance, [target], []).latency
    best = (alone, None, None)
    for draft in runnable:
        for length in range(1, max_draft_length + 1):
            latency = hierspec.evaluate(
                profile.costs_ms, profile.acceptance, [draft, target], [length]
            ).latency
            if latency < best[0]:
                best = (latency, draft, length)
    return best, alone


def run_export(tmp_path, data, *extra):
    profile_path, out = tmp_path / "profile.json", tmp_path / "vllm.json"
    profile_path.write_text(json.dumps(data))
    arguments = ["plan", str(profile_path), "--max-draft-length", "4"]
    code = main([*arguments, "--export", "vllm", "--output", str(out), *extra])
    return code, (json.loads(out.read_text()) if out.exists() else None)


@pytest.mark.parametrize(
    ("acceptance", "method"),
    [
        ([[1, 0.6, 0.7], [0, 1, 0.8], [0, 0, 1]], "ngram"),  # the n-gram draft alone is best
        ([[1, 0.6, 0.2], [0, 1, 0.9], [0, 0, 1]], "draft_model"),  # the small model is
    ],
)
def test_export_is_the_best_pair(tmp_path, capsys, acceptance, method):
    details = [
        {"kind": "DraftModel NGramDrafter", "source": ""},
        {"kind": "transformers LlamaForCausalLM", "source": "/ckpt/small"},
        {"kind": "transformers LlamaForCausalLM", "source": "/ckpt/target"},
    ]
    code, written = run_export(tmp_path, profile_data(acceptance, details))
    assert code == 0
    printed = capsys.readouterr().out
    profile = hierspec.load_profile(tmp_path / "profile.json")
    (latency, draft, length), alone = best_pair(profile, 4)
    config = written["speculative_config"]
    assert set(config) <= VLLM_FIELDS and config["method"] in VLLM_METHODS
    assert config["method"] == method
    assert config["num_speculative_tokens"] == length
    if method == "ngram":
        assert draft == 0
        assert (config["prompt_lookup_min"], config["prompt_lookup_max"]) == (1, 6)
    else:
        assert draft == 1 and config["model"] == "/ckpt/small"
    sibling = written["hierspec"]
    assert sibling["predicted_speedup"] == pytest.approx(alone / latency)
    full = hierspec.plan(profile.costs_ms, profile.acceptance, 4, model_names=profile.model_names)
    assert sibling["hierarchy"]["predicted_speedup"] == pytest.approx(full.speedup)
    assert sibling["hierarchy"]["chain"] == list(full.best.model_names)
    assert sibling["target"] == "/ckpt/target"
    # The planner's own best single-draft configuration is the same one.
    assert full.best_single_draft.chain == (draft, 2)
    assert full.best_single_draft.draft_lengths == (length,)
    assert f"{alone / latency:.3f}x" in printed and f"{full.speedup:.3f}x" in printed


def test_export_without_details_uses_names_and_the_window(tmp_path):
    data = profile_data([[1, 0.6, 0.7], [0, 1, 0.8], [0, 0, 1]])
    data["models"][0]["name"] = "prompt_lookup"
    code, written = run_export(
        tmp_path, data, "--prompt-lookup-min", "2", "--prompt-lookup-max", "4"
    )
    assert code == 0
    config = written["speculative_config"]
    assert config["method"] == "ngram"
    assert (config["prompt_lookup_min"], config["prompt_lookup_max"]) == (2, 4)
    data["acceptance"] = [[1, 0.6, 0.2], [0, 1, 0.9], [0, 0, 1]]
    code, written = run_export(tmp_path, data)
    assert written["speculative_config"]["model"] == "small"  # no source: the name


def test_export_target_alone_when_nothing_pays(tmp_path, capsys):
    code, written = run_export(tmp_path, profile_data([[1, 0.01, 0.01], [0, 1, 0.01], [0, 0, 1]]))
    assert code == 0
    assert written["speculative_config"] is None
    assert written["hierspec"]["chain"] == ["target"]
    assert written["hierspec"]["predicted_speedup"] == 1.0
    assert "no draft pays" in capsys.readouterr().out


def test_export_skips_drafts_vllm_cannot_run():
    details = [
        {"kind": "DraftModel MarkovDraft", "source": ""},
        {"kind": "transformers LlamaForCausalLM", "source": "small"},
        {"kind": "transformers LlamaForCausalLM", "source": "target"},
    ]
    data = profile_data([[1, 0.6, 0.7], [0, 1, 0.8], [0, 0, 1]], details)
    data["models"][0]["name"] = "markov"
    profile = hierspec.planning.Profile.from_dict(data)
    assert not is_ngram(profile, 0)
    exported = vllm_export(profile, max_draft_length=4)
    (latency, draft, length), alone = best_pair(profile, 4, runnable=(1,))
    assert exported.chain == ("small", "target") and exported.draft_lengths == (length,)
    assert exported.predicted_speedup == pytest.approx(alone / latency)


def test_export_prints_json_without_output_and_rejects_a_bad_window(tmp_path, capsys):
    profile_path = tmp_path / "profile.json"
    profile_path.write_text(json.dumps(profile_data([[1, 0.6, 0.7], [0, 1, 0.8], [0, 0, 1]])))
    assert main(["plan", str(profile_path), "--max-draft-length", "4", "--export", "vllm"]) == 0
    printed = capsys.readouterr().out
    assert '"speculative_config"' in printed and '"method": "ngram"' in printed
    arguments = ["plan", str(profile_path), "--export", "vllm", "--prompt-lookup-min", "5"]
    assert main([*arguments, "--prompt-lookup-max", "3"]) == 2
    assert "1 <= min <= max" in capsys.readouterr().err
