"""Models with exactly known behaviour, for tests and benchmarks (no downloads, all seeded).

Synthetic levels (:class:`MarkovLevel`) implement :class:`hierspec.protocol.DraftModel` with a
next-token distribution that depends only on the last token (a Markov chain), so every exact
quantity is computable:

- :func:`synthetic_hierarchy` builds candidates with EXACTLY known acceptance rates. The vocabulary
  is split into disjoint blocks, one per model; the target's distribution lives on its own block
  (a random Markov transition) and each cheaper model mixes the next one with noise on its own
  block: ``p_i = rho_i * p_{i+1} + (1 - rho_i) * r_i``. As ``r_i`` lives outside the support of
  ``p_{i+1}``, ``sum_x min(p_i(x), p_{i+1}(x)) = rho_i`` at EVERY context, so acceptance is an
  exact i.i.d. Bernoulli at temperature 1 and ``acceptance[i][j] = rho_i * ... * rho_{j-1}``.
- :func:`markov_models` builds candidates with overlapping random distributions (drafts are noisy
  copies of the target), for distributional tests where the exact law of the output is the
  target's transition matrix.
- Costs: each :meth:`MarkovLevel.append` of ``n`` tokens advances a shared :class:`VirtualClock`
  by ``cost_fn(n)`` seconds (deterministic) and, optionally, busy-waits that long in real time
  (for benchmarks of the engine's own overhead).

:func:`tiny_llama` / :func:`tiny_llama_family` build tiny random ``LlamaForCausalLM`` models in
code.
:func:`chi_square_test` is a goodness-of-fit test that needs no scipy.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "AffineCost",
    "ChiSquareResult",
    "MarkovLevel",
    "SyntheticHierarchy",
    "VirtualClock",
    "chi_square_test",
    "first_two_token_counts",
    "markov_models",
    "long_output_transition_test",
    "markov_transition_test",
    "synthetic_hierarchy",
    "tiny_llama",
    "tiny_llama_family",
]


class VirtualClock:
    """A deterministic clock: synthetic levels advance it by the cost of each forward pass."""

    def __init__(self) -> None:
        self.elapsed = 0.0  # seconds

    def advance(self, seconds: float) -> None:
        self.elapsed += seconds


@dataclass(frozen=True)
class AffineCost:
    """Cost of a pass over ``n`` tokens: ``base + per_token * (n - 1)`` seconds."""

    base: float
    per_token: float = 0.0

    def __post_init__(self) -> None:
        if not (self.base > 0 and math.isfinite(self.base)):
            raise ValueError(f"base must be a finite number > 0, got {self.base!r}")
        if not (self.per_token >= 0 and math.isfinite(self.per_token)):
            raise ValueError(f"per_token must be a finite number >= 0, got {self.per_token!r}")

    def __call__(self, num_tokens: int) -> float:
        return self.base + self.per_token * (num_tokens - 1)


class MarkovLevel:
    """A :class:`~hierspec.protocol.DraftModel` whose logits depend only on the last token.

    Args:
        log_probs: ``[vocab, vocab]`` float32; row ``t`` = log next-token probabilities after token
            ``t`` (``-inf`` for impossible tokens).
        cost_fn: seconds a pass over ``n`` tokens costs (virtual, and real with ``busy_wait``).
        clock: the :class:`VirtualClock` to advance (shared by the levels of one hierarchy).
        busy_wait: also spin for ``cost_fn(n)`` seconds of real time in each pass.
        record_history: keep the processed tokens (``history``), for rollback tests.
            ``pass_sizes`` (tokens per pass since the last reset) is always recorded.
        name: for ``repr``.
    """

    def __init__(
        self,
        log_probs: torch.Tensor,
        cost_fn: Callable[[int], float] = AffineCost(1e-3),
        clock: VirtualClock | None = None,
        busy_wait: bool = False,
        record_history: bool = True,
        name: str = "markov",
    ) -> None:
        if log_probs.dim() != 2 or log_probs.shape[0] != log_probs.shape[1]:
            raise ValueError(
                f"log_probs must be [vocab, vocab], got shape {tuple(log_probs.shape)}"
            )
        self.log_probs = log_probs.float()
        self.cost_fn = cost_fn
        self.clock = clock if clock is not None else VirtualClock()
        self.busy_wait = busy_wait
        self.record_history = record_history
        self.name = name
        self.history: list[int] = []
        self.pass_sizes: list[
            int
        ] = []  # tokens of each pass since the last reset (prefill included)
        self._length = 0

    @property
    def vocab_size(self) -> int:
        return self.log_probs.shape[0]

    @property
    def device(self) -> torch.device:
        return self.log_probs.device

    @property
    def length(self) -> int:
        return self._length

    def reset(self) -> None:
        self.history = []
        self.pass_sizes = []
        self._length = 0

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Logits ``[1, n, vocab]`` for ``token_ids`` ``[1, n]``.

        Row ``i`` is ``log_probs[token_i]``.
        """
        num_tokens = token_ids.shape[1]
        cost = self.cost_fn(num_tokens)
        if self.busy_wait:
            deadline = time.perf_counter() + cost
            while time.perf_counter() < deadline:
                pass
        self.clock.advance(cost)
        if self.record_history:
            self.history.extend(token_ids[0].tolist())
        self._length += num_tokens
        self.pass_sizes.append(num_tokens)
        return self.log_probs[token_ids]

    def truncate(self, length: int) -> None:
        assert 0 <= length <= self._length, (length, self._length)
        self._length = length
        if self.record_history:
            del self.history[length:]

    def __repr__(self) -> str:
        return f"MarkovLevel({self.name}, length={self._length})"


@dataclass(frozen=True)
class SyntheticHierarchy:
    """Candidates with known acceptance and costs (index = model, cheapest first)."""

    models: tuple[MarkovLevel, ...]
    acceptance: tuple[tuple[float, ...], ...]  # [M][M], acceptance[i][j] for i < j, 1 elsewhere
    cost_fns: tuple[Callable[[int], float], ...]
    clock: VirtualClock

    def costs_table(self, max_tokens: int) -> list[list[float]]:
        """``[M][max_tokens]``: ``costs[m][n - 1]`` = cost of a pass of model ``m`` over ``n``
        tokens (the ``costs`` argument of ``hierspec.evaluate``)."""
        return [[cost(n) for n in range(1, max_tokens + 1)] for cost in self.cost_fns]


def _log(probs: torch.Tensor) -> torch.Tensor:
    return torch.where(probs > 0, probs.log(), torch.full_like(probs, -math.inf))


def synthetic_hierarchy(
    rhos: Sequence[float],
    cost_fns: Sequence[Callable[[int], float]],
    block_size: int = 4,
    target_block_size: int = 8,
    sharpness: float = 1.0,
    seed: int = 0,
    busy_wait: bool = False,
    record_history: bool = True,
) -> SyntheticHierarchy:
    """``len(rhos) + 1`` candidates where model ``i`` accepts model ``i-1``'s drafts with
    probability exactly ``rhos[i-1]`` at every context (temperature 1, no top-k / top-p).

    Vocabulary: ``target_block_size + (M - 1) * block_size`` tokens; block ``i`` belongs to model
    ``i``. Rows of the target's transition are ``softmax(sharpness * N(0, 1))`` on its block;
    model ``i`` < target: ``p_i = rho_i p_{i+1} + (1 - rho_i) r_i`` with ``r_i`` random on block
    ``i``. ``cost_fns[m](n)``: seconds of a pass of model ``m`` over ``n`` tokens.
    """
    num_models = len(rhos) + 1
    if len(cost_fns) != num_models:
        raise ValueError(
            f"cost_fns must have {num_models} entries (len(rhos) + 1), got {len(cost_fns)}"
        )
    for index, rho in enumerate(rhos):
        if not 0.0 <= rho <= 1.0:
            raise ValueError(f"rhos[{index}] must be in [0, 1], got {rho!r}")
    generator = torch.Generator().manual_seed(seed)
    sizes = [block_size] * (num_models - 1) + [target_block_size]
    offsets = [sum(sizes[:index]) for index in range(num_models)]
    vocab_size = sum(sizes)

    def random_rows(block: int) -> torch.Tensor:
        rows = torch.zeros((vocab_size, vocab_size), dtype=torch.float64)
        noise = torch.randn((vocab_size, sizes[block]), generator=generator, dtype=torch.float64)
        rows[:, offsets[block] : offsets[block] + sizes[block]] = torch.softmax(
            sharpness * noise, dim=-1
        )
        return rows

    probs = [None] * num_models
    probs[-1] = random_rows(num_models - 1)
    for index in range(num_models - 2, -1, -1):
        rho = float(rhos[index])
        probs[index] = rho * probs[index + 1] + (1.0 - rho) * random_rows(index)
    clock = VirtualClock()
    models = tuple(
        MarkovLevel(
            _log(probs[index]).float(),
            cost_fn=cost_fns[index],
            clock=clock,
            busy_wait=busy_wait,
            record_history=record_history,
            name=f"M{index}",
        )
        for index in range(num_models)
    )
    acceptance = tuple(
        tuple(math.prod(rhos[i:j]) if i < j else 1.0 for j in range(num_models))
        for i in range(num_models)
    )
    return SyntheticHierarchy(
        models=models, acceptance=acceptance, cost_fns=tuple(cost_fns), clock=clock
    )


def markov_models(
    vocab_size: int,
    noise_scales: Sequence[float],
    sharpness: float = 2.0,
    seed: int = 0,
) -> tuple[MarkovLevel, ...]:
    """Candidates with overlapping distributions: the target's logits are ``sharpness * N(0, 1)``
    per row; model ``i`` (of ``len(noise_scales)`` drafts, cheapest first) adds
    ``noise_scales[i] * N(0, 1)`` to them. Returns drafts then the target (last)."""
    generator = torch.Generator().manual_seed(seed)
    target_logits = sharpness * torch.randn((vocab_size, vocab_size), generator=generator)
    models = []
    for index, scale in enumerate(noise_scales):
        noise = torch.randn((vocab_size, vocab_size), generator=generator)
        logits = target_logits + scale * noise
        models.append(MarkovLevel(torch.log_softmax(logits, dim=-1), name=f"draft{index}"))
    models.append(MarkovLevel(torch.log_softmax(target_logits, dim=-1), name="target"))
    return tuple(models)


# --------------------------------------------------------------------------------------------
# Tiny transformers
# --------------------------------------------------------------------------------------------


def tiny_llama(
    vocab_size: int = 64,
    hidden_size: int = 32,
    num_layers: int = 2,
    seed: int = 0,
    initializer_range: float = 0.2,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """A tiny random ``LlamaForCausalLM`` (eval mode, no EOS / BOS / PAD ids), built in code."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        initializer_range=initializer_range,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(dtype).eval()


def tiny_llama_family(
    num_models: int,
    vocab_size: int = 64,
    seed: int = 0,
    noise: float = 0.3,
    initializer_range: float = 0.2,
) -> list[torch.nn.Module]:
    """``num_models`` tiny Llamas, cheapest first, target last: the target is random with
    ``initializer_range``; draft ``i`` is a copy of it with every weight perturbed by
    ``noise * (num_models - 1 - i) / (num_models - 1) * initializer_range * N(0, 1)``, so lower
    drafts agree less with the target (partial acceptance at every level)."""
    target = tiny_llama(vocab_size=vocab_size, seed=seed, initializer_range=initializer_range)
    generator = torch.Generator().manual_seed(seed + 1)
    models = []
    for index in range(num_models - 1):
        draft = tiny_llama(vocab_size=vocab_size, seed=seed, initializer_range=initializer_range)
        scale = noise * (num_models - 1 - index) / (num_models - 1) * initializer_range
        with torch.no_grad():
            for parameter in draft.parameters():
                parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
        models.append(draft)
    models.append(target)
    return models


# --------------------------------------------------------------------------------------------
# Chi-square goodness of fit
# --------------------------------------------------------------------------------------------


def first_two_token_counts(
    decoder: object, prompt: torch.Tensor, config: object, num_samples: int
) -> torch.Tensor:
    """``[vocab, vocab]`` counts of the first two new tokens of ``num_samples`` seeded calls
    ``decoder.generate(prompt, max_new_tokens=2, ...)`` (seeds ``0 .. num_samples - 1``) under
    the sampling ``config`` (a :class:`hierspec.sampling.SamplingConfig`): the sample that
    :func:`chi_square_test` compares with ``P(x1, x2)``."""
    vocab_size = decoder.vocab_size  # type: ignore[attr-defined]
    counts = torch.zeros((vocab_size, vocab_size))
    for seed in range(num_samples):
        output = decoder.generate(  # type: ignore[attr-defined]
            prompt,
            max_new_tokens=2,
            temperature=config.temperature,  # type: ignore[attr-defined]
            top_k=config.top_k,  # type: ignore[attr-defined]
            top_p=config.top_p,  # type: ignore[attr-defined]
            seed=seed,
        )
        first, second = output.sequences[0, -2:].tolist()
        counts[first, second] += 1
    return counts


@dataclass(frozen=True)
class ChiSquareResult:
    statistic: float
    degrees_of_freedom: int
    p_value: float
    num_cells: int  # after pooling the cells with small expected counts


def chi_square_test(
    counts: torch.Tensor, probs: torch.Tensor, min_expected: float = 5.0
) -> ChiSquareResult:
    """Pearson's chi-square test of ``counts`` (any shape) against cell probabilities ``probs``
    (same shape, summing to 1). Cells with expected count ``< min_expected`` are pooled into one
    cell (kept even when the pool is still small, so an excess there still shows); an observed
    count in a cell of probability 0 fails outright (``p_value = 0``). The p-value is the
    regularized upper incomplete gamma ``Q(dof / 2, statistic / 2)``.
    """
    counts = counts.double().flatten()
    probs = probs.double().flatten()
    if counts.shape != probs.shape:
        raise ValueError(
            "counts and probs must have the same number of cells, got "
            f"{counts.shape} and {probs.shape}"
        )
    total = counts.sum()
    impossible = probs <= 0
    if bool((counts[impossible] > 0).any()):
        return ChiSquareResult(math.inf, 0, 0.0, 0)  # a token of probability 0 was drawn
    expected = probs * total
    small = (expected < min_expected) & ~impossible
    big = expected >= min_expected
    observed_cells = counts[big].tolist()
    expected_cells = expected[big].tolist()
    if bool(small.any()):
        observed_cells.append(float(counts[small].sum()))
        expected_cells.append(float(expected[small].sum()))
    statistic = sum((o - e) ** 2 / e for o, e in zip(observed_cells, expected_cells))
    dof = len(observed_cells) - 1
    if dof < 1:
        raise ValueError("chi_square_test needs at least 2 cells with enough expected counts")
    p_value = float(
        torch.special.gammaincc(
            torch.tensor(dof / 2.0, dtype=torch.float64),
            torch.tensor(statistic / 2.0, dtype=torch.float64),
        )
    )
    return ChiSquareResult(statistic, dof, p_value, len(observed_cells))


def markov_transition_test(
    sequence: list[int], transition: torch.Tensor
) -> tuple[float, int, float]:
    """Chi-square test that ``sequence`` is a Markov chain with ``transition`` ``[vocab, vocab]``.

    Each previous token seen at least 50 times contributes :func:`chi_square_test` of its row
    of counts; statistics and degrees of freedom are summed. Returns
    ``(statistic, degrees of freedom, p-value)``.
    """
    vocab_size = transition.shape[0]
    counts = torch.zeros((vocab_size, vocab_size), dtype=torch.float64)
    previous = torch.tensor(sequence[:-1])
    following = torch.tensor(sequence[1:])
    counts.index_put_(
        (previous, following), torch.ones(len(following), dtype=torch.float64), accumulate=True
    )
    statistic, dof = 0.0, 0
    for row in range(vocab_size):
        if counts[row].sum() < 50:
            continue
        if bool((counts[row][transition[row] <= 0] > 0).any()):
            return math.inf, 0, 0.0  # a transition of probability 0 occurred
        if int((transition[row] * counts[row].sum() >= 5.0).sum()) < 2:
            continue  # one likely successor (e.g. after top-k/top-p): nothing more to test
        result = chi_square_test(counts[row], transition[row])
        if result.p_value == 0.0 and math.isinf(result.statistic):
            return math.inf, 0, 0.0
        statistic += result.statistic
        dof += result.degrees_of_freedom
    p_value = float(
        torch.special.gammaincc(
            torch.tensor(dof / 2.0, dtype=torch.float64),
            torch.tensor(statistic / 2.0, dtype=torch.float64),
        )
    )
    return statistic, dof, p_value


def long_output_transition_test(
    decoder: object, target: MarkovLevel, config: object, max_new_tokens: int, seed: int = 1
) -> tuple[tuple[float, int, float], object]:
    """:func:`markov_transition_test` of one long output of ``decoder`` (prompt ``[[0]]``,
    ``max_new_tokens`` new tokens, ``seed``) under the sampling ``config`` (a
    :class:`hierspec.sampling.SamplingConfig`) against the processed transition matrix of the
    Markov ``target``: every transition of a lossless decoder's output follows the target's.
    Returns ``((statistic, degrees of freedom, p-value), the generate output)``."""
    from .sampling import processed_probs

    output = decoder.generate(  # type: ignore[attr-defined]
        torch.tensor([[0]]),
        max_new_tokens=max_new_tokens,
        temperature=config.temperature,  # type: ignore[attr-defined]
        top_k=config.top_k,  # type: ignore[attr-defined]
        top_p=config.top_p,  # type: ignore[attr-defined]
        seed=seed,
    )
    transition = processed_probs(target.log_probs, config).double()  # type: ignore[arg-type]
    return markov_transition_test(output.sequences[0].tolist(), transition), output
