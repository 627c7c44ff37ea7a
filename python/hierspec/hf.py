"""Hierarchical decoding inside transformers' own ``generate``: :func:`hierarchical`.

``target.generate(input_ids, custom_generate=hierspec.hf.hierarchical(drafts=[...], plan=...),
max_new_tokens=..., do_sample=..., ...)`` runs :class:`hierspec.HierarchicalDecoder` over
``[*drafts, target]`` in place of transformers' decoding loop, and returns what transformers'
own ``generate`` returns: the ``[1, prompt + new]`` tensor, or a ``GenerateDecoderOnlyOutput``
with ``return_dict_in_generate=True``.

The transformers API (read from the installed ``transformers/generation/utils.py``, 5.24): given
a callable ``custom_generate``, ``GenerationMixin.generate`` does its usual preparation (generation
config from the model's and the keyword arguments, ``max_length`` from ``max_new_tokens``, the
logits processors and stopping criteria, the attention mask, position ids and an empty cache,
``streamer.put(prompt)``) and then calls::

    custom_generate(model, input_ids, logits_processor=LogitsProcessorList,
                    stopping_criteria=StoppingCriteriaList, generation_config=GenerationConfig,
                    **custom_keys, **model_kwargs)

where ``custom_keys`` are the keyword arguments of the ``generate`` call that the callable's
signature names and ``GenerationMixin._sample``'s does not (here ``seed``), and ``model_kwargs``
holds ``attention_mask`` (``None`` when it is all ones), ``position_ids``, ``cache``,
``logits_to_keep`` and ``use_cache``. The custom keys REPLACE the mode arguments ``generate``
would pass to ``_sample``, so two of them are lost:
    ``streamer``   ``generate`` feeds it the prompt but does not pass it on; this module reads it
                   from ``generate``'s frame (:func:`_streamer_of_generate`), so ``streamer=``
                   works as in plain transformers;
    ``tokenizer``  popped before the custom keys are read, so ``stop_strings=`` fails inside
                   ``generate`` ("could not locate a tokenizer") before the callable runs. Pass
                   the criterion itself instead:
                   ``stopping_criteria=[StopStringCriteria(tokenizer, stop_strings)]``.

What is honoured: greedy (``do_sample=False``) and sampling with the temperature / top-k / top-p
warpers (read from the warpers transformers built, so every default it applies is applied);
``max_length`` / ``max_new_tokens``; EOS (the generation config's ``eos_token_id``, the model's
by default); stop strings (as a ``StopStringCriteria``, see above): exact, but checked once the
decoder has finished, so the decoder runs on to EOS or ``max_new_tokens`` and the output is cut
after the first token that completes a stop string, as transformers cuts it. Everything else is
refused with a ``ValueError`` naming it: beam search and other generation modes, batch size > 1
and ``num_return_sequences > 1``, padding, any other logits processor (repetition penalty,
min length, ...) or stopping criterion (``max_time``, custom ones), a prefilled cache, and the
scores / logits / attentions / hidden states of ``return_dict_in_generate``.
"""

from __future__ import annotations

import inspect
import operator
import sys
from collections.abc import Sequence
from typing import Any

import torch

from .engine import GenerateOutput, HierarchicalDecoder
from .levels import as_level

__all__ = ["HierarchicalGenerate", "hierarchical"]

# model_kwargs that generate prepares for every decoder-only call; anything else is refused.
_PREPARED_MODEL_KWARGS = frozenset(
    {"attention_mask", "position_ids", "cache", "past_key_values", "logits_to_keep", "use_cache"}
)


def hierarchical(
    drafts: Sequence[object],
    plan: object | None = None,
    draft_lengths: Sequence[int] | None = None,
    seed: int | None = None,
) -> HierarchicalGenerate:
    """A ``custom_generate`` callable that decodes with a hierarchy over ``[*drafts, target]``.

    Parameters
    ----------
    drafts : sequence of models
        The models below the target, cheapest first: transformers causal LMs or
        :class:`hierspec.DraftModel` objects sharing the target's vocabulary and device. The
        target is the model whose ``generate`` is called.
    plan : hierspec.Plan or hierspec.PlanEntry, optional
        A plan made for the candidates ``[*drafts, target]`` (in that order); its chain picks
        the levels (see :meth:`hierspec.HierarchicalDecoder.from_plan`). Exactly one of
        ``plan`` and ``draft_lengths``.
    draft_lengths : sequence of int, optional
        ``[T_0, ..., T_{K-1}]``, one per draft: the chain is every draft, then the target.
    seed : int, optional
        Seed of the decoder's random generator. transformers' sampling draws from the global
        torch RNG (``torch.manual_seed``); hierspec draws from an explicit generator, so the
        global seed has no effect here. ``seed`` makes every call reproducible (a call's own
        ``generate(..., seed=...)`` overrides it); ``None`` draws a fresh seed per call. The
        output equals ``HierarchicalDecoder(...).generate(..., seed=seed)``; it is a sample from
        the same law as transformers' sampling, not the same sample.

    Returns
    -------
    HierarchicalGenerate
        Pass it as ``custom_generate=`` to the target's ``generate``; after a call its
        :attr:`~HierarchicalGenerate.last_output` holds the decoder's statistics and seed.

    Raises
    ------
    TypeError
        ``drafts`` not a sequence of models; ``draft_lengths`` not ints.
    ValueError
        Both or neither of ``plan`` / ``draft_lengths``; ``draft_lengths`` not one per draft; a
        plan made for a different number of candidates; a draft that cannot be a level.

    Examples
    --------
    >>> import torch
    >>> from hierspec.hf import hierarchical
    >>> from hierspec.testing import tiny_llama_family
    >>> draft, target = tiny_llama_family(2)
    >>> prompt = torch.tensor([[1, 2, 3]])
    >>> greedy = target.generate(prompt, max_new_tokens=8, do_sample=False)
    >>> spec = target.generate(
    ...     prompt,
    ...     custom_generate=hierarchical(drafts=[draft], draft_lengths=[4]),
    ...     max_new_tokens=8,
    ...     do_sample=False,
    ... )
    >>> torch.equal(spec, greedy)
    True
    """
    return HierarchicalGenerate(drafts, plan=plan, draft_lengths=draft_lengths, seed=seed)


class HierarchicalGenerate:
    """The callable :func:`hierarchical` returns (see there and the module docstring).

    Attributes
    ----------
    last_output : hierspec.GenerateOutput or None
        The decoder's result of the last call (statistics and seed; its ``sequences`` before a
        stop-string cut), ``None`` before the first call.
    """

    def __init__(
        self,
        drafts: Sequence[object],
        plan: object | None = None,
        draft_lengths: Sequence[int] | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(drafts, (str, bytes)) or not isinstance(drafts, Sequence):
            raise TypeError(f"drafts must be a sequence of models, got {type(drafts).__name__}")
        if (plan is None) == (draft_lengths is None):
            raise ValueError(
                "give exactly one of plan= (a hierspec.Plan for [*drafts, target]) and "
                f"draft_lengths= (one per draft); got plan={plan!r}, "
                f"draft_lengths={draft_lengths!r}"
            )
        if draft_lengths is not None:
            if isinstance(draft_lengths, (str, bytes)) or not isinstance(draft_lengths, Sequence):
                raise TypeError(f"draft_lengths must be a sequence of ints, got {draft_lengths!r}")
            if len(draft_lengths) != len(drafts):
                raise ValueError(
                    f"draft_lengths must have one entry per draft ({len(drafts)}), got "
                    f"{list(draft_lengths)!r}"
                )
        else:
            chain = getattr(plan, "chain", None)
            if chain is None or getattr(plan, "draft_lengths", None) is None:
                raise TypeError(
                    f"plan must have .chain and .draft_lengths (a hierspec.Plan), got {plan!r}"
                )
            model_names = getattr(plan, "model_names", None)
            if hasattr(plan, "alternatives") and len(model_names) != len(drafts) + 1:
                raise ValueError(
                    f"plan was made for {len(model_names)} candidates {list(model_names)}, but "
                    f"drafts + target are {len(drafts) + 1}"
                )
            if not chain or chain[-1] != len(drafts):
                raise ValueError(
                    f"plan.chain {list(chain)} must end at the target, candidate {len(drafts)} "
                    "(the drafts are candidates 0 .. len(drafts) - 1)"
                )
        if seed is not None:
            _check_seed(seed)
        # Wrapped once, so the errors come now and name the draft.
        self._drafts = tuple(
            as_level(draft, f"drafts[{index}]") for index, draft in enumerate(drafts)
        )
        self._plan = plan
        self._draft_lengths = None if draft_lengths is None else list(draft_lengths)
        self._seed = seed
        self.last_output: GenerateOutput | None = None

    def decoder(self, target: torch.nn.Module) -> HierarchicalDecoder:
        """The :class:`~hierspec.HierarchicalDecoder` this callable runs for ``target``."""
        models = [*self._drafts, target]
        if self._plan is not None:
            return HierarchicalDecoder.from_plan(models, self._plan)
        return HierarchicalDecoder(models, self._draft_lengths)

    def __call__(
        self,
        model: torch.nn.Module,
        input_ids: torch.Tensor,
        logits_processor: Sequence[object] | None = None,
        stopping_criteria: Sequence[object] | None = None,
        generation_config: Any = None,
        streamer: Any = None,
        seed: int | None = None,
        **model_kwargs: Any,
    ) -> Any:
        """Called by ``model.generate`` (arguments: the module docstring); returns a
        ``[1, prompt + new]`` int64 tensor, or a ``GenerateDecoderOnlyOutput`` when the
        generation config has ``return_dict_in_generate``.

        ``streamer`` is for direct calls; inside ``generate`` the streamer given there is used
        (transformers has already fed it the prompt).
        """
        from transformers import GenerationConfig
        from transformers.generation import GenerationMode

        config = generation_config if generation_config is not None else GenerationConfig()
        mode = config.get_generation_mode()
        if mode not in (GenerationMode.GREEDY_SEARCH, GenerationMode.SAMPLE):
            raise ValueError(
                f"hierspec.hf.hierarchical supports greedy decoding and sampling only, got "
                f"generation mode {mode.value!r} (num_beams={config.num_beams}); "
                "beam search and the other modes are not supported"
            )
        if config.num_return_sequences not in (None, 1):
            raise ValueError(
                f"num_return_sequences={config.num_return_sequences} is not supported "
                "(batch size 1 only)"
            )
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            shape = getattr(input_ids, "shape", input_ids)
            raise ValueError(f"input_ids must be a [1, prompt] tensor, got {shape}")
        if input_ids.shape[0] != 1:
            raise ValueError(
                f"input_ids has batch size {input_ids.shape[0]}; hierspec.hf.hierarchical "
                "supports batch size 1 only"
            )
        prompt_streamed = False
        if streamer is None:
            streamer = _streamer_of_generate(sys._getframe(1))
            prompt_streamed = streamer is not None
        _check_model_kwargs(model_kwargs)
        sampling = _sampling_of(logits_processor or [], config)
        max_length, eos_ids, stop_criteria = _stopping_of(stopping_criteria or [], config)
        prompt_length = input_ids.shape[1]
        if max_length is None:
            raise ValueError("the generation config has no max_length / max_new_tokens")
        max_new_tokens = max(0, max_length - prompt_length)
        if config.return_dict_in_generate:
            for flag in ("output_scores", "output_logits", "output_attentions"):
                if getattr(config, flag, False):
                    raise ValueError(f"{flag}=True is not supported by hierspec.hf.hierarchical")
            if getattr(config, "output_hidden_states", False):
                raise ValueError(
                    "output_hidden_states=True is not supported by hierspec.hf.hierarchical"
                )
        if seed is not None:
            _check_seed(seed)
        else:
            seed = self._seed
        decoder = self.decoder(model)
        arguments: dict[str, Any] = {}
        # The decoder streams bursts as they are committed (once its generate takes streamer=);
        # with stop strings the cut is known only at the end, so the streamer is fed then.
        engine_streams = (
            streamer is not None
            and not stop_criteria
            and "streamer" in inspect.signature(decoder.generate).parameters
        )
        if engine_streams:
            arguments["streamer"] = _SkipPrompt(streamer) if prompt_streamed else streamer
        output = decoder.generate(
            input_ids,
            max_new_tokens=max_new_tokens,
            temperature=sampling["temperature"],
            top_k=sampling["top_k"],
            top_p=sampling["top_p"],
            seed=seed,
            eos_token_id=eos_ids,
            **arguments,
        )
        self.last_output = output
        sequences = output.sequences.to(input_ids.device)
        if stop_criteria:
            sequences = _cut_at_stop(sequences, prompt_length, stop_criteria)
        if streamer is not None and not engine_streams:
            if not prompt_streamed:
                streamer.put(sequences[:, :prompt_length].cpu())
            if sequences.shape[1] > prompt_length:
                streamer.put(sequences[0, prompt_length:].cpu())
            streamer.end()
        if config.return_dict_in_generate:
            from transformers.generation import GenerateDecoderOnlyOutput

            return GenerateDecoderOnlyOutput(sequences=sequences)
        return sequences


class _SkipPrompt:
    """A streamer that drops the first ``put`` (the prompt, which transformers' ``generate`` has
    already fed to the wrapped streamer) and forwards the rest."""

    def __init__(self, streamer: Any) -> None:
        self._streamer = streamer
        self._prompt_skipped = False

    def put(self, token_ids: torch.Tensor) -> None:
        if not self._prompt_skipped:
            self._prompt_skipped = True
            return
        self._streamer.put(token_ids)

    def end(self) -> None:
        self._streamer.end()


def _streamer_of_generate(frame: Any) -> Any:
    """The ``streamer`` argument of ``GenerationMixin.generate`` when ``frame`` is its frame
    (transformers 5.24 feeds it the prompt but does not pass it to a callable
    ``custom_generate``), else ``None``."""
    code = frame.f_code if frame is not None else None
    if code is None or code.co_name != "generate":
        return None
    if "transformers" not in code.co_filename or "generation" not in code.co_filename:
        return None
    return frame.f_locals.get("streamer")


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or None, got {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")


def _check_model_kwargs(model_kwargs: dict[str, Any]) -> None:
    unknown = sorted(set(model_kwargs) - _PREPARED_MODEL_KWARGS)
    if unknown:
        raise ValueError(
            f"hierspec.hf.hierarchical does not support the model arguments {unknown} "
            "(it runs every model on token ids alone)"
        )
    mask = model_kwargs.get("attention_mask")
    if mask is not None and not bool((mask == 1).all()):
        raise ValueError("attention_mask has padding (zeros); hierspec decodes one unpadded prompt")
    for key in ("cache", "past_key_values"):
        cache = model_kwargs.get(key)
        if cache is not None and hasattr(cache, "get_seq_length") and cache.get_seq_length() > 0:
            raise ValueError(
                f"a prefilled {key} ({cache.get_seq_length()} tokens) is not supported; every "
                "level prefills the prompt itself"
            )


def _sampling_of(logits_processor: Sequence[object], config: Any) -> dict[str, Any]:
    """``temperature`` / ``top_k`` / ``top_p`` of hierspec from transformers' processor list.

    Only the warpers transformers builds from ``temperature`` / ``top_k`` / ``top_p``, in its
    order, and only when sampling; their values are read from the warpers themselves.
    """
    from transformers.generation import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    order = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)
    sampling: dict[str, Any] = {"temperature": 1.0, "top_k": None, "top_p": None}
    last = -1
    for processor in logits_processor:
        kind = type(processor)
        if kind not in order or not config.do_sample:
            raise ValueError(
                f"logits processor {kind.__name__} is not supported by hierspec.hf.hierarchical "
                "(only the temperature / top_k / top_p warpers of do_sample=True: every level "
                "must draw from the same processed law)"
            )
        position = order.index(kind)
        if position <= last:
            raise ValueError(
                f"logits processors out of transformers' order (temperature, top-k, top-p): "
                f"{[type(item).__name__ for item in logits_processor]}"
            )
        last = position
        if kind is TemperatureLogitsWarper:
            sampling["temperature"] = float(processor.temperature)
        elif kind is TopKLogitsWarper:
            sampling["top_k"] = operator.index(processor.top_k)
        else:
            if processor.min_tokens_to_keep != 1:
                raise ValueError(
                    f"top-p with min_tokens_to_keep={processor.min_tokens_to_keep} is not "
                    "supported (1 only)"
                )
            sampling["top_p"] = float(processor.top_p)
    if not config.do_sample:
        sampling["temperature"] = 0.0
    return sampling


def _stopping_of(
    stopping_criteria: Sequence[object], config: Any
) -> tuple[int | None, list[int] | None, list[object]]:
    """``(max_length, eos ids, stop-string criteria)`` from transformers' criteria list."""
    from transformers.generation import (
        EosTokenCriteria,
        MaxLengthCriteria,
        StopStringCriteria,
    )

    max_length = config.max_length
    eos_ids: list[int] | None = None
    stop_criteria: list[object] = []
    for criterion in stopping_criteria:
        if isinstance(criterion, MaxLengthCriteria):
            max_length = (
                criterion.max_length
                if max_length is None
                else min(max_length, criterion.max_length)
            )
        elif isinstance(criterion, EosTokenCriteria):
            ids = criterion.eos_token_id.flatten().tolist()
            eos_ids = ids if eos_ids is None else sorted(set(eos_ids) | set(ids))
        elif isinstance(criterion, StopStringCriteria):
            stop_criteria.append(criterion)
        else:
            raise ValueError(
                f"stopping criterion {type(criterion).__name__} is not supported by "
                "hierspec.hf.hierarchical (max length, EOS and stop strings only)"
            )
    return max_length, eos_ids, stop_criteria


def _cut_at_stop(
    sequences: torch.Tensor,  # [1, prompt + new] int64
    prompt_length: int,
    stop_criteria: list[object],
) -> torch.Tensor:
    """``sequences`` cut right after the first new token at which a criterion fires (where
    transformers, which checks after every token, stops)."""
    scores = torch.empty(0)  # stop-string criteria read the ids only
    for end in range(prompt_length + 1, sequences.shape[1] + 1):
        prefix = sequences[:, :end]
        if any(bool(criterion(prefix, scores).any()) for criterion in stop_criteria):
            return prefix
    return sequences
