"""hierspec.family.distill and .teacher on tiny random Llamas: teacher data, draft
initialisation, the loss, agreement, and reproducibility (same seed, same weights)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hierspec.family import distill, teacher
from hierspec.testing import tiny_llama

VOCAB = 48


@pytest.fixture(scope="module")
def target():
    return tiny_llama(vocab_size=VOCAB, hidden_size=32, num_layers=4, seed=1)


def _prompts(count: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (3 + (5 * i) % 9,), generator=generator) for i in range(count)]


@pytest.fixture(scope="module")
def data(target):
    prompts = _prompts(6)
    return teacher.generate_teacher_data(
        target,
        prompts,
        max_new_tokens=10,
        sample=[i % 2 == 0 for i in range(6)],
        generator=torch.Generator().manual_seed(0),
        top_k=8,
        eos_token_id=None,
        batch_size=4,
        keep_hidden=True,
    )


def test_teacher_greedy_responses_equal_target_generate(target, data):
    """Batched, left-padded generation gives the target's own greedy responses, and the stored
    top-k log-probabilities are the target's at every position of prompt + response."""
    prompts = _prompts(6)
    for index in (1, 3, 5):  # the greedy ones
        prompt = prompts[index][None]
        expected = target.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10, do_sample=False
        )[0]
        assert torch.equal(data.sequences[index], expected)
        assert data.response_starts[index] == prompt.shape[1]
    for index in range(6):
        sequence = data.sequences[index]
        with torch.no_grad():
            logprobs = torch.log_softmax(target(sequence[:-1][None]).logits[0], dim=-1)
        values, ids = logprobs.topk(8, dim=-1)
        torch.testing.assert_close(data.topk_logprobs[index], values, atol=1e-4, rtol=0)
        # Ids may only differ where two log-probabilities tie to within the tolerance.
        assert (data.topk_ids[index][:, 0] == ids[:, 0]).float().mean() == 1.0
        assert data.hidden[index].shape == (sequence.numel() - 1, 32)


def test_init_draft_copies_the_selected_layers(target):
    full = distill.init_draft(target, distill.DraftSpec("all", (0, 1, 2, 3)))
    ids = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(full(ids).logits, target(ids).logits)
    partial = distill.init_draft(target, distill.DraftSpec("part", (0, 2)))
    assert partial.config.num_hidden_layers == 2
    for new_index, old_index in enumerate((0, 2)):
        for (name, value), (_, original) in zip(
            partial.model.layers[new_index].state_dict().items(),
            target.model.layers[old_index].state_dict().items(),
        ):
            assert torch.equal(value, original), name
    assert torch.equal(partial.lm_head.weight, target.lm_head.weight)


@pytest.mark.parametrize("frozen", [0, 2, 3])
def test_training_forward_equals_model_forward(target, frozen):
    draft = distill.init_draft(target, distill.DraftSpec("d", (0, 1, 3)))
    ids = torch.randint(0, VOCAB, (1, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = draft.model(ids).last_hidden_state
        hidden = distill._decoder_forward(draft, ids, frozen)
    torch.testing.assert_close(hidden, expected, atol=1e-6, rtol=0)


def test_topk_kl_is_the_exact_kl_of_the_coarsened_distributions():
    generator = torch.Generator().manual_seed(4)
    target_logits = torch.randn(5, 12, generator=generator) * 2
    draft_logits = torch.randn(5, 12, generator=generator) * 2
    target_logprobs = torch.log_softmax(target_logits, -1)
    # k = vocab: the tail is empty and the loss is the full KL.
    values, ids = target_logprobs.topk(12, dim=-1)
    full_kl = (target_logprobs.exp() * (target_logprobs - torch.log_softmax(draft_logits, -1))).sum(
        -1
    )
    torch.testing.assert_close(distill._topk_kl(draft_logits, ids, values), full_kl.mean())
    # k = 3: KL of the 4-outcome coarsening (top 3 + tail), by hand.
    values, ids = target_logprobs.topk(3, dim=-1)
    draft_probs = torch.softmax(draft_logits, -1)
    target_coarse = torch.cat([values.exp(), 1 - values.exp().sum(-1, keepdim=True)], -1)
    draft_top = draft_probs.gather(-1, ids)
    draft_coarse = torch.cat([draft_top, 1 - draft_top.sum(-1, keepdim=True)], -1)
    expected = (target_coarse * (target_coarse.log() - draft_coarse.log())).sum(-1).mean()
    torch.testing.assert_close(distill._topk_kl(draft_logits, ids, values), expected)
    assert float(distill._topk_kl(target_logits, ids, values)) == pytest.approx(0.0, abs=1e-6)


def _agreement_by_hand(draft, target, data) -> distill.Agreement:
    """Greedy agreement and overlap on the response positions from full forward passes of both
    models (not from the stored hidden states); floats compare with a tolerance."""
    agree = overlap = count = 0
    with torch.no_grad():
        for sequence, start in zip(data.sequences, data.response_starts):
            target_logits = target(sequence[:-1][None]).logits[0, start - 1 :]
            draft_logits = draft(sequence[:-1][None]).logits[0, start - 1 :]
            agree += int((target_logits.argmax(-1) == draft_logits.argmax(-1)).sum())
            overlap += float(
                torch.minimum(target_logits.softmax(-1), draft_logits.softmax(-1)).sum()
            )
            count += target_logits.shape[0]
    return distill.Agreement(
        pytest.approx(agree / count, abs=1e-12), pytest.approx(overlap / count, abs=1e-5), count
    )


def test_distillation_is_reproducible_and_learns(target, data):
    spec = distill.DraftSpec("d2", (0, 3), trainable_layers=1)
    config = distill.DistillConfig(
        steps=12, learning_rate=3e-3, warmup_steps=2, seed=5, loss_on="all"
    )
    first, result = distill.distill(target, spec, data, config, evaluation=data)
    second, _ = distill.distill(target, spec, data, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    other, _ = distill.distill(
        target, spec, data, distill.DistillConfig(**{**config.__dict__, "seed": 6})
    )
    assert any(
        not torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), other.state_dict().values())
    )
    # The frozen layer and the embeddings did not move; the trained layer did.
    untrained = distill.init_draft(target, spec)
    assert torch.equal(
        first.model.layers[0].mlp.up_proj.weight, untrained.model.layers[0].mlp.up_proj.weight
    )
    assert torch.equal(first.model.embed_tokens.weight, untrained.model.embed_tokens.weight)
    assert not torch.equal(
        first.model.layers[1].mlp.up_proj.weight, untrained.model.layers[1].mlp.up_proj.weight
    )
    # The agreements reported are those of the returned draft and of its initialisation,
    # recomputed here from full forward passes; training raised the overlap.
    assert result.initial == _agreement_by_hand(untrained, target, data)
    assert result.final == _agreement_by_hand(first, target, data)
    assert result.final.overlap > result.initial.overlap
    assert not first.training and not any(p.requires_grad for p in first.parameters())


def test_agreement_of_a_draft_model_equals_that_of_its_module(target, data):
    """A DraftModel (one teacher-forced append per sequence) is scored like a module: the
    target's own level wrapper agrees with the target everywhere, and a draft's wrapper gives
    the draft's module numbers."""
    from hierspec import TransformersLevel

    itself = distill.evaluate_agreement(TransformersLevel(target), target, data)
    assert itself.greedy_agreement == 1.0
    assert itself.overlap == pytest.approx(1.0, abs=1e-5)
    draft = distill.init_draft(target, distill.DraftSpec("d1", (0,)))
    module = distill.evaluate_agreement(draft, target, data)
    level = distill.evaluate_agreement(TransformersLevel(draft), target, data)
    assert (
        level.num_positions
        == module.num_positions
        == sum(
            sequence.numel() - start
            for sequence, start in zip(data.sequences, data.response_starts)
        )
    )
    assert level.greedy_agreement == pytest.approx(module.greedy_agreement, abs=1e-9)
    assert level.overlap == pytest.approx(module.overlap, abs=1e-5)


def test_bad_input(target):
    with pytest.raises(ValueError, match="layers must be strictly increasing, got \\(2, 1\\)"):
        distill.DraftSpec("x", (2, 1))
    with pytest.raises(
        ValueError, match="trainable_layers must be None or an int in \\[0, 2\\], got 3"
    ):
        distill.DraftSpec("x", (0, 1), trainable_layers=3)
    with pytest.raises(ValueError, match="spec.layers must index the target's 4 layers"):
        distill.init_draft(target, distill.DraftSpec("x", (0, 4)))
    with pytest.raises(ValueError, match="steps must be an int >= 1, got 0"):
        distill.DistillConfig(steps=0)
    with pytest.raises(ValueError, match="loss_on must be 'response' or 'all', got 'some'"):
        distill.DistillConfig(loss_on="some")
    with pytest.raises(ValueError, match="sample_fraction must be in \\[0, 1\\], got 2"):
        teacher.TeacherDataConfig(sample_fraction=2)
    with pytest.raises(ValueError, match="sample must have one entry per prompt \\(2\\), got 1"):
        teacher.generate_teacher_data(target, _prompts(2), 4, [True], torch.Generator(), 4, None)


# ---------------------------------------------------------------------------------------------
# Teacher-forced corpus windows


def _windows(count: int, length: int, seed: int = 7) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (length,), generator=generator) for _ in range(count)]


@pytest.fixture(scope="module")
def window_data(target):
    return teacher.teacher_forced_data(target, _windows(5, 12), top_k=8, batch_size=2)


def test_teacher_forced_topk_is_the_targets_own(target, window_data):
    """One batched pass per window batch stores the target's own top-k log-softmax at every
    position of every window, and every position but the first token is a training target."""
    assert window_data.response_starts == (1,) * 5
    assert window_data.num_targets == 5 * 11
    for window, ids, values in zip(
        _windows(5, 12), window_data.topk_ids, window_data.topk_logprobs
    ):
        with torch.no_grad():
            logprobs = torch.log_softmax(target(window[:-1][None]).logits[0], dim=-1)
        expected_values, expected_ids = logprobs.topk(8, dim=-1)
        torch.testing.assert_close(values, expected_values, atol=1e-5, rtol=0)
        assert torch.equal(ids[:, 0], expected_ids[:, 0])
        # The stored ids carry the stored values: the target's log-probabilities of those ids.
        torch.testing.assert_close(logprobs.gather(-1, ids), values, atol=1e-5, rtol=0)


def _characters(text: str) -> list[int]:
    return [ord(character) for character in text]


def test_windows_come_only_from_the_train_split():
    from hierspec.family import corpus

    windows = teacher.select_windows(_characters, 40, 64, torch.Generator().manual_seed(3))
    assert len(windows) == 40
    by_name = {(d.source, d.name): d for d in corpus.load_documents()}
    for index, window in enumerate(windows):
        document = by_name[(window.source, window.name)]
        assert corpus.split_of(document) == "train"
        assert window.source == corpus.SOURCES[index % len(corpus.SOURCES)]
        assert (
            window.token_ids.tolist()
            == _characters(document.text)[window.start : window.start + 64]
        )
    # Seeded: the same generator seed selects the same windows, another seed others.
    again = teacher.select_windows(_characters, 40, 64, torch.Generator().manual_seed(3))
    assert [(w.name, w.start) for w in again] == [(w.name, w.start) for w in windows]
    other = teacher.select_windows(_characters, 40, 64, torch.Generator().manual_seed(4))
    assert [(w.name, w.start) for w in other] != [(w.name, w.start) for w in windows]


def test_distillation_on_windows_and_responses_is_reproducible(target, data, window_data):
    """Same seed, same weights, on the pooled responses + windows; evaluating at checkpoints
    does not change the training, and the last checkpoint is the final agreement."""
    spec = distill.DraftSpec("d2", (0, 3))
    mixed = teacher.TeacherData.concatenate([data, window_data])
    assert len(mixed.sequences) == len(data.sequences) + len(window_data.sequences)
    assert mixed.hidden is None  # the windows carry no hidden states
    config = distill.DistillConfig(steps=10, learning_rate=3e-3, warmup_steps=2, seed=2)
    first, result = distill.distill(
        target, spec, mixed, config, evaluation=data, evaluate_at=(4, 10)
    )
    second, plain = distill.distill(target, spec, mixed, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert [point.step for point in result.checkpoints] == [4, 10]
    assert result.checkpoints[-1].agreement == result.final
    assert result.checkpoints[0].train_seconds <= result.checkpoints[1].train_seconds
    assert plain.checkpoints == ()
    third, _ = distill.distill(target, spec, mixed, dataclasses.replace(config, seed=3))
    assert any(
        not torch.equal(a, b)
        for a, b in zip(first.state_dict().values(), third.state_dict().values())
    )


def test_config_key_and_sources():
    """A configuration without windows keeps the key formula of the drafts distilled before
    windows existed (``asdict`` without the ``windows`` entry); with windows, it is in."""
    from dataclasses import asdict

    old = distill.DistillConfig(windows=None)
    assert old.key() == {k: v for k, v in asdict(old).items() if k != "windows"}
    new = distill.DistillConfig(windows=teacher.CorpusWindowsConfig())
    assert new.key() == asdict(new)
    assert distill.DistillConfig(data=None, windows=teacher.CorpusWindowsConfig()).data is None


def test_bad_window_input(target):
    with pytest.raises(ValueError, match="num_windows must be an int >= 1, got 0"):
        teacher.CorpusWindowsConfig(num_windows=0)
    with pytest.raises(ValueError, match="window_tokens must be an int >= 2, got 1"):
        teacher.CorpusWindowsConfig(window_tokens=1)
    with pytest.raises(ValueError, match="top_k must be an int >= 1, got -3"):
        teacher.CorpusWindowsConfig(top_k=-3)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 2.5"):
        teacher.CorpusWindowsConfig(batch_size=2.5)
    with pytest.raises(ValueError, match="data and windows must not both be None"):
        distill.DistillConfig(data=None, windows=None)
    with pytest.raises(TypeError, match="windows must be a CorpusWindowsConfig or None, got int"):
        distill.DistillConfig(windows=256)
    with pytest.raises(ValueError, match="window_tokens=10000000 is too long"):
        teacher.select_windows(_characters, 1, 10_000_000, torch.Generator())
    with pytest.raises(ValueError, match="num_windows must be an int >= 1, got 0"):
        teacher.select_windows(_characters, 0, 8, torch.Generator())
    with pytest.raises(ValueError, match="windows must all have one length >= 2, got lengths"):
        teacher.teacher_forced_data(target, [torch.arange(4), torch.arange(5)], 4)
    with pytest.raises(ValueError, match="top_k must be an int in \\[1, 48\\], got 49"):
        teacher.teacher_forced_data(target, [torch.arange(4)], 49)
    with pytest.raises(ValueError, match="evaluate_at must hold step counts in \\[1, 3\\]"):
        distill.distill(
            target,
            distill.DraftSpec("x", (0,)),
            teacher.teacher_forced_data(target, [torch.arange(4)], 4),
            distill.DistillConfig(steps=3),
            evaluate_at=(4,),
        )


def test_distill_command_rejects_bad_data_options(tmp_path, capsys):
    """``hierspec distill`` names the option and the value before touching the cache."""
    from hierspec.cli import main

    assert main(["distill", "--cache", str(tmp_path), "--windows", "-1"]) == 2
    assert "--windows must be >= 0, got -1" in capsys.readouterr().err
    assert main(["distill", "--cache", str(tmp_path), "--prompts", "0", "--windows", "0"]) == 2
    assert "data and windows must not both be None" in capsys.readouterr().err
    assert (
        main(["distill", "--cache", str(tmp_path), "--windows", "4", "--window-tokens", "1"]) == 2
    )
    assert "window_tokens must be an int >= 2, got 1" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
