"""Distilled drafts: small models with the target's tokenizer, trained from the target.

A draft keeps some of the target's decoder layers (:class:`DraftSpec`), its embeddings, final norm
and tied output head (frozen, so the draft's vocabulary IS the target's), and is trained to match
the target's next-token distributions.

Data (on-policy): prompts from the corpus train split (:func:`hierspec.corpus.training_prompts`
builds them; the benchmark prompts come from the held-out split and are never used), wrapped in
the target's chat template, and the target's own responses to them - half sampled at temperature
1, half greedy, from an explicit ``torch.Generator``. A draft is used to predict exactly such
responses, so this is the distribution that matters. For every position the target's top-k
log-probabilities are stored (:class:`TeacherData`, cached in ``<cache>/teacher/``).

Loss: the KL divergence ``KL(p_target || p_draft)`` over the top-k tokens plus one "tail" bucket
holding the remaining mass of each distribution:
``sum_{x in topk} p_t(x) (log p_t(x) - log p_d(x)) + r_t (log r_t - log r_d)``, with
``r = 1 - sum_{x in topk} p(x)``. This is the exact KL of the two distributions coarsened to
k + 1 outcomes (a lower bound of the full KL that is tight where the target is confident), and
needs the draft's full log-softmax but only k numbers per position from the target. By default
it covers the positions that predict response tokens (what a draft is used for); the first
``DraftSpec.frozen_layers`` layers stay the target's own and run without autograd.

Evaluation on the held-out prompts with the target's greedy responses: greedy agreement (the
draft's argmax equals the target's) and ``sum_x min(p_t(x), p_d(x))`` at temperature 1 (the
acceptance probability of one drafted token), on the response positions only.

Reproducibility: every random choice (response sampling, example order) comes from generators
seeded by the configuration; with the same configuration, code, library versions and thread count
two runs give identical weights (tested in tests/test_distill.py).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .protocol import DraftModel

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_LADDER",
    "Agreement",
    "DistillConfig",
    "DistillResult",
    "DraftSpec",
    "TeacherData",
    "TeacherDataConfig",
    "add_arguments",
    "distill",
    "distill_ladder",
    "draft_path",
    "draft_record",
    "evaluate_agreement",
    "generate_teacher_data",
    "init_draft",
    "load_draft",
    "run",
    "teacher_data",
]


@dataclass(frozen=True)
class DraftSpec:
    """A draft: its name and the indices of the target's decoder layers it starts from."""

    name: str
    layers: tuple[int, ...]
    trainable_layers: int | None = None  # the last this many layers are trained; None: all

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"name must be a non-empty string without '/', got {self.name!r}")
        layers = tuple(self.layers)
        if not layers or any(not isinstance(i, int) or i < 0 for i in layers):
            raise ValueError(f"layers must be a non-empty tuple of ints >= 0, got {self.layers!r}")
        if any(b <= a for a, b in zip(layers, layers[1:])):
            raise ValueError(f"layers must be strictly increasing, got {self.layers!r}")
        trainable = self.trainable_layers
        if trainable is not None and not (
            isinstance(trainable, int) and 0 <= trainable <= len(layers)
        ):
            raise ValueError(
                f"trainable_layers must be None or an int in [0, {len(layers)}], got {trainable!r}"
            )
        object.__setattr__(self, "layers", layers)

    @property
    def frozen_layers(self) -> int:
        """Number of leading layers kept frozen (exactly the target's) during training."""
        return 0 if self.trainable_layers is None else len(self.layers) - self.trainable_layers


@dataclass(frozen=True)
class TeacherDataConfig:
    """How the distillation data is generated from the target.

    ``num_prompts`` train-split prompts (at most ``max_prompt_tokens`` tokens each, chat-wrapped)
    get responses of up to ``max_new_tokens`` tokens; ``sample_fraction`` of them are sampled at
    temperature 1, the rest greedy. ``top_k`` target log-probabilities are kept per position.
    """

    num_prompts: int = 64
    max_prompt_tokens: int = 320
    max_new_tokens: int = 160
    sample_fraction: float = 0.5
    batch_size: int = 16
    top_k: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_prompts", "max_prompt_tokens", "max_new_tokens", "batch_size", "top_k"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0.0 <= self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in [0, 1], got {self.sample_fraction!r}")


@dataclass(frozen=True)
class DistillConfig:
    """Training of one draft. ``steps`` optimizer steps of one sequence each (AdamW, linear warmup
    then cosine decay to 10% of ``learning_rate``); the embeddings / tied head stay frozen."""

    steps: int = 240
    learning_rate: float = 1e-3
    warmup_steps: int = 12
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    loss_on: str = "response"
    data: TeacherDataConfig = field(default_factory=TeacherDataConfig)

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {self.steps!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(
                f"learning_rate must be a finite number > 0, got {self.learning_rate!r}"
            )
        if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be an int >= 0, got {self.warmup_steps!r}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip!r}")
        if self.loss_on not in ("response", "all"):
            raise ValueError(f"loss_on must be 'response' or 'all', got {self.loss_on!r}")


# The ladder hierspec builds by default: a cheap draft and a stronger one (see docs/family.md for
# the measurements behind the choice).
DEFAULT_LADDER: tuple[DraftSpec, ...] = (
    DraftSpec("draft-6l", tuple(range(6))),
    DraftSpec("draft-12l", tuple(range(12)), trainable_layers=2),
)
DEFAULT_CONFIG = DistillConfig()
# The agreement evaluation: held-out prompts (at most this many tokens), greedy responses of the
# target of this length, generated in one batch. Fixed, so every draft is measured on the same data.
EVAL_PROMPTS = 12
EVAL_NEW_TOKENS = 96
EVAL_MAX_PROMPT_TOKENS = 320


@dataclass(frozen=True)
class TeacherData:
    """Token sequences and the target's top-k predictions along them.

    ``sequences[i]``: ``[length_i]`` int64 (prompt then response); ``response_starts[i]``: index of
    the first response token. ``topk_ids[i]`` / ``topk_logprobs[i]``: ``[length_i - 1, k]`` int64 /
    float32, the target's k most likely next tokens after each position but the last and their
    log-probabilities (temperature 1). ``hidden[i]`` (optional): ``[length_i - 1, hidden]`` float32,
    the target's final hidden state (after the final norm) at the same positions, from which its
    full logits are ``lm_head(hidden)``.
    """

    sequences: tuple[torch.Tensor, ...]
    response_starts: tuple[int, ...]
    topk_ids: tuple[torch.Tensor, ...]
    topk_logprobs: tuple[torch.Tensor, ...]
    hidden: tuple[torch.Tensor, ...] | None = None

    def __post_init__(self) -> None:
        count = len(self.sequences)
        if not count:
            raise ValueError("sequences must not be empty")
        for name in ("response_starts", "topk_ids", "topk_logprobs"):
            if len(getattr(self, name)) != count:
                raise ValueError(
                    f"{name} must have {count} entries, got {len(getattr(self, name))}"
                )
        if self.hidden is not None and len(self.hidden) != count:
            raise ValueError(f"hidden must have {count} entries, got {len(self.hidden)}")
        for index, sequence in enumerate(self.sequences):
            if sequence.dim() != 1 or sequence.numel() < 2:
                raise ValueError(
                    f"sequences[{index}] must be 1-D with >= 2 tokens, "
                    f"got shape {tuple(sequence.shape)}"
                )
            if self.topk_ids[index].shape[0] != sequence.numel() - 1:
                raise ValueError(
                    f"topk_ids[{index}] must have {sequence.numel() - 1} rows, "
                    f"got {self.topk_ids[index].shape[0]}"
                )

    @property
    def num_tokens(self) -> int:
        return sum(int(s.numel()) for s in self.sequences)

    def to_dict(self) -> dict:
        return {
            "sequences": list(self.sequences),
            "response_starts": list(self.response_starts),
            "topk_ids": list(self.topk_ids),
            "topk_logprobs": list(self.topk_logprobs),
            "hidden": None if self.hidden is None else list(self.hidden),
        }

    @classmethod
    def from_dict(cls, data: dict) -> TeacherData:
        hidden = data.get("hidden")
        return cls(
            tuple(data["sequences"]),
            tuple(int(s) for s in data["response_starts"]),
            tuple(data["topk_ids"]),
            tuple(data["topk_logprobs"]),
            None if hidden is None else tuple(hidden),
        )


@dataclass(frozen=True)
class Agreement:
    """A draft measured against the target on response positions.

    ``greedy_agreement``: fraction of positions where the draft's argmax equals the target's.
    ``overlap``: mean of ``sum_x min(p_target(x), p_draft(x))`` at temperature 1.
    """

    greedy_agreement: float
    overlap: float
    num_positions: int


@dataclass(frozen=True)
class DistillResult:
    """What one distillation run produced: the final training loss (mean KL of the last 10% of
    steps, nats/token), agreement before and after training, wall time."""

    spec: DraftSpec
    final_kl: float
    initial: Agreement | None
    final: Agreement | None
    seconds: float
    threads: int

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# Teacher data


def _pad_token(tokenizer_or_config) -> int:
    value = getattr(tokenizer_or_config, "pad_token_id", None)
    return int(value) if value is not None else 0


@torch.no_grad()  # not inference_mode: the tensors returned are training data for autograd
def generate_teacher_data(
    target: torch.nn.Module,
    prompts: list[torch.Tensor],
    max_new_tokens: int,
    sample: list[bool],
    generator: torch.Generator,
    top_k: int,
    eos_token_id: int | None,
    batch_size: int = 8,
    keep_hidden: bool = False,
    progress: bool = False,
) -> TeacherData:
    """Responses of ``target`` to ``prompts`` and its top-k predictions along prompt + response.

    Args:
        target: a transformers causal LM (``target.model`` the decoder, ``target.lm_head`` the
            head), eval mode.
        prompts: token ids ``[length]`` (int64) per prompt.
        max_new_tokens: response length limit (a response also ends after ``eos_token_id``).
        sample: per prompt, True to sample at temperature 1 (from ``generator``), False greedy.
        top_k: predictions kept per position.
        keep_hidden: also keep the final hidden states (for exact evaluation).
    """
    from transformers import DynamicCache

    if len(sample) != len(prompts):
        raise ValueError(
            f"sample must have one entry per prompt ({len(prompts)}), got {len(sample)}"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    vocab = target.config.vocab_size
    if not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be in [1, {vocab}], got {top_k!r}")
    pad = _pad_token(target.config)
    head = target.get_output_embeddings()
    sequences: list[torch.Tensor] = []
    starts: list[int] = []
    all_ids: list[torch.Tensor] = []
    all_logprobs: list[torch.Tensor] = []
    all_hidden: list[torch.Tensor] = []
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(prompts) * max_new_tokens,
        desc="target responses",
        unit="tok",
        disable=not progress,
        leave=False,
    )
    for first in range(0, len(prompts), batch_size):
        batch_prompts = prompts[first : first + batch_size]
        batch_sample = torch.tensor(sample[first : first + batch_size])
        rows = len(batch_prompts)
        width = max(int(p.numel()) for p in batch_prompts)
        input_ids = torch.full((rows, width), pad, dtype=torch.int64)
        mask = torch.zeros((rows, width), dtype=torch.int64)
        for row, prompt in enumerate(batch_prompts):
            input_ids[row, width - prompt.numel() :] = prompt
            mask[row, width - prompt.numel() :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache(config=target.config)
        hidden = target.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
        ).last_hidden_state
        row_hidden = [
            [hidden[row, width - p.numel() :].float()] for row, p in enumerate(batch_prompts)
        ]
        generated: list[list[int]] = [[] for _ in range(rows)]
        finished = torch.zeros(rows, dtype=torch.bool)
        last = hidden[:, -1]
        for step in range(1, max_new_tokens + 1):
            logits = head(last).float()  # [rows, vocab]
            greedy = logits.argmax(-1)
            sampled = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator)[:, 0]
            next_ids = torch.where(batch_sample, sampled, greedy)
            for row in range(rows):
                if not finished[row]:
                    generated[row].append(int(next_ids[row]))
                    if eos_token_id is not None and int(next_ids[row]) == eos_token_id:
                        finished[row] = True
            bar.update(rows)
            if bool(finished.all()) or step == max_new_tokens:
                bar.update(rows * (max_new_tokens - step))  # steps not needed
                break
            mask = torch.cat([mask, torch.ones((rows, 1), dtype=torch.int64)], dim=1)
            positions = positions[:, -1:] + 1
            last = target.model(
                input_ids=next_ids[:, None],
                attention_mask=mask,
                position_ids=positions,
                cache=cache,
                use_cache=True,
            ).last_hidden_state[:, -1]
            for row in range(rows):
                row_hidden[row].append(last[row : row + 1].float())
        for row, prompt in enumerate(batch_prompts):
            response = torch.tensor(generated[row], dtype=torch.int64)
            sequence = torch.cat([prompt.to(torch.int64), response])
            states = torch.cat(row_hidden[row])[: sequence.numel() - 1]  # [length - 1, hidden]
            logprobs = torch.log_softmax(head(states).float(), dim=-1)
            values, ids = logprobs.topk(top_k, dim=-1)
            sequences.append(sequence)
            starts.append(int(prompt.numel()))
            all_ids.append(ids)
            all_logprobs.append(values)
            if keep_hidden:
                all_hidden.append(states.clone())
    bar.close()
    return TeacherData(
        tuple(sequences),
        tuple(starts),
        tuple(all_ids),
        tuple(all_logprobs),
        tuple(all_hidden) if keep_hidden else None,
    )


def _prompt_ids(tokenizer, prompts, max_prompt_tokens: int) -> list[torch.Tensor]:
    from hierspec.corpus import chat_input_ids

    ids = []
    for prompt in prompts:
        tokens = chat_input_ids(tokenizer, prompt.message)[0]
        if tokens.numel() > max_prompt_tokens:
            # Keep the end (the assistant header); the head of the excerpt is what is dropped.
            tokens = torch.cat([tokens[:1], tokens[-(max_prompt_tokens - 1) :]])
        ids.append(tokens)
    return ids


def _sample_flags(count: int, fraction: float, generator: torch.Generator) -> list[bool]:
    flags = torch.zeros(count, dtype=torch.bool)
    flags[torch.randperm(count, generator=generator)[: round(fraction * count)]] = True
    return flags.tolist()


# ---------------------------------------------------------------------------------------------
# Drafts and training


def init_draft(target: torch.nn.Module, spec: DraftSpec) -> torch.nn.Module:
    """A new model of the target's class with the layers ``spec.layers`` of the target, and its
    embeddings, final norm and (tied) head, in float32."""
    num_layers = target.config.num_hidden_layers
    if spec.layers[-1] >= num_layers:
        raise ValueError(
            f"spec.layers must index the target's {num_layers} layers, got {spec.layers}"
        )
    config = copy.deepcopy(target.config)
    config.num_hidden_layers = len(spec.layers)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[i] for i in spec.layers]
    source = {key: value.detach().float() for key, value in target.state_dict().items()}
    state = {}
    for key, value in source.items():
        if key.startswith("model.layers."):
            index, rest = key[len("model.layers.") :].split(".", 1)
            if int(index) in spec.layers:
                state[f"model.layers.{spec.layers.index(int(index))}.{rest}"] = value.clone()
        else:
            state[key] = value.clone()
    # The random initialisation is overwritten by load_state_dict(strict=True); forking keeps it
    # from consuming the caller's global random state.
    with torch.random.fork_rng(devices=[]):
        draft = type(target)(config)
    draft.load_state_dict(state, strict=True)
    draft.config.name_or_path = spec.name
    return draft.float().eval()


def _topk_kl(
    draft_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor
) -> torch.Tensor:
    """Mean KL(target || draft) over positions, on the top-k tokens plus one tail bucket.

    draft_logits ``[positions, vocab]``; topk_ids ``[positions, k]`` int64; topk_logprobs
    ``[positions, k]`` (target's log-probabilities of those tokens).
    """
    draft_logprobs = torch.log_softmax(draft_logits.float(), dim=-1)
    draft_top = draft_logprobs.gather(-1, topk_ids)
    target_top = topk_logprobs.float()
    target_probs = target_top.exp()
    head = (target_probs * (target_top - draft_top)).sum(-1)
    target_tail = (1.0 - target_probs.sum(-1)).clamp(min=0.0)
    draft_tail = (1.0 - draft_top.exp().sum(-1)).clamp(min=1e-12)
    tail = torch.xlogy(target_tail, target_tail) - target_tail * draft_tail.log()
    return (head + tail).mean()


def _decoder_forward(
    draft: torch.nn.Module, input_ids: torch.Tensor, frozen_layers: int
) -> torch.Tensor:
    """Final hidden states ``[1, length, hidden]`` (after the final norm) of a Llama-style
    ``draft`` on ``input_ids`` ``[1, length]``, without a cache; the first ``frozen_layers``
    layers run without autograd. Equals ``draft.model(input_ids).last_hidden_state``."""
    decoder = draft.model
    positions = torch.arange(input_ids.shape[1])[None]
    with torch.no_grad():
        hidden = decoder.embed_tokens(input_ids)
        embeddings = decoder.rotary_emb(hidden, positions)
        for layer in decoder.layers[:frozen_layers]:
            hidden = layer(hidden, position_embeddings=embeddings, position_ids=positions)
    # No attention mask: with several query tokens and no cache, attention is causal.
    for layer in decoder.layers[frozen_layers:]:
        hidden = layer(hidden, position_embeddings=embeddings, position_ids=positions)
    return decoder.norm(hidden)


def distill(
    target: torch.nn.Module,
    spec: DraftSpec,
    data: TeacherData,
    config: DistillConfig = DEFAULT_CONFIG,
    evaluation: TeacherData | None = None,
    progress: bool = False,
) -> tuple[torch.nn.Module, DistillResult]:
    """Trains the draft ``spec`` on ``data``; returns it (eval mode, float32) and a summary.

    Only the last ``spec.trainable_layers`` layers and the final norm are trained (all layers
    when None); embeddings and the tied head stay frozen. The loss covers the positions that
    predict response tokens (``config.loss_on="response"``) or all positions (``"all"``).
    ``evaluation`` (with ``hidden``) adds agreement before and after training.
    """
    from tqdm.auto import tqdm

    start_time = time.perf_counter()
    draft = init_draft(target, spec)
    initial = evaluate_agreement(draft, target, evaluation) if evaluation is not None else None
    frozen = spec.frozen_layers
    for parameter in draft.parameters():
        parameter.requires_grad_(False)
    trainable = [p for layer in draft.model.layers[frozen:] for p in layer.parameters()]
    trainable += list(draft.model.norm.parameters())
    for parameter in trainable:
        parameter.requires_grad_(True)
    head = draft.get_output_embeddings()
    optimizer = torch.optim.AdamW(
        trainable, lr=config.learning_rate, weight_decay=config.weight_decay
    )

    def schedule(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / (config.warmup_steps + 1)
        progress_fraction = (step - config.warmup_steps) / max(
            1, config.steps - config.warmup_steps
        )
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress_fraction))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    generator = torch.Generator().manual_seed(config.seed)
    order: list[int] = []
    losses: list[float] = []
    draft.train()
    bar = tqdm(range(config.steps), desc=f"distill {spec.name}", disable=not progress, leave=False)
    for _ in bar:
        if not order:
            order = torch.randperm(len(data.sequences), generator=generator).tolist()
        index = order.pop()
        first = data.response_starts[index] - 1 if config.loss_on == "response" else 0
        hidden = _decoder_forward(draft, data.sequences[index][:-1][None], frozen)[0, first:]
        logits = head(hidden)  # [positions, vocab]
        loss = _topk_kl(
            logits, data.topk_ids[index][first:].long(), data.topk_logprobs[index][first:]
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(kl=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
    bar.close()
    draft.eval()
    for parameter in draft.parameters():
        parameter.requires_grad_(False)
    tail = losses[-max(1, len(losses) // 10) :]
    final = evaluate_agreement(draft, target, evaluation) if evaluation is not None else None
    result = DistillResult(
        spec,
        sum(tail) / len(tail),
        initial,
        final,
        time.perf_counter() - start_time,
        torch.get_num_threads(),
    )
    return draft, result


@torch.inference_mode()
def evaluate_agreement(
    draft: torch.nn.Module | DraftModel, target: torch.nn.Module, data: TeacherData
) -> Agreement:
    """Greedy agreement and ``sum min(p, q)`` of ``draft`` vs ``target`` on the response
    positions of ``data`` (which must carry the target's ``hidden`` states). ``draft``: a
    transformers causal LM or any :class:`hierspec.DraftModel` (e.g. the n-gram drafter), which
    scores each sequence in one teacher-forced ``append``."""
    if data.hidden is None:
        raise ValueError("data must carry the target's hidden states (keep_hidden=True)")
    head = target.get_output_embeddings()
    agree = 0.0
    overlap = 0.0
    count = 0
    for sequence, start, hidden in zip(data.sequences, data.response_starts, data.hidden):
        # Rows start-1 .. length-2 predict the response tokens.
        target_logits = head(hidden[start - 1 :].to(head.weight.dtype)).float()
        if isinstance(draft, torch.nn.Module):
            draft_logits = draft(input_ids=sequence[:-1][None], use_cache=False).logits[
                0, start - 1 :
            ]
        else:
            draft.reset()
            draft_logits = draft.append(sequence[:-1][None])[0, start - 1 :]
        draft_logits = draft_logits.float()
        agree += float((target_logits.argmax(-1) == draft_logits.argmax(-1)).sum())
        overlap += float(torch.minimum(target_logits.softmax(-1), draft_logits.softmax(-1)).sum())
        count += target_logits.shape[0]
    return Agreement(agree / count, overlap / count, count)


# ---------------------------------------------------------------------------------------------
# Cache


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _target_id(cache: Path) -> str:
    from hierspec.family import target_path

    marker = target_path(cache) / "hierspec-source.json"
    return json.loads(marker.read_text())["gguf_sha256"][:16]


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    os.close(handle)
    try:
        torch.save(obj, temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; the cache is ordinary files
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def teacher_data(
    cache: str | os.PathLike | None = None,
    config: TeacherDataConfig | None = None,
    split: str = "train",
    progress: bool = True,
    target: torch.nn.Module | None = None,
) -> TeacherData:
    """The distillation (``split="train"``, per ``config``) or evaluation (``"heldout"``) data,
    cached in ``<cache>/teacher/``.

    Evaluation data: :data:`EVAL_PROMPTS` held-out prompts, greedy responses of
    :data:`EVAL_NEW_TOKENS` tokens, with the target's hidden states; independent of ``config``.
    Prompts longer than the limit keep their first token and their end (the assistant header).
    """
    from hierspec import corpus
    from hierspec.family import cache_dir, convert_target, load_target, load_tokenizer

    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    config = config or DEFAULT_CONFIG.data
    root = cache_dir(cache)
    convert_target(root)
    evaluation = [
        EVAL_PROMPTS,
        EVAL_NEW_TOKENS,
        EVAL_MAX_PROMPT_TOKENS,
        corpus.SPLITS,
    ]  # + split rule
    key = _key(
        split,
        asdict(config) if split == "train" else evaluation,
        _target_id(root),
        corpus.fingerprint(),
        torch.__version__,
    )
    path = root / "teacher" / f"{split}-{key}.pt"
    if path.is_file():
        return TeacherData.from_dict(torch.load(path, weights_only=True))
    tokenizer = load_tokenizer(root)
    target = target if target is not None else load_target(root)
    if split == "train":
        prompts = corpus.training_prompts(config.num_prompts)
        ids = _prompt_ids(tokenizer, prompts, config.max_prompt_tokens)
        generator = torch.Generator().manual_seed(config.seed)
        flags = _sample_flags(len(ids), config.sample_fraction, generator)
        data = generate_teacher_data(
            target,
            ids,
            config.max_new_tokens,
            flags,
            generator,
            config.top_k,
            tokenizer.eos_token_id,
            config.batch_size,
            keep_hidden=False,
            progress=progress,
        )
    else:
        prompts = corpus.heldout_prompts(EVAL_PROMPTS)
        ids = _prompt_ids(tokenizer, prompts, EVAL_MAX_PROMPT_TOKENS)
        data = generate_teacher_data(
            target,
            ids,
            EVAL_NEW_TOKENS,
            [False] * len(ids),
            torch.Generator().manual_seed(0),
            1,
            tokenizer.eos_token_id,
            EVAL_PROMPTS,
            keep_hidden=True,
            progress=progress,
        )
    _atomic_save(data.to_dict(), path)
    return data


def draft_path(
    spec: DraftSpec, cache: str | os.PathLike | None = None, config: DistillConfig = DEFAULT_CONFIG
) -> Path:
    """Directory of the distilled draft ``spec`` under ``config`` (it may not exist yet)."""
    from hierspec import corpus
    from hierspec.family import cache_dir, convert_target

    root = cache_dir(cache)
    convert_target(root)
    key = _key(
        asdict(spec), asdict(config), _target_id(root), corpus.fingerprint(), torch.__version__
    )
    return root / "drafts" / f"{spec.name}-{key}"


def distill_ladder(
    cache: str | os.PathLike | None = None,
    ladder: tuple[DraftSpec, ...] = DEFAULT_LADDER,
    config: DistillConfig = DEFAULT_CONFIG,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Distils every draft of ``ladder`` that is not cached (all with ``force``); returns their
    directories. Each holds the model, the tokenizer and ``hierspec-draft.json`` (spec,
    configuration, agreement before/after training, time)."""
    from hierspec.family import cache_dir, load_target, load_tokenizer, save_checkpoint

    root = cache_dir(cache)
    paths = [draft_path(spec, root, config) for spec in ladder]
    missing = [
        (spec, path)
        for spec, path in zip(ladder, paths)
        if force or not (path / "hierspec-draft.json").is_file()
    ]
    if not missing:
        return paths
    target = load_target(root)
    tokenizer = load_tokenizer(root)
    data = teacher_data(root, config.data, "train", progress, target)
    evaluation = teacher_data(root, config.data, "heldout", progress, target)
    for spec, path in missing:
        draft, result = distill(target, spec, data, config, evaluation, progress)
        record = {
            "spec": asdict(spec),
            "config": asdict(config),
            "result": result.to_dict(),
            "teacher_tokens": data.num_tokens,
        }
        save_checkpoint(path, draft, tokenizer, "hierspec-draft.json", record)
        if progress:
            final = result.final
            print(
                f"{spec.name}: {len(spec.layers)} layers, KL {result.final_kl:.3f}, "
                f"greedy agreement {final.greedy_agreement:.3f}, overlap {final.overlap:.3f} "
                f"({result.seconds:.0f} s, {result.threads} threads) -> {path}"
            )
    return paths


def load_draft(
    spec: DraftSpec,
    cache: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    config: DistillConfig = DEFAULT_CONFIG,
) -> torch.nn.Module:
    """A distilled draft from the cache, eval mode, in ``dtype``.

    Raises:
        FileNotFoundError: not distilled yet (run ``hierspec distill``).
    """
    import transformers

    path = draft_path(spec, cache, config)
    if not (path / "hierspec-draft.json").is_file():
        raise FileNotFoundError(f"draft {spec.name} not found in {path}; run `hierspec distill`")
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device).eval()


def draft_record(
    spec: DraftSpec, cache: str | os.PathLike | None = None, config: DistillConfig = DEFAULT_CONFIG
) -> dict:
    """The ``hierspec-draft.json`` record of a distilled draft."""
    path = draft_path(spec, cache, config) / "hierspec-draft.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"draft {spec.name} not found in {path.parent}; run `hierspec distill`"
        )
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``hierspec distill``."""
    parser.add_argument(
        "--cache", help="cache directory (default $HIERSPEC_CACHE or ~/.cache/hierspec)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_CONFIG.steps,
        help=f"optimizer steps per draft ({DEFAULT_CONFIG.steps})",
    )
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_CONFIG.learning_rate)
    parser.add_argument("--seed", type=int, default=DEFAULT_CONFIG.seed)
    parser.add_argument(
        "--prompts",
        type=int,
        default=DEFAULT_CONFIG.data.num_prompts,
        help="train-split prompts the target answers to make the data "
        f"({DEFAULT_CONFIG.data.num_prompts})",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: all cores)"
    )
    parser.add_argument("--force", action="store_true", help="retrain even if cached")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """``hierspec distill``: convert the target, count corpus n-grams, distil the ladder."""
    from hierspec import ngram
    from hierspec.family import cache_dir, convert_target, load_tokenizer

    config = DistillConfig(
        steps=args.steps,
        learning_rate=args.learning_rate,
        seed=args.seed,
        data=TeacherDataConfig(
            **{**asdict(DEFAULT_CONFIG.data), "num_prompts": args.prompts, "seed": args.seed}
        ),
    )
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    progress = not args.no_progress
    root = cache_dir(args.cache)
    if config != DEFAULT_CONFIG:
        print(
            "note: non-default settings; load_family() and `hierspec generate` use the drafts "
            "distilled with the defaults, these are cached separately"
        )
    started = time.perf_counter()
    print(f"target: {convert_target(root)} (SmolLM2-135M-Instruct, Q4_1 GGUF dequantized to fp32)")
    statistics = ngram.load_corpus_statistics(load_tokenizer(root), cache=root, progress=progress)
    print(f"n-gram statistics: {statistics.num_tokens} corpus tokens")
    paths = distill_ladder(root, DEFAULT_LADDER, config, force=args.force, progress=progress)
    for spec, path in zip(DEFAULT_LADDER, paths):
        result = json.loads((path / "hierspec-draft.json").read_text())["result"]
        final = result["final"]
        print(
            f"{spec.name:>10}: {len(spec.layers):2d} layers, greedy agreement "
            f"{final['greedy_agreement']:.3f}, overlap {final['overlap']:.3f}  {path}"
        )
    print(f"family ready in {root} ({time.perf_counter() - started:.0f} s)")
    return 0
