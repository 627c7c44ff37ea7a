"""Vocabulary-subset drafts: a draft whose output head covers only part of the vocabulary.

Every level of a hierarchy shares the target's vocabulary, so a small draft pays for the full
output head: for a 6-layer, 576-wide draft of a 49152-token model the head's multiply-adds
(49152 x 576 per token) exceed those of its six decoder layers. :class:`VocabSubsetLevel` runs
the wrapped model's decoder body and a head restricted to a subset ``S`` of the vocabulary (the
rows ``lm_head.weight[S]``, the bias, and the model's elementwise logit scaling if any), and
returns full-width logits with ``-inf`` outside ``S``. Its distribution is the full model's
distribution conditioned on ``S`` (renormalised there); FR-Spec (arXiv 2502.14856) and EAGLE-3's
draft vocabulary do the same.

Terms:
    subset      the sorted, unique token ids ``S`` the draft may emit (``token_ids``);
    coverage    the fraction of the target's tokens on some text that lie in ``S``.

Why it stays lossless: speculative sampling accepts a draft token ``x`` with probability
``min(1, p(x) / q(x))`` and, at the first rejection, draws from ``normalize(max(p - q, 0))``;
nothing there requires ``q > 0`` everywhere. With ``q(x) = 0`` for ``x`` outside ``S``, the
residual keeps all of the target's mass ``p(x)`` outside ``S``, so a target token outside the
subset is produced by the residual (or bonus) draw with exactly its probability
(``docs/vocab-subset.md``). Greedy decoding is the one-hot limit: the draft proposes its best
token inside ``S``; when the target's choice lies outside, the draft token is rejected and the
target's token is emitted. Temperature, top-k and top-p are applied to the ``-inf``-padded
logits by :func:`hierspec.sampling.processed_probs` like any other level's. What a subset costs
is acceptance: drafts are rejected wherever the target's token lies outside ``S``.

Cache and rollback are :class:`hierspec.levels.TransformersLevel`'s (this class subclasses it
and replaces only the forward pass), so the same models are refused (sliding-window and
recurrent caches) and truncation is exact.

Architectures: the head restriction must reproduce what the causal-LM class does after its
decoder, so it is offered only for the model types whose ``forward`` was read (transformers
5.24) to compute ``logits = lm_head(self.model(...).last_hidden_state)``, optionally followed by
an elementwise scaling (:data:`SUPPORTED_MODEL_TYPES`); anything else (final logit soft-capping,
other heads) is refused with a ``ValueError``.

:func:`frequent_tokens` chooses a subset: the most frequent ids of some token sequences (the
target's own outputs on training prompts, never the text you evaluate on).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch

from hierspec.io import content_key
from hierspec.levels import TransformersLevel

__all__ = [
    "SUPPORTED_MODEL_TYPES",
    "VocabSubsetIdentity",
    "VocabSubsetLevel",
    "frequent_tokens",
]


def _identity_scale(model: torch.nn.Module) -> float | None:
    return None


def _granite_scale(model: torch.nn.Module) -> float | None:
    # GraniteForCausalLM: logits = lm_head(hidden) / config.logits_scaling
    return 1.0 / float(model.config.logits_scaling)


def _cohere_scale(model: torch.nn.Module) -> float | None:
    # CohereForCausalLM: logits = lm_head(hidden) * self.logit_scale
    return float(model.logit_scale)


# model_type -> the factor the causal-LM class multiplies the head's output by (None: none).
# Each entry's ``ForCausalLM.forward`` was read in transformers 5.24: the decoder is
# ``self.model``, then ``lm_head`` on its ``last_hidden_state``, then (only granite, cohere) one
# scaling, nothing else.
SUPPORTED_MODEL_TYPES: dict[str, Callable[[torch.nn.Module], float | None]] = {
    "llama": _identity_scale,
    "mistral": _identity_scale,
    "qwen2": _identity_scale,
    "qwen3": _identity_scale,
    "phi3": _identity_scale,
    "olmo2": _identity_scale,
    "gemma": _identity_scale,
    "smollm3": _identity_scale,
    "granite": _granite_scale,
    "cohere": _cohere_scale,
}

# Config settings that change the logits after the head; refused even on a supported type.
_POST_HEAD_SETTINGS = ("final_logit_softcapping", "attn_logit_softcapping_final", "logit_softcap")


def _check_token_ids(token_ids: object, vocab_size: int, argument: str) -> torch.Tensor:
    """``token_ids`` as a sorted int64 CPU tensor ``[subset]``: non-empty, unique, in range."""
    if isinstance(token_ids, torch.Tensor):
        if token_ids.dtype.is_floating_point or token_ids.dtype.is_complex:
            raise TypeError(f"{argument} must hold integers, got a {token_ids.dtype} tensor")
        if token_ids.dtype == torch.bool:
            raise TypeError(f"{argument} must hold integer token ids, got a bool tensor")
        if token_ids.dim() != 1:
            raise ValueError(f"{argument} must be 1-D [subset], got shape {tuple(token_ids.shape)}")
        ids = token_ids.detach().to("cpu", torch.int64)
    else:
        if isinstance(token_ids, (str, bytes)) or not isinstance(token_ids, Iterable):
            raise TypeError(
                f"{argument} must be a 1-D integer tensor or a sequence of ints, "
                f"got {type(token_ids).__name__}"
            )
        values = list(token_ids)
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(
                    f"{argument}[{index}] must be an int, got {type(value).__name__} {value!r}"
                )
        ids = torch.tensor(values, dtype=torch.int64)
    if ids.numel() == 0:
        raise ValueError(f"{argument} must hold at least one token id, got none")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"{argument} must be in [0, {vocab_size}), got {bad}")
    ids = ids.sort().values
    repeated = ids[1:][ids[1:] == ids[:-1]]
    if repeated.numel():
        raise ValueError(f"{argument} must be unique, got {int(repeated[0])} more than once")
    return ids


@dataclass(frozen=True)
class VocabSubsetIdentity:
    """What identifies a :class:`VocabSubsetLevel`'s function (its ``config``; profile caches
    key candidates by it): the wrapped model and the subset."""

    model_class: str
    model_source: str
    dtype: str
    parameters: int
    subset_size: int
    subset_key: str  # content_key of the subset's ids


class VocabSubsetLevel(TransformersLevel):
    """A transformers causal LM as a draft level whose distribution lives on a vocabulary subset.

    One :meth:`append` runs the model's decoder (``model.model``) with the level's cache, then
    the restricted head ``hidden @ lm_head.weight[token_ids].T (+ bias[token_ids])`` (times the
    model's logit scale, if any), and scatters the result into full-width logits that are
    ``-inf`` outside the subset. On the subset columns the logits equal the full model's (up
    to the rounding of a different matrix shape); the engine, sampling and verification see an
    ordinary level. See the module docstring for why decoding stays lossless.

    The head rows are copied at construction (``subset x hidden`` values) and copied again if
    the model's head weight or bias changes afterwards (in place or replaced).

    Parameters
    ----------
    model
        A transformers causal LM of a supported type (:data:`SUPPORTED_MODEL_TYPES`), eval mode,
        with a truncatable cache; or a :class:`~hierspec.levels.TransformersLevel`, whose model
        is used (its cache is not shared: this level keeps its own).
    token_ids
        The subset: ``[subset]`` integer tensor or sequence of ints, unique, in
        ``[0, vocab_size)``, at least one (kept sorted; :func:`frequent_tokens` makes one).

    Raises
    ------
    TypeError
        ``model`` is not a transformers model / TransformersLevel, or ``token_ids`` is not
        integer.
    ValueError
        The model is refused by :class:`~hierspec.levels.TransformersLevel`, its architecture is
        not supported (the message names its ``model_type``), or ``token_ids`` is empty, has a
        repeated id or an id out of range (the message names the argument and the value).

    Examples
    --------
    >>> from hierspec.testing import tiny_llama
    >>> level = VocabSubsetLevel(tiny_llama(vocab_size=16), [0, 3, 5])
    >>> logits = level.append(torch.tensor([[1, 2]]))
    >>> tuple(logits.shape), torch.isfinite(logits[0, 0]).nonzero().flatten().tolist()
    ((1, 2, 16), [0, 3, 5])
    """

    def __init__(self, model: object, token_ids: object) -> None:
        if isinstance(model, TransformersLevel):
            model = model.model
        super().__init__(model)  # type check, cache checks (TransformersLevel)
        name = type(model).__name__
        model_type = getattr(self.model.config, "model_type", None)
        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"model {name} (model_type {model_type!r}) is not supported by "
                "VocabSubsetLevel: its logits may not be lm_head(decoder output); supported "
                f"model types: {sorted(SUPPORTED_MODEL_TYPES)}"
            )
        for setting in _POST_HEAD_SETTINGS:
            if getattr(self.model.config, setting, None) is not None:
                raise ValueError(
                    f"model {name} sets {setting}={getattr(self.model.config, setting)!r}, "
                    "which VocabSubsetLevel does not apply; refused"
                )
        decoder = getattr(self.model, "model", None)
        if not isinstance(decoder, torch.nn.Module):
            raise ValueError(f"model {name} has no decoder module at model.model")
        self._decoder = decoder
        self._scale = SUPPORTED_MODEL_TYPES[model_type](self.model)
        self._token_ids = _check_token_ids(token_ids, self.vocab_size, "token_ids")
        self._head = self.model.get_output_embeddings()
        self._head_key: tuple | None = None
        self._refresh_head()

    def _weight_keys(self) -> tuple:
        # What identifies the head's weights (as hierspec.packing does): in-place updates bump
        # ``_version``, replacement (``.to(...)``) changes ``data_ptr``.
        weight, bias = self._head.weight, getattr(self._head, "bias", None)
        return (
            weight.data_ptr(),
            weight._version,
            None if bias is None else (bias.data_ptr(), bias._version),
        )

    def _refresh_head(self) -> None:
        weight, bias = self._head.weight, getattr(self._head, "bias", None)
        ids = self._token_ids.to(weight.device)
        with torch.no_grad():
            self._subset_weight = weight.detach()[ids].contiguous()  # [subset, hidden]
            self._subset_bias = None if bias is None else bias.detach()[ids].contiguous()
        self._device_ids = ids  # [subset] int64 on the model's device
        self._head_key = self._weight_keys()

    @property
    def token_ids(self) -> torch.Tensor:
        """The subset, ``[subset]`` int64 (CPU), sorted (a copy)."""
        return self._token_ids.clone()

    @property
    def subset_size(self) -> int:
        """Number of token ids in the subset."""
        return int(self._token_ids.numel())

    @property
    def config(self) -> VocabSubsetIdentity:
        """The identity of this level's function (model and subset), e.g. for profile caches."""
        parameters = list(self.model.parameters())
        return VocabSubsetIdentity(
            model_class=type(self.model).__name__,
            model_source=str(getattr(self.model.config, "_name_or_path", "") or ""),
            dtype=str(parameters[0].dtype).removeprefix("torch.") if parameters else "",
            parameters=sum(parameter.numel() for parameter in parameters),
            subset_size=self.subset_size,
            subset_key=content_key(self._token_ids.tolist(), length=16),
        )

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        """One forward pass over ``token_ids`` ``[1, num_tokens]`` int64.

        Returns
        -------
        torch.Tensor
            ``[1, num_tokens, vocab]`` logits in the model's dtype: the full model's logits on
            the subset columns, ``-inf`` elsewhere.
        """
        if self._weight_keys() != self._head_key:
            self._refresh_head()
        with torch.inference_mode():
            hidden = self._decoder(
                input_ids=token_ids, cache=self._cache, use_cache=True
            ).last_hidden_state  # [1, num_tokens, hidden]
            subset_logits = torch.nn.functional.linear(
                hidden.to(self._subset_weight.dtype), self._subset_weight, self._subset_bias
            )  # [1, num_tokens, subset]
            if self._scale is not None:
                subset_logits = subset_logits * self._scale
            logits = subset_logits.new_full(
                (*subset_logits.shape[:-1], self.vocab_size), -math.inf
            )  # [1, num_tokens, vocab]
            logits.index_copy_(-1, self._device_ids, subset_logits)
        self._length += token_ids.shape[1]
        return logits

    def prefill(self, token_ids: torch.Tensor) -> None:
        """The decoder over ``token_ids`` ``[1, num_tokens]`` without the head (nobody reads
        the logits of a prompt or a catch-up); same cache afterwards as :meth:`append`."""
        with torch.inference_mode():
            self._decoder(input_ids=token_ids, cache=self._cache, use_cache=True)
        self._length += token_ids.shape[1]

    def __repr__(self) -> str:
        return (
            f"VocabSubsetLevel({type(self.model).__name__}, subset={self.subset_size}/"
            f"{self.vocab_size}, length={self.length})"
        )


def frequent_tokens(
    token_id_sequences: Iterable[torch.Tensor | Sequence[int]],
    size: int,
    always: Iterable[int] = (),
    vocab_size: int | None = None,
) -> torch.Tensor:
    """The ``size`` most frequent token ids of ``token_id_sequences``, plus ``always``.

    Counts every id in every sequence; ranks by count (descending), ties broken by the smaller id
    (deterministic); takes the ids of ``always`` first, then the best-ranked others until there
    are ``size``. Ids never seen rank by id after every seen one, so a ``size`` beyond the
    distinct ids seen is filled with the smallest unseen ids (of ``[0, vocab_size)``).

    Parameters
    ----------
    token_id_sequences
        Integer tensors of any shape (flattened; e.g. ``[length]`` responses or ``[length, k]``
        top-k predictions) or sequences of ints. Use text the subset will serve (the target's
        own outputs on training prompts), never the text you evaluate on.
    size
        Number of ids returned, ``>= 1`` and ``>= len(set(always))``.
    always
        Ids always included (e.g. EOS and other special tokens).
    vocab_size
        The vocabulary; ids are checked to be in ``[0, vocab_size)``. ``None``: the largest id
        seen (or in ``always``) plus one.

    Returns
    -------
    torch.Tensor
        ``[size]`` int64, sorted ascending, unique.

    Raises
    ------
    ValueError
        ``size`` is not positive, is smaller than the number of ``always`` ids or larger than the
        vocabulary; an id is negative or ``>= vocab_size``.

    Examples
    --------
    >>> frequent_tokens([torch.tensor([5, 5, 2, 7, 2, 5]), [9]], size=3, always=[0])
    tensor([0, 2, 5])
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1, got {size!r}")
    if vocab_size is not None and (
        isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1
    ):
        raise ValueError(f"vocab_size must be an int >= 1 or None, got {vocab_size!r}")
    if isinstance(token_id_sequences, torch.Tensor) or not isinstance(token_id_sequences, Iterable):
        raise TypeError(
            "token_id_sequences must be an iterable of token id sequences (tensors or lists), "
            f"got {type(token_id_sequences).__name__}"
        )
    flat = []
    for index, sequence in enumerate(token_id_sequences):
        ids = sequence if isinstance(sequence, torch.Tensor) else torch.tensor(list(sequence))
        if ids.numel() and (ids.dtype.is_floating_point or ids.dtype == torch.bool):
            raise TypeError(f"token_id_sequences[{index}] must hold integers, got {ids.dtype}")
        flat.append(ids.reshape(-1).to("cpu", torch.int64))
    counted = torch.cat(flat) if flat else torch.zeros(0, dtype=torch.int64)
    always_ids = torch.tensor(sorted({int(value) for value in always}), dtype=torch.int64)
    everything = torch.cat([counted, always_ids])
    if everything.numel() and int(everything.min()) < 0:
        raise ValueError(f"token ids must be >= 0, got {int(everything.min())}")
    if vocab_size is None:
        if not everything.numel():
            raise ValueError("token_id_sequences and always are empty and vocab_size is None")
        vocab_size = int(everything.max()) + 1
    elif everything.numel() and int(everything.max()) >= vocab_size:
        raise ValueError(
            f"token ids must be < vocab_size {vocab_size}, got {int(everything.max())}"
        )
    if size > vocab_size:
        raise ValueError(f"size must be <= the vocabulary size {vocab_size}, got {size}")
    if size < always_ids.numel():
        raise ValueError(
            f"size must be >= the number of always ids ({always_ids.numel()}), got {size}"
        )
    counts = torch.bincount(counted, minlength=vocab_size)  # [vocab]
    # Rank: count descending, then id ascending (a stable sort on -count keeps id order).
    ranked = torch.sort(-counts, stable=True).indices
    chosen = torch.zeros(vocab_size, dtype=torch.bool)
    chosen[always_ids] = True
    missing = size - int(chosen.sum())
    if missing:
        others = ranked[~chosen[ranked]][:missing]
        chosen[others] = True
    return chosen.nonzero().flatten()
