"""The fused Triton verify kernel equals its torch twin exactly, given the same noise.

Without CUDA the kernel runs in Triton's interpreter (TRITON_INTERPRET=1, tests/conftest.py), so
batches, draft counts and vocabularies stay tiny; small ``block_v`` tiles make the vocabulary
loop run several tiles with a masked tail. With CUDA the same tests run compiled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

pytest.importorskip("triton")

from hierspec import verify, verify_logits
from hierspec.kernels import (
    VerifyNoise,
    draw_verify_noise,
    processed_target_probs,
    verify_torch,
)
from hierspec.kernels import verify_triton as verify_triton_module
from hierspec.kernels.verify_triton import verify_triton

HAS_CUDA = torch.cuda.is_available()
DEVICE = "cuda" if HAS_CUDA else "cpu"
requires_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device (compiled kernel)")


def generator(seed: int) -> torch.Generator:
    return torch.Generator(device=DEVICE).manual_seed(seed)


def random_case(seed, batch, num_draft_tokens, vocab, *, dtype=torch.float32, mask_fraction=0.0):
    """(draft_token_ids, draft_probs, target_logits): partly agreeing draft and target.

    ``mask_fraction`` of the target logits are -inf (as after top-k), never a whole row.
    """
    gen = torch.Generator().manual_seed(seed)
    draft_logits = 4.0 * torch.randn(batch, num_draft_tokens, vocab, generator=gen)
    target_logits = torch.cat([draft_logits, torch.zeros(batch, 1, vocab)], dim=1)
    target_logits += torch.randn(batch, num_draft_tokens + 1, vocab, generator=gen)
    if mask_fraction:
        masked = torch.rand(target_logits.shape, generator=gen) < mask_fraction
        masked[..., 0] = False
        target_logits[masked] = float("-inf")
    draft_probs = torch.softmax(draft_logits, dim=-1)
    draft_token_ids = torch.multinomial(draft_probs.reshape(-1, vocab), 1, generator=gen)
    return (
        draft_token_ids.reshape(batch, num_draft_tokens).to(DEVICE),
        draft_probs.to(dtype).to(DEVICE),
        target_logits.to(dtype).to(DEVICE),
    )


def assert_kernel_equals_twin(draft_token_ids, draft_probs, target, noise, temperature, block_v):
    expected = verify_torch(draft_token_ids, draft_probs, target, noise, temperature=temperature)
    got = verify_triton(
        draft_token_ids, draft_probs, target, noise, temperature=temperature, block_v=block_v
    )
    assert torch.equal(got[0], expected[0]), (got[0], expected[0])
    assert torch.equal(got[1], expected[1]), (got[1], expected[1])
    return expected[1]


SHAPES = [(37, 16), (1000, 256)]  # (vocab, block_v): several tiles and a masked tail
PROPOSALS = ["draft_probs", "one_hot"]


@pytest.mark.parametrize("vocab, block_v", SHAPES)
@pytest.mark.parametrize("num_draft_tokens", [1, 4, 16])
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_kernel_equals_twin_on_probabilities(vocab, block_v, num_draft_tokens, proposal):
    seen_num_accepted = set()
    for seed in range(3):
        draft_token_ids, draft_probs, target_logits = random_case(seed, 6, num_draft_tokens, vocab)
        target_probs = torch.softmax(target_logits, dim=-1)
        draft_probs = draft_probs if proposal == "draft_probs" else None
        noise = draw_verify_noise(6, num_draft_tokens, vocab, generator(100 + seed), DEVICE)
        num_accepted = assert_kernel_equals_twin(
            draft_token_ids, draft_probs, target_probs, noise, None, block_v
        )
        seen_num_accepted.update(num_accepted.tolist())
    assert len(seen_num_accepted) >= 2  # the cases exercise both rejections and acceptances
    # Through the public dispatcher, default tile: the same generator state, the same output.
    by_torch = verify(draft_token_ids, draft_probs, target_probs, generator(9), backend="torch")
    by_triton = verify(draft_token_ids, draft_probs, target_probs, generator(9), backend="triton")
    assert torch.equal(by_torch.output_token_ids, by_triton.output_token_ids)
    assert torch.equal(by_torch.num_accepted, by_triton.num_accepted)


@pytest.mark.parametrize("vocab, block_v", SHAPES)
@pytest.mark.parametrize("num_draft_tokens", [1, 4, 16])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kernel_equals_twin_on_logits(vocab, block_v, num_draft_tokens, temperature):
    """Online softmax in the kernel vs torch.softmax in the twin (masked logits included)."""
    seen_num_accepted = set()
    for seed in range(3):
        draft_token_ids, draft_probs, target_logits = random_case(
            seed, 4, num_draft_tokens, vocab, mask_fraction=0.2
        )
        draft_probs = draft_probs if seed != 1 else None
        noise = draw_verify_noise(4, num_draft_tokens, vocab, generator(200 + seed), DEVICE)
        num_accepted = assert_kernel_equals_twin(
            draft_token_ids, draft_probs, target_logits, noise, temperature, block_v
        )
        seen_num_accepted.update(num_accepted.tolist())
    assert len(seen_num_accepted) >= 2
    by_torch = verify_logits(
        draft_token_ids, draft_probs, target_logits, temperature, generator(9), backend="torch"
    )
    by_triton = verify_logits(
        draft_token_ids, draft_probs, target_logits, temperature, generator(9), backend="triton"
    )
    assert torch.equal(by_torch.output_token_ids, by_triton.output_token_ids)


@pytest.mark.parametrize("vocab, block_v", SHAPES)
@pytest.mark.parametrize("proposal", PROPOSALS)
def test_greedy_kernel_equals_twin_and_target_argmax(vocab, block_v, proposal):
    """IS_GREEDY: accept iff draft == argmax, emit the argmax; ties go to the first index."""
    batch, num_draft_tokens = 4, 6
    draft_token_ids, draft_probs, target_logits = random_case(5, batch, num_draft_tokens, vocab)
    target_logits -= 100.0  # all logits negative: a masked tail read as 0 would win the argmax
    original_argmax = target_logits.argmax(dim=-1)
    target_logits[:, :, 3] = target_logits.amax(dim=-1)  # plant a tie with token 3
    greedy = target_logits.argmax(dim=-1)
    assert torch.equal(greedy, original_argmax.clamp(max=3))  # ties go to the first index
    draft_token_ids = greedy[:, :num_draft_tokens].clone()
    for row, first_wrong in enumerate([0, 2, 5, num_draft_tokens]):
        if first_wrong < num_draft_tokens:
            draft_token_ids[row, first_wrong] = (greedy[row, first_wrong] + 1) % vocab
    draft_probs = (
        torch.nn.functional.one_hot(draft_token_ids, vocab).float()
        if proposal == "draft_probs"
        else None
    )
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(7), DEVICE)
    num_accepted = assert_kernel_equals_twin(
        draft_token_ids, draft_probs, target_logits, noise, 0.0, block_v
    )
    assert num_accepted.tolist() == [0, 2, 5, num_draft_tokens]
    output_token_ids, _ = verify_triton(
        draft_token_ids, draft_probs, target_logits, noise, temperature=0.0
    )
    for row, accepted in enumerate(num_accepted.tolist()):
        assert (
            output_token_ids[row, : accepted + 1].tolist() == greedy[row, : accepted + 1].tolist()
        )


@pytest.mark.parametrize("proposal", PROPOSALS)
def test_all_accept_when_draft_equals_target(proposal):
    batch, num_draft_tokens, vocab = 4, 4, 37
    draft_token_ids, _, target_logits = random_case(6, batch, num_draft_tokens, vocab)
    target_probs = torch.softmax(target_logits, dim=-1)
    if proposal == "draft_probs":
        draft_probs = target_probs[:, :num_draft_tokens].clone()
    else:  # one-hot proposals are always accepted by a one-hot target at the same token
        draft_probs = None
        target_probs[:, :num_draft_tokens] = torch.nn.functional.one_hot(
            draft_token_ids, vocab
        ).float()
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(8), DEVICE)
    num_accepted = assert_kernel_equals_twin(
        draft_token_ids, draft_probs, target_probs, noise, None, 16
    )
    assert num_accepted.tolist() == [num_draft_tokens] * batch


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("temperature", [None, 1.0])
def test_all_reject_on_disjoint_supports(proposal, temperature):
    """Draft mass on tokens [0, 18), target mass on [18, 37): every first draft is rejected."""
    batch, num_draft_tokens, vocab, split = 4, 4, 37, 18
    gen = torch.Generator().manual_seed(9)
    draft_probs = torch.zeros(batch, num_draft_tokens, vocab)
    draft_probs[..., :split] = torch.softmax(
        torch.randn(batch, num_draft_tokens, split, generator=gen), -1
    )
    draft_token_ids = torch.multinomial(draft_probs.reshape(-1, vocab), 1, generator=gen)
    draft_token_ids = draft_token_ids.reshape(batch, num_draft_tokens).to(DEVICE)
    target_logits = torch.full((batch, num_draft_tokens + 1, vocab), float("-inf"))
    target_logits[..., split:] = torch.randn(
        batch, num_draft_tokens + 1, vocab - split, generator=gen
    )
    target = target_logits if temperature is not None else torch.softmax(target_logits, dim=-1)
    draft_probs = draft_probs.to(DEVICE) if proposal == "draft_probs" else None
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(10), DEVICE)
    num_accepted = assert_kernel_equals_twin(
        draft_token_ids, draft_probs, target.to(DEVICE), noise, temperature, 16
    )
    assert num_accepted.tolist() == [0] * batch
    output_token_ids, _ = verify_torch(
        draft_token_ids, draft_probs, target.to(DEVICE), noise, temperature=temperature
    )
    assert bool((output_token_ids[:, 0] >= split).all())
    assert bool((output_token_ids[:, 1:] == -1).all())


def test_zero_residual_falls_back_to_the_target_row():
    """p <= q everywhere with p(x) < q(x): rejection is forced (u = 1) and max(p - q, 0) == 0."""
    batch, num_draft_tokens, vocab = 2, 1, 37
    gen = torch.Generator().manual_seed(11)
    target_probs = torch.softmax(torch.randn(batch, 2, vocab, generator=gen), dim=-1).to(DEVICE)
    draft_token_ids = torch.tensor([[5], [30]], device=DEVICE)
    draft_probs = target_probs[:, :1].clone()
    draft_probs[0, 0, 5] *= 2.0
    draft_probs[1, 0, 30] *= 2.0
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(12), DEVICE)
    noise = VerifyNoise(uniforms=torch.ones_like(noise.uniforms), exponentials=noise.exponentials)
    num_accepted = assert_kernel_equals_twin(
        draft_token_ids, draft_probs, target_probs, noise, None, 16
    )
    assert num_accepted.tolist() == [0, 0]
    output_token_ids, _ = verify_triton(
        draft_token_ids, draft_probs, target_probs, noise, block_v=16
    )
    expected = (target_probs[:, 0] / noise.exponentials).argmax(dim=-1)
    assert output_token_ids[:, 0].tolist() == expected.tolist()


@pytest.mark.parametrize("temperature", [None, 1.0, 0.6])
def test_acceptance_threshold_is_sharp(temperature):
    """u just below / above p(x)/q(x) must accept / reject: the kernel's p(x) (online softmax for
    logits, tail masked) is within 1e-4 relative of the twin's."""
    batch, num_draft_tokens, vocab = 8, 1, 37
    draft_token_ids, draft_probs, target_logits = random_case(17, batch, num_draft_tokens, vocab)
    target = target_logits if temperature is not None else torch.softmax(target_logits, dim=-1)
    target_probs = target if temperature is None else processed_target_probs(target, temperature)
    target_prob_of_draft = target_probs[:, 0].gather(-1, draft_token_ids)  # [batch, 1]
    draft_probs = draft_probs.clone()
    draft_probs[:, 0].scatter_(-1, draft_token_ids, 2.0 * target_prob_of_draft)  # ratio p/q = 1/2
    ratio = target_prob_of_draft.double() / draft_probs[:, 0].gather(-1, draft_token_ids).double()
    nudge = torch.tensor([1 - 1e-4, 1 + 1e-4] * (batch // 2), dtype=torch.float64, device=DEVICE)
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(18), DEVICE)
    noise = VerifyNoise(uniforms=ratio * nudge.unsqueeze(-1), exponentials=noise.exponentials)
    num_accepted = assert_kernel_equals_twin(
        draft_token_ids, draft_probs, target, noise, temperature, 16
    )
    assert num_accepted.tolist() == [1, 0] * (batch // 2)


def test_race_ties_go_to_the_first_index_across_tiles():
    """Equal race scores in different tiles (block 16): the smallest index wins, as torch.argmax."""
    vocab = 37
    target_probs = torch.full((1, 2, vocab), 0.01, device=DEVICE)
    target_probs[0, :, 20] = 0.3
    target_probs[0, :, 3] = 0.3  # tie with token 20 in the next tile; token 35 in the tail tile
    target_probs[0, :, 35] = 0.3
    draft_token_ids = torch.tensor([[7]], device=DEVICE)  # p(7) = 0.01: rejected with u = 1
    noise = VerifyNoise(
        uniforms=torch.ones(1, 1, dtype=torch.float64, device=DEVICE),
        exponentials=torch.ones(1, vocab, device=DEVICE),
    )
    assert_kernel_equals_twin(draft_token_ids, None, target_probs, noise, None, 16)
    output_token_ids, _ = verify_triton(draft_token_ids, None, target_probs, noise, block_v=16)
    assert output_token_ids.tolist() == [[3, -1]]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_half_precision_logits_accumulate_in_fp32(dtype, backend):
    # 4096 equal logits: every token has probability exactly 1/4096. A softmax sum accumulated
    # in fp16 stalls at 2048 (2048 + 1 rounds back to 2048), in bf16 at 256, giving 1/2048 or
    # 1/256; an acceptance uniform between 1/4096 and 1/2048 then tells them apart.
    vocab = 4096
    draft_token_ids = torch.tensor([[5]], device=DEVICE)
    target_logits = torch.zeros((1, 2, vocab), dtype=dtype, device=DEVICE)
    noise = draw_verify_noise(1, 1, vocab, generator(0), DEVICE)
    noise = noise._replace(
        uniforms=torch.full((1, 1), 1.5 / vocab, dtype=torch.float64, device=DEVICE)
    )
    run = verify_torch if backend == "torch" else verify_triton
    _, num_accepted = run(draft_token_ids, None, target_logits, noise, temperature=1.0)
    assert num_accepted.tolist() == [0]  # 1.5/4096 * 1 > 1/4096: rejected
    noise = noise._replace(uniforms=noise.uniforms * 0.5)
    _, num_accepted = run(draft_token_ids, None, target_logits, noise, temperature=1.0)
    assert num_accepted.tolist() == [1]  # 0.75/4096 <= 1/4096: accepted


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("temperature", [None, 0.8])
def test_half_precision_inputs_equal_the_twin(dtype, temperature):
    batch, num_draft_tokens, vocab = 4, 4, 37
    draft_token_ids, draft_probs, target_logits = random_case(
        13, batch, num_draft_tokens, vocab, dtype=dtype
    )
    target = (
        target_logits
        if temperature is not None
        else torch.softmax(target_logits.float(), -1).to(dtype)
    )
    noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(14), DEVICE)
    assert_kernel_equals_twin(draft_token_ids, draft_probs, target, noise, temperature, 16)


def test_triton_backend_on_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(verify_triton_module, "interpreter_enabled", lambda: False)
    draft_token_ids, draft_probs, target_logits = random_case(15, 1, 1, 5)
    with pytest.raises(ValueError, match=r"backend='triton' got CPU tensors.*TRITON_INTERPRET=1"):
        verify(
            draft_token_ids.cpu(),
            draft_probs.cpu(),
            torch.softmax(target_logits, -1).cpu(),
            torch.Generator().manual_seed(0),
            backend="triton",
        )


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("temperature", [None, 1.0, 0.0])
def test_compiled_kernel_equals_twin_at_llama_vocabulary(dtype, temperature):
    batch, num_draft_tokens, vocab = 8, 8, 128256
    draft_token_ids, draft_probs, target_logits = random_case(
        16, batch, num_draft_tokens, vocab, dtype=dtype
    )
    target = (
        target_logits
        if temperature is not None
        else torch.softmax(target_logits.float(), -1).to(dtype)
    )
    for seed in range(4):
        noise = draw_verify_noise(batch, num_draft_tokens, vocab, generator(seed), DEVICE)
        for proposals in (draft_probs, None):
            assert_kernel_equals_twin(draft_token_ids, proposals, target, noise, temperature, 1024)


AOT_SCRIPT = textwrap.dedent("""
    import itertools, re
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, compile
    from hierspec.kernels.verify_triton import verify_kernel
    for dtype, has_draft_probs, logits, greedy in itertools.product(
        ["fp32", "fp16", "bf16"], [True, False], [False, True], [False, True]
    ):
        if greedy and not logits:
            continue
        signature = {
            "output_token_ids_ptr": "*i64", "num_accepted_ptr": "*i64",
            "draft_token_ids_ptr": "*i64", "draft_probs_ptr": "*" + dtype,
            "target_ptr": "*" + dtype, "uniforms_ptr": "*fp64", "exponentials_ptr": "*fp32",
            "inv_temperature": "fp32", "num_draft_tokens": "i32", "vocab_size": "i32",
        }
        flags = {"HAS_DRAFT_PROBS": has_draft_probs, "TARGET_IS_LOGITS": logits,
                 "IS_GREEDY": greedy, "BLOCK_V": 1024, "BLOCK_G": 16}
        signature.update({name: "constexpr" for name in flags})
        kernel = compile(ASTSource(verify_kernel, signature, flags),
                         target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        ptx = kernel.asm["ptx"]
        assert len(kernel.asm["cubin"]) > 0
        if not logits:  # the probability path must use only IEEE-rounded division
            assert "div.rn.f32" in ptx and not re.search(r"div\\.(full|approx)\\.f32", ptx)
    print("compiled")
    """)


@pytest.mark.slow
def test_kernel_compiles_for_h100_without_a_gpu():
    """Compiling ahead of time to sm_90 cubin catches code that only the interpreter accepts."""
    import triton

    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    if not os.path.exists(ptxas):
        pytest.skip(f"no ptxas bundled with triton at {ptxas}")
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", AOT_SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compiled" in result.stdout


@pytest.mark.parametrize("bad_id", [8, -1, 2**40])
@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("temperature", [None, 1.0, 0.0])
def test_out_of_range_draft_ids_without_validation_agree(bad_id, proposal, temperature):
    # validate=False skips the id check; both backends then reject the id (probability 0) and
    # never emit it, with identical outputs, instead of one raising and one reading past the row.
    vocab = 8
    draft_token_ids, draft_probs, target_logits = random_case(21, 3, 3, vocab)
    draft_token_ids[1, 0] = bad_id
    draft_token_ids[2, 2] = bad_id
    draft_probs = draft_probs if proposal == "draft_probs" else None
    target = target_logits if temperature is not None else torch.softmax(target_logits, -1)
    outputs = {
        backend: verify(
            draft_token_ids, draft_probs, target, generator(22), backend, validate=False
        )
        if temperature is None
        else verify_logits(
            draft_token_ids,
            draft_probs,
            target,
            temperature,
            generator(22),
            backend,
            validate=False,
        )
        for backend in ("torch", "triton")
    }
    torch.testing.assert_close(outputs["torch"], outputs["triton"], rtol=0, atol=0)
    output_token_ids, num_accepted = outputs["torch"]
    assert int(num_accepted[1]) == 0 and int(num_accepted[2]) <= 2
    assert bool(((output_token_ids >= -1) & (output_token_ids < vocab)).all())
    with pytest.raises(ValueError, match=r"draft_token_ids must be in \[0, vocab=8\)"):
        verify(draft_token_ids, draft_probs, torch.softmax(target_logits, -1), generator(0))


@pytest.mark.parametrize("backend", ["torch", "triton"])
# (0 - 1e38) * 1e5 rounds to -inf (probability 0, as it should): numpy, under the interpreter,
# warns about that harmless overflow.
@pytest.mark.filterwarnings("ignore:overflow encountered in multiply:RuntimeWarning")
def test_small_temperature_with_huge_logits_does_not_overflow(backend):
    # (x * 1e5) overflows float32 for x = 1e38; the row max is subtracted before scaling.
    draft_token_ids = torch.tensor([[2]], device=DEVICE)
    target_logits = torch.tensor([[[0.0, 0.0, 1e38]] * 2], device=DEVICE)
    output_token_ids, num_accepted = verify_logits(
        draft_token_ids, None, target_logits, 1e-5, generator(0), backend
    )
    assert output_token_ids.tolist() == [[2, 2]] and num_accepted.tolist() == [1]
    # the same row through the probability path
    probs = processed_target_probs(target_logits, 1e-5)
    assert probs.tolist() == [[[0.0, 0.0, 1.0]] * 2]
