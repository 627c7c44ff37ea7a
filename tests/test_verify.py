"""hierspec.verify: result layout, noise, losslessness (distribution tests) and bad input.

These run the torch twin (the CPU path); tests/test_verify_kernel.py proves the Triton kernel
equal to it. Distribution tests use fixed seeds, so they are deterministic.
"""

from __future__ import annotations

import math

import pytest
import torch

import hierspec
from hierspec import VerifyResult, verify, verify_logits
from hierspec.kernels import draw_verify_noise
from hierspec.testing import chi_square_test
from hierspec.verify import verify_greedy

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def random_case(seed: int, batch: int, num_draft_tokens: int, vocab: int):
    """Draft / target distributions that partly agree; draft tokens drawn from the draft."""
    gen = torch.Generator().manual_seed(seed)
    draft_logits = 2.0 * torch.randn(batch, num_draft_tokens, vocab, generator=gen)
    target_logits = torch.cat([draft_logits, torch.zeros(batch, 1, vocab)], dim=1)
    target_logits += torch.randn(batch, num_draft_tokens + 1, vocab, generator=gen)
    draft_probs = torch.softmax(draft_logits, dim=-1)
    draft_token_ids = torch.multinomial(draft_probs.reshape(-1, vocab), 1, generator=gen)
    draft_token_ids = draft_token_ids.reshape(batch, num_draft_tokens)
    return (
        draft_token_ids.to(DEVICE),
        draft_probs.to(DEVICE),
        torch.softmax(target_logits, dim=-1).to(DEVICE),
    )


def assert_layout(result: VerifyResult, draft_token_ids: torch.Tensor, vocab: int) -> None:
    """Accepted drafts, then one sampled token in [0, vocab), then -1."""
    output_token_ids, num_accepted = result
    batch, num_draft_tokens = draft_token_ids.shape
    assert output_token_ids.shape == (batch, num_draft_tokens + 1)
    assert output_token_ids.dtype == torch.int64 and num_accepted.dtype == torch.int64
    for row in range(batch):
        accepted = int(num_accepted[row])
        assert 0 <= accepted <= num_draft_tokens
        assert torch.equal(output_token_ids[row, :accepted], draft_token_ids[row, :accepted])
        assert 0 <= int(output_token_ids[row, accepted]) < vocab
        assert bool((output_token_ids[row, accepted + 1 :] == -1).all())


def test_result_unpacks_and_has_documented_layout():
    draft_token_ids, draft_probs, target_probs = random_case(
        0, batch=8, num_draft_tokens=4, vocab=11
    )
    result = verify(draft_token_ids, draft_probs, target_probs, generator(1))
    assert isinstance(result, VerifyResult)
    output_token_ids, num_accepted = result
    assert output_token_ids is result.output_token_ids and num_accepted is result.num_accepted
    assert_layout(result, draft_token_ids, vocab=11)
    assert hierspec.verify is verify


def test_same_generator_state_gives_same_output_and_noise_is_not_reused():
    draft_token_ids, draft_probs, target_probs = random_case(
        2, batch=16, num_draft_tokens=4, vocab=50
    )
    first = verify(draft_token_ids, draft_probs, target_probs, generator(7))
    again = verify(draft_token_ids, draft_probs, target_probs, generator(7))
    assert torch.equal(first.output_token_ids, again.output_token_ids)
    assert torch.equal(first.num_accepted, again.num_accepted)
    # One generator, two calls: the second call draws fresh noise.
    shared = generator(7)
    verify(draft_token_ids, draft_probs, target_probs, shared)
    second = verify(draft_token_ids, draft_probs, target_probs, shared)
    assert not torch.equal(first.output_token_ids, second.output_token_ids)


def test_global_rng_is_never_read():
    draft_token_ids, draft_probs, target_probs = random_case(
        3, batch=4, num_draft_tokens=2, vocab=9
    )
    state = torch.get_rng_state()
    verify(draft_token_ids, draft_probs, target_probs)  # generator=None: a fresh, private one
    assert torch.equal(state, torch.get_rng_state())


def test_noise_layout():
    noise = draw_verify_noise(4, 3, 1000, generator(5), DEVICE)
    assert noise.uniforms.shape == (4, 3) and noise.uniforms.dtype == torch.float64
    assert bool(((noise.uniforms > 0) & (noise.uniforms <= 1)).all())
    assert noise.exponentials.shape == (4, 1000) and noise.exponentials.dtype == torch.float32
    assert bool(((noise.exponentials > 0) & torch.isfinite(noise.exponentials)).all())
    # Draw order: the acceptance uniforms first, from the caller's generator.
    expected = 1.0 - torch.rand((4, 3), dtype=torch.float64, generator=generator(5), device=DEVICE)
    assert torch.equal(noise.uniforms, expected)
    # Exp(1): mean 1, variance 1 (4000 samples: 6 standard errors is a loose, safe bound).
    assert abs(float(noise.exponentials.double().mean()) - 1.0) < 6 / math.sqrt(4000)


PROPOSALS = ["draft_probs", "one_hot"]


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_every_emitted_token_follows_the_target(proposal):
    """Position i, given drafts < i accepted, follows target row i: accepted, recovered or bonus."""
    num_draft_tokens, batch = 2, 40000
    draft_rows = torch.tensor(
        [[0.40, 0.25, 0.15, 0.10, 0.06, 0.04], [0.05, 0.05, 0.30, 0.30, 0.20, 0.10]]
    )
    target_rows = torch.tensor(
        [
            [0.20, 0.30, 0.10, 0.25, 0.10, 0.05],
            [0.10, 0.05, 0.35, 0.15, 0.15, 0.20],
            [0.30, 0.10, 0.10, 0.10, 0.20, 0.20],  # the bonus row
        ]
    )
    gen = torch.Generator().manual_seed(11)
    draft_token_ids = torch.multinomial(draft_rows, batch, replacement=True, generator=gen).T
    draft_probs = draft_rows.expand(batch, -1, -1) if proposal == "draft_probs" else None
    output_token_ids, num_accepted = verify(
        draft_token_ids.contiguous().to(DEVICE),
        draft_probs.to(DEVICE) if draft_probs is not None else None,
        target_rows.expand(batch, -1, -1).to(DEVICE),
        generator(12),
        backend="torch",
    )
    for position in range(num_draft_tokens + 1):
        reached = num_accepted >= position
        assert int(reached.sum()) > 1000  # expected counts >= 50 per cell
        tokens = output_token_ids[reached, position].cpu()
        counts = torch.bincount(tokens, minlength=target_rows.shape[-1])
        result = chi_square_test(counts, target_rows[position])
        assert result.p_value > 1e-3, (position, result)


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_acceptance_rate_is_the_overlap(proposal):
    """P(accept) = sum_x min(p(x), q(x)); one-hot proposals: sum_x q(x) p(x)."""
    batch = 40000
    draft_row = torch.tensor([0.5, 0.2, 0.1, 0.1, 0.05, 0.05])
    target_row = torch.tensor([0.1, 0.3, 0.3, 0.1, 0.1, 0.1])
    gen = torch.Generator().manual_seed(21)
    draft_token_ids = torch.multinomial(draft_row, batch, replacement=True, generator=gen)
    draft_probs = draft_row.expand(batch, 1, -1) if proposal == "draft_probs" else None
    _, num_accepted = verify(
        draft_token_ids.unsqueeze(1).to(DEVICE),
        draft_probs.to(DEVICE) if draft_probs is not None else None,
        target_row.expand(batch, 2, -1).to(DEVICE),
        generator(22),
        backend="torch",
    )
    if proposal == "draft_probs":
        expected = float(torch.minimum(draft_row, target_row).sum())  # 0.6
    else:
        expected = float((draft_row * target_row).sum())  # 0.17
    measured = float(num_accepted.double().mean())
    standard_error = math.sqrt(expected * (1 - expected) / batch)
    assert abs(measured - expected) < 4.5 * standard_error, (measured, expected)


def test_greedy_logits_accept_exactly_the_argmax_prefix():
    vocab, num_draft_tokens = 13, 5
    gen = torch.Generator().manual_seed(31)
    target_logits = torch.randn(3, num_draft_tokens + 1, vocab, generator=gen)
    greedy = target_logits.argmax(dim=-1)
    draft_token_ids = greedy[:, :num_draft_tokens].clone()
    draft_token_ids[0, 2] = (greedy[0, 2] + 1) % vocab  # row 0: 2 accepted
    draft_token_ids[1, 0] = (greedy[1, 0] + 3) % vocab  # row 1: 0 accepted; row 2: all 5
    output_token_ids, num_accepted = verify_logits(
        draft_token_ids.to(DEVICE), None, target_logits.to(DEVICE), 0.0, generator(32)
    )
    assert num_accepted.tolist() == [2, 0, 5]
    assert output_token_ids[0].tolist() == greedy[0, :3].tolist() + [-1] * 3
    assert output_token_ids[1].tolist() == greedy[1, :1].tolist() + [-1] * 5
    assert output_token_ids[2].tolist() == greedy[2].tolist()


@pytest.mark.parametrize("seed", range(4))
def test_greedy_variant_is_verify_on_one_hot_rows(seed):
    # verify_greedy must return what verify returns on one-hot target rows, for any draft rows
    # that gave their tokens positive probability (greedy levels' one-hot rows included), and
    # reject an out-of-range id; it draws no noise.
    vocab, num_draft_tokens, batch = 11, 4, 64
    gen = torch.Generator().manual_seed(seed)
    target_token_ids = torch.randint(0, 3, (batch, num_draft_tokens + 1), generator=gen)
    draft_token_ids = torch.randint(0, 3, (batch, num_draft_tokens), generator=gen)
    draft_token_ids[0, 0] = vocab  # out of range: rejected by both
    target_probs = torch.nn.functional.one_hot(target_token_ids, vocab).float()
    draft_probs = torch.rand(batch, num_draft_tokens, vocab, generator=gen) + 0.01
    draft_probs /= draft_probs.sum(dim=-1, keepdim=True)
    one_hot_drafts = torch.nn.functional.one_hot(draft_token_ids.clamp(max=vocab - 1), vocab)
    expected_results = [
        verify(draft_token_ids, rows, target_probs, generator(seed), validate=False)
        for rows in (draft_probs, one_hot_drafts.float(), None)
    ]
    fast = verify_greedy(draft_token_ids, target_token_ids)
    for expected in expected_results:
        assert torch.equal(fast.output_token_ids, expected.output_token_ids)
        assert torch.equal(fast.num_accepted, expected.num_accepted)
    assert int(fast.num_accepted[0]) == 0
    with pytest.raises(ValueError, match=r"target_token_ids must have shape \(64, 5\)"):
        verify_greedy(draft_token_ids, target_token_ids[:, :-1])


def test_logits_variant_is_verify_on_the_softmax():
    draft_token_ids, draft_probs, target_probs = random_case(
        41, batch=6, num_draft_tokens=3, vocab=20
    )
    target_logits = target_probs.log() * 0.7  # softmax(target_logits / 0.7) == target_probs
    from_logits = verify_logits(draft_token_ids, draft_probs, target_logits, 0.7, generator(42))
    from_probs = verify(draft_token_ids, draft_probs, target_probs, generator(42))
    # Same noise, distributions equal up to rounding: identical decisions for these seeds.
    assert torch.equal(from_logits.output_token_ids, from_probs.output_token_ids)


# ---------------------------------------------------------------------------------------------
# Bad input: every error names the argument and the offending value.

BATCH, DRAFTS, VOCAB = 2, 3, 5


def valid_inputs():
    draft_token_ids = torch.tensor([[0, 1, 2], [3, 4, 0]], device=DEVICE)
    draft_probs = torch.full((BATCH, DRAFTS, VOCAB), 0.2, device=DEVICE)
    target = torch.full((BATCH, DRAFTS + 1, VOCAB), 0.2, device=DEVICE)
    return draft_token_ids, draft_probs, target


def with_value(tensor: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


BAD_PROBS_INPUTS = [
    # (description, edit of (ids, draft_probs, target_probs), exception, message regex)
    (
        "nan target",
        lambda i, d, t: (i, d, with_value(t, (1, 2, 3), float("nan"))),
        ValueError,
        r"target_probs must be finite and >= 0; target_probs\[1, 2, 3\] = nan",
    ),
    (
        "inf draft",
        lambda i, d, t: (i, with_value(d, (0, 1, 4), float("inf")), t),
        ValueError,
        r"draft_probs must be finite and >= 0; draft_probs\[0, 1, 4\] = inf",
    ),
    (
        "negative target",
        lambda i, d, t: (i, d, with_value(t, (0, 0, 1), -0.5)),
        ValueError,
        r"target_probs\[0, 0, 1\] = -0.5",
    ),
    (
        "zero target row",
        lambda i, d, t: (i, d, with_value(t, (1, 3), 0.0)),
        ValueError,
        r"target_probs\[1, 3\] is 0 everywhere",
    ),
    (
        "negative id",
        lambda i, d, t: (with_value(i, (0, 2), -1), d, t),
        ValueError,
        r"draft_token_ids must be in \[0, vocab=5\); draft_token_ids\[0, 2\] = -1",
    ),
    (
        "id too large",
        lambda i, d, t: (with_value(i, (1, 0), 5), d, t),
        ValueError,
        r"draft_token_ids\[1, 0\] = 5",
    ),
    (
        "drafted token has q = 0",
        lambda i, d, t: (i, with_value(d, (1, 1, 4), 0.0), t),
        ValueError,
        r"draft_probs\[1, 1, 4\] = 0.0 for draft_token_ids\[1, 1\] = 4",
    ),
    (
        "float ids",
        lambda i, d, t: (i.float(), d, t),
        TypeError,
        r"draft_token_ids must be int64; got dtype torch.float32",
    ),
    ("int32 ids", lambda i, d, t: (i.int(), d, t), TypeError, r"got dtype torch.int32"),
    (
        "float64 target",
        lambda i, d, t: (i, d, t.double()),
        TypeError,
        r"target_probs must be float32, float16 or bfloat16; got dtype torch.float64",
    ),
    (
        "list ids",
        lambda i, d, t: (i.tolist(), d, t),
        TypeError,
        r"draft_token_ids must be a torch.Tensor; got list",
    ),
    (
        "1-d ids",
        lambda i, d, t: (i[0], d, t),
        ValueError,
        r"draft_token_ids must have shape \[batch, num_draft_tokens\]; got shape \(3,\)",
    ),
    (
        "no drafts",
        lambda i, d, t: (i[:, :0], d, t),
        ValueError,
        r"num_draft_tokens >= 1; got shape \(2, 0\)",
    ),
    (
        "target batch",
        lambda i, d, t: (i, d, t[:1]),
        ValueError,
        r"target_probs must have shape \[batch=2, num_draft_tokens \+ 1=4, vocab\]; "
        r"got shape \(1, 4, 5\)",
    ),
    ("target positions", lambda i, d, t: (i, d, t[:, :3]), ValueError, r"got shape \(2, 3, 5\)"),
    (
        "draft vocab",
        lambda i, d, t: (i, d[..., :4], t),
        ValueError,
        r"draft_probs must have shape \[batch=2, num_draft_tokens=3, vocab=5\]; "
        r"got shape \(2, 3, 4\)",
    ),
    (
        "device mismatch",
        lambda i, d, t: (i, torch.empty(d.shape, device="meta"), t),
        ValueError,
        r"draft_probs is on meta but target_probs is on",
    ),
]


@pytest.mark.parametrize(
    "edit, error, match",
    [case[1:] for case in BAD_PROBS_INPUTS],
    ids=[c[0] for c in BAD_PROBS_INPUTS],
)
def test_bad_probability_inputs_are_refused(edit, error, match):
    draft_token_ids, draft_probs, target = edit(*valid_inputs())
    with pytest.raises(error, match=match):
        verify(draft_token_ids, draft_probs, target, generator(0))


BAD_LOGITS_INPUTS = [
    (
        "nan logit",
        lambda t: with_value(t, (0, 3, 2), float("nan")),
        1.0,
        ValueError,
        r"target_logits must be neither NaN nor \+inf; target_logits\[0, 3, 2\] = nan",
    ),
    (
        "+inf logit",
        lambda t: with_value(t, (1, 0, 0), float("inf")),
        1.0,
        ValueError,
        r"target_logits\[1, 0, 0\] = inf",
    ),
    (
        "row of -inf",
        lambda t: with_value(t, (1, 2), float("-inf")),
        1.0,
        ValueError,
        r"target_logits\[1, 2\] is -inf everywhere",
    ),
    (
        "negative temperature",
        lambda t: t,
        -1.0,
        ValueError,
        r"temperature must be finite and >= 0; got -1.0",
    ),
    (
        "nan temperature",
        lambda t: t,
        float("nan"),
        ValueError,
        r"temperature must be finite and >= 0; got nan",
    ),
    ("bool temperature", lambda t: t, True, TypeError, r"temperature must be a float; got True"),
    (
        "tiny temperature",
        lambda t: t,
        1e-9,
        ValueError,
        r"temperature must be 0 \(greedy\) or >= 1e-05, got 1e-09",
    ),
]


@pytest.mark.parametrize(
    "edit, temperature, error, match",
    [case[1:] for case in BAD_LOGITS_INPUTS],
    ids=[c[0] for c in BAD_LOGITS_INPUTS],
)
def test_bad_logits_inputs_are_refused(edit, temperature, error, match):
    draft_token_ids, draft_probs, target = valid_inputs()
    with pytest.raises(error, match=match):
        verify_logits(draft_token_ids, draft_probs, edit(target), temperature, generator(0))


def test_masked_logits_are_allowed_and_never_emitted():
    _, _, target = valid_inputs()
    draft_token_ids = torch.tensor([[0, 1, 2], [4, 0, 1]], device=DEVICE)
    target_logits = target.log()
    target_logits[:, :, 4] = float("-inf")  # token 4 masked everywhere (e.g. by top-k)
    output_token_ids, num_accepted = verify_logits(
        draft_token_ids, None, target_logits, 1.0, generator(3)
    )
    assert int(num_accepted[1]) == 0  # row 1 drafts token 4 first: probability 0, rejected
    assert not bool((output_token_ids == 4).any())


def test_bad_backend_and_generator_are_refused():
    draft_token_ids, draft_probs, target = valid_inputs()
    with pytest.raises(
        ValueError, match=r"backend must be one of \('auto', 'torch', 'triton'\); got 'cuda'"
    ):
        verify(draft_token_ids, draft_probs, target, generator(0), backend="cuda")
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator or None; got int"):
        verify(draft_token_ids, draft_probs, target, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generator_on_another_device_is_refused():
    draft_token_ids, draft_probs, target = valid_inputs()
    with pytest.raises(ValueError, match=r"generator is on cpu but the inputs are on cuda"):
        verify(draft_token_ids, draft_probs, target, torch.Generator().manual_seed(0))
