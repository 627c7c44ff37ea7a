"""Adapters that make models usable as one level of a hierarchy (the :class:`DraftModel` protocol).

:class:`TransformersLevel` wraps a transformers causal LM and its ``DynamicCache``. It is the only
code in hierspec that truncates a transformers cache (``DynamicCache.crop``). Callers of
:meth:`TransformersLevel.truncate`: during generation only the engine's cache owner
(``hierspec.engine.cache``); outside generation the profiler's timing loop
(``hierspec.profiler.timing``), which rolls back the passes it times. Nothing else calls it
(tests aside).

A level must be able to forget its last tokens exactly (rollback after a rejection). Models whose
cache cannot do that are refused when wrapped, before anything runs:
    sliding-window / chunked attention layers (``DynamicSlidingWindowLayer``) keep only the last
        ``window - 1`` keys once the window is full, so tokens evicted before a rollback are lost;
    linear-attention / recurrent / convolutional states (Mamba, RWKV, hybrids) are overwritten in
        place at every step;
    any cache layer type not known to be truncatable, encoder-decoder models, and architectures
        that cannot use a ``DynamicCache`` at all.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch

from .protocol import DraftModel

__all__ = ["TransformersLevel", "as_level", "as_levels"]

# Cache layer classes whose ``crop(-k)`` removes exactly the last k tokens and nothing else.
# DummyLayer holds no state (KV-sharing consumers, MLP-only layers), so cropping it is a no-op.
_TRUNCATABLE_LAYER_NAMES = ("DynamicLayer", "DynamicIndexedLayer", "DummyLayer")


def _truncatable_layer_types() -> tuple[type, ...]:
    from transformers import cache_utils

    return tuple(getattr(cache_utils, name) for name in _TRUNCATABLE_LAYER_NAMES)


def _learned_position_limit(model: torch.nn.Module) -> int | None:
    """The most tokens ``model`` can process when it has learned absolute position embeddings.

    The limit is declared as ``n_positions`` (GPT-2) or ``max_position_embeddings`` (OPT, GPT-Neo,
    BioGPT, ...), but it is a hard limit only when positions index a learned table: an
    ``nn.Embedding`` other than the token embeddings with exactly that many rows beyond its offset
    (OPT's table has 2 extra rows, ``offset = 2``); past it the lookup raises ``IndexError``.
    Rotary (Llama, Qwen, Mistral, ...) and ALiBi models declare ``max_position_embeddings`` as a
    training length but compute positions, so they get no limit (``None``).
    """
    config = model.config
    declared = None
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            declared = value
            break
    if declared is None:
        return None
    token_embeddings = model.get_input_embeddings()
    for module in model.modules():
        if (
            isinstance(module, torch.nn.Embedding)
            and module is not token_embeddings
            and module.num_embeddings - getattr(module, "offset", 0) == declared
        ):
            return declared
    return None


class TransformersLevel:
    """A transformers causal LM plus its KV cache, as one level of a hierarchy (batch size 1).

    Args:
        model: a ``transformers.PreTrainedModel`` with a causal-LM head (``model(input_ids=...,
            cache=..., use_cache=True).logits``), in eval mode, with a full-attention cache.

    Raises:
        TypeError: ``model`` is not a transformers model.
        ValueError: the model is in training mode, or its cache cannot be truncated (see the
            module docstring); the message names the offending layer / setting.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        from transformers import DynamicCache, PreTrainedModel

        if not isinstance(model, PreTrainedModel):
            raise TypeError(
                f"model must be a transformers PreTrainedModel, got {type(model).__name__}"
            )
        name = type(model).__name__
        config = model.config
        if getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"model {name} is an encoder-decoder model; only causal LMs are supported"
            )
        if model.training:
            raise ValueError(
                f"model {name} is in training mode (dropout would make its distributions random); "
                "call model.eval() first"
            )
        if not type(model)._supports_default_dynamic_cache():
            raise ValueError(
                f"model {name} cannot use a DynamicCache, so its cache cannot be truncated "
                "for rollback"
            )
        cache = DynamicCache(config=config)
        allowed = _truncatable_layer_types()
        for layer_index, layer in enumerate(cache.layers):
            if type(layer) in allowed:
                continue
            layer_type = type(layer).__name__
            if getattr(layer, "is_sliding", False):
                window = getattr(layer, "sliding_window", None)
                raise ValueError(
                    f"model {name} has a sliding-window attention cache (layer {layer_index}: "
                    f"{layer_type}, sliding_window={window}); such a cache evicts old keys and "
                    "cannot be rolled back after a rejection. If your sequences never exceed the "
                    "window, load the model with sliding_window=None."
                )
            raise ValueError(
                f"model {name} has a cache layer that cannot be truncated (layer {layer_index}: "
                f"{layer_type}; recurrent / linear-attention / convolutional states are "
                "overwritten in place), so it cannot be rolled back after a rejection"
            )
        output_embeddings = model.get_output_embeddings()
        if output_embeddings is None or not hasattr(output_embeddings, "weight"):
            raise ValueError(f"model {name} has no output embedding (language-model head)")
        self.model = model
        self._cache = cache
        self._config = config
        self._length = 0
        self._vocab_size = int(output_embeddings.weight.shape[0])
        self._device = output_embeddings.weight.device
        self._max_length = _learned_position_limit(model)
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters

    @property
    def vocab_size(self) -> int:
        """Number of logit columns (rows of the language-model head)."""
        return self._vocab_size

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def max_length(self) -> int | None:
        """The most tokens the model can process (prompt, generated text and the drafts the
        levels process beyond it), or ``None`` for no limit: set only for learned absolute
        position embeddings (GPT-2's ``n_positions``, OPT's ``max_position_embeddings``);
        rotary / ALiBi models extrapolate and get ``None``."""
        return self._max_length

    @property
    def length(self) -> int:
        return self._length

    @property
    def eos_token_ids(self) -> tuple[int, ...] | None:
        """The EOS ids of the model's generation config (``generation_config.eos_token_id``, an
        int or a list), the ones transformers' ``generate`` stops at by default; ``None`` when it
        sets none."""
        generation_config = getattr(self.model, "generation_config", None)
        eos = getattr(generation_config, "eos_token_id", None)
        if eos is None:
            return None
        ids = (eos,) if isinstance(eos, int) else tuple(int(value) for value in eos)
        return ids or None

    def reset(self) -> None:
        from transformers import DynamicCache

        self._cache = DynamicCache(config=self._config)
        self._length = 0

    def append(self, token_ids: torch.Tensor) -> torch.Tensor:
        """One forward pass over ``token_ids`` ``[1, num_tokens]``.

        Returns logits ``[1, num_tokens, vocab]``.
        """
        with torch.inference_mode():
            logits = self.model(input_ids=token_ids, cache=self._cache, use_cache=True).logits
        self._length += token_ids.shape[1]
        return logits

    def prefill(self, token_ids: torch.Tensor) -> None:
        """One forward pass over ``token_ids`` ``[1, num_tokens]`` whose logits are not needed
        (the prompt, a catch-up): the vocabulary head runs on the last position only when the
        model's forward takes ``logits_to_keep`` (transformers' causal LMs do), which is most of
        a small model's pass over a long prompt. Same cache afterwards as :meth:`append`."""
        keep = {"logits_to_keep": 1} if self._keeps_logits else {}
        with torch.inference_mode():
            self.model(input_ids=token_ids, cache=self._cache, use_cache=True, **keep)
        self._length += token_ids.shape[1]

    def truncate(self, length: int) -> None:
        assert 0 <= length <= self._length, (length, self._length)
        if length < self._length:
            self._cache.crop(length - self._length)  # negative: number of tokens to drop
            self._length = length

    def __repr__(self) -> str:
        return f"TransformersLevel({type(self.model).__name__}, length={self._length})"


def as_level(model: object, argument: str) -> DraftModel:
    """``model`` as a :class:`DraftModel`: transformers models are wrapped, protocol objects kept.

    ``argument`` names the argument in error messages (e.g. ``"models[2]"``).
    """
    try:
        from transformers import PreTrainedModel
    except ImportError:  # pragma: no cover - transformers is a dependency
        PreTrainedModel = ()  # type: ignore[assignment]
    if isinstance(model, PreTrainedModel):
        try:
            return TransformersLevel(model)
        except ValueError as error:
            raise ValueError(f"{argument}: {error}") from None
    if isinstance(model, DraftModel):
        return model
    raise TypeError(
        f"{argument} must be a transformers causal LM or implement hierspec.protocol.DraftModel "
        f"(vocab_size, device, length, reset, append, truncate), got {type(model).__name__}"
    )


def as_levels(models: Sequence[object]) -> tuple[DraftModel, ...]:
    """``models`` (cheapest first, target last) as levels of one hierarchy: a non-empty sequence
    of distinct objects (each level keeps its own state) sharing one vocabulary and one device.
    Errors name the argument ``models[i]``.
    """
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise TypeError(f"models must be a sequence of models, got {type(models).__name__}")
    if len(models) == 0:
        raise ValueError("models must hold at least one model (the target), got an empty sequence")
    for index, model in enumerate(models):
        for earlier in range(index):
            if models[earlier] is model:
                raise ValueError(
                    f"models[{index}] is the same object as models[{earlier}]; each level keeps "
                    "its own state, so pass distinct objects"
                )
    levels = tuple(as_level(model, f"models[{index}]") for index, model in enumerate(models))
    vocab_size = levels[0].vocab_size
    device = torch.device(levels[0].device)
    for index, level in enumerate(levels[1:], start=1):
        if level.vocab_size != vocab_size:
            raise ValueError(
                f"models[{index}] has vocab_size {level.vocab_size} but models[0] has "
                f"{vocab_size}; all levels must share one vocabulary"
            )
        if torch.device(level.device) != device:
            raise ValueError(
                f"models[{index}] is on device {level.device} but models[0] is on {device}; "
                "all levels must be on one device"
            )
    return levels
