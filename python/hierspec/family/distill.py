"""Distilled drafts: small models with the target's tokenizer, trained from the target.

A draft keeps some of the target's decoder layers (:class:`DraftSpec`), its embeddings, final norm
and tied output head (frozen, so the draft's vocabulary IS the target's), and is trained to match
the target's next-token distributions.

Data (:mod:`hierspec.family.teacher`, corpus train split only), one or both of: the target's own
responses to train-split prompts (on-policy, ``DistillConfig.data``), and windows of train-split
text scored by the target in one teacher-forced pass each (``DistillConfig.windows``); with its
top-k log-probabilities at every position. Both sources form one pool of sequences; every step
trains on one sequence drawn from it (a window's targets are all its positions).

Loss: the KL divergence ``KL(p_target || p_draft)`` over the top-k tokens plus one "tail" bucket
holding the remaining mass of each distribution:
``sum_{x in topk} p_t(x) (log p_t(x) - log p_d(x)) + r_t (log r_t - log r_d)``, with
``r = 1 - sum_{x in topk} p(x)``. This is the exact KL of the two distributions coarsened to
k + 1 outcomes (a lower bound of the full KL that is tight where the target is confident), and
needs the draft's full log-softmax but only k numbers per position from the target. It covers
the positions that predict response tokens (``loss_on="response"``: what a draft is used for) or
every position, the prompt's too (``"all"``, the default: more signal from the same forward
pass, measured in docs/family.md); the first ``DraftSpec.frozen_layers`` layers stay the
target's own and run without autograd.

Evaluation on the held-out prompts with the target's greedy responses: greedy agreement (the
draft's argmax equals the target's) and ``sum_x min(p_t(x), p_d(x))`` at temperature 1 (the
acceptance probability of one drafted token), on the response positions only.

Reproducibility: every random choice (response sampling, window selection, example order) comes
from generators seeded by the configuration; with the same configuration, code, library versions
and thread count two runs give identical weights (tested in tests/test_distill.py).
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hierspec.io import content_key
from hierspec.protocol import DraftModel

from . import corpus
from .cache import DRAFT_MARKER, cache_dir, save_checkpoint
from .target import load_target, load_tokenizer, target_id
from .teacher import (
    CorpusWindowsConfig,
    TeacherData,
    TeacherDataConfig,
    teacher_data,
    window_data,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_LADDER",
    "Agreement",
    "Checkpoint",
    "DistillConfig",
    "DistillResult",
    "DraftSpec",
    "distill",
    "distill_ladder",
    "draft_path",
    "draft_record",
    "evaluate_agreement",
    "training_data",
    "init_draft",
    "load_draft",
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
class DistillConfig:
    """Training of one draft. ``steps`` optimizer steps of one sequence each (AdamW, linear warmup
    then cosine decay to 10% of ``learning_rate``); the embeddings / tied head stay frozen.

    The data: the target's responses to train-split prompts (``data``; None: none) and
    teacher-forced train-split windows (``windows``; None: none), at least one of the two.
    """

    steps: int = 240
    learning_rate: float = 1e-3
    warmup_steps: int = 12
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    loss_on: str = "response"
    data: TeacherDataConfig | None = field(default_factory=TeacherDataConfig)
    windows: CorpusWindowsConfig | None = None

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
        if self.data is not None and not isinstance(self.data, TeacherDataConfig):
            raise TypeError(
                f"data must be a TeacherDataConfig or None, got {type(self.data).__name__}"
            )
        if self.windows is not None and not isinstance(self.windows, CorpusWindowsConfig):
            raise TypeError(
                f"windows must be a CorpusWindowsConfig or None, got {type(self.windows).__name__}"
            )
        if self.data is None and self.windows is None:
            raise ValueError("data and windows must not both be None (no training data)")

    def key(self) -> dict:
        """The configuration as it enters the drafts' cache keys: ``asdict``, without
        ``windows`` when it is None (so the keys of drafts distilled before windows existed
        stay valid)."""
        fields = asdict(self)
        if self.windows is None:
            del fields["windows"]
        return fields


# The ladder hierspec builds by default: a cheap draft and a stronger one (see docs/family.md for
# the measurements behind the choice).
DEFAULT_LADDER: tuple[DraftSpec, ...] = (
    DraftSpec("draft-6l", tuple(range(6))),
    DraftSpec("draft-12l", tuple(range(12)), trainable_layers=2),
)
# The loss covers every position of the target's responses, prompt included (the forward pass
# computes them anyway): in 240 steps held-out greedy agreement 0.329 against 0.300 with the loss
# on the response positions only, for ~40% more training time per step; corpus windows did not
# beat the responses in equal steps (bench/distill_curve.py, docs/family.md).
DEFAULT_CONFIG = DistillConfig(loss_on="all")


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
class Checkpoint:
    """Agreement after ``step`` optimizer steps, ``train_seconds`` of training (wall time of the
    steps so far, evaluations excluded); ``kl``: mean training loss of the last 10% of those
    steps (nats/token)."""

    step: int
    train_seconds: float
    kl: float
    agreement: Agreement


@dataclass(frozen=True)
class DistillResult:
    """What one distillation run produced: the final training loss (mean KL of the last 10% of
    steps, nats/token), agreement before and after training, wall time (evaluations included),
    and the agreement at the steps ``distill(evaluate_at=...)`` asked for."""

    spec: DraftSpec
    final_kl: float
    initial: Agreement | None
    final: Agreement | None
    seconds: float
    threads: int
    checkpoints: tuple[Checkpoint, ...] = ()

    def to_dict(self) -> dict:
        return asdict(self)


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
    evaluate_at: tuple[int, ...] = (),
) -> tuple[torch.nn.Module, DistillResult]:
    """Trains the draft ``spec`` on ``data``; returns it (eval mode, float32) and a summary.

    Only the last ``spec.trainable_layers`` layers and the final norm are trained (all layers
    when None); embeddings and the tied head stay frozen. The loss covers the positions that
    predict response tokens (``config.loss_on="response"``; all positions of a corpus window)
    or all positions (``"all"``). ``evaluation`` (with ``hidden``) adds agreement before and
    after training, and after each step count of ``evaluate_at`` (in ``[1, config.steps]``;
    evaluating does not change the training: same weights with or without it).
    """
    from tqdm.auto import tqdm

    evaluate_at = tuple(sorted(set(evaluate_at)))
    if evaluate_at and (
        evaluation is None
        or any(not isinstance(s, int) or not 1 <= s <= config.steps for s in evaluate_at)
    ):
        raise ValueError(
            f"evaluate_at must hold step counts in [1, {config.steps}] and needs evaluation, "
            f"got {evaluate_at!r}"
        )
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
    checkpoints: list[Checkpoint] = []
    evaluation_seconds = 0.0
    train_start = time.perf_counter()
    draft.train()
    bar = tqdm(range(config.steps), desc=f"distill {spec.name}", disable=not progress, leave=False)
    for step in bar:
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
        if step + 1 in evaluate_at:
            evaluated = time.perf_counter()
            train_seconds = evaluated - train_start - evaluation_seconds
            draft.eval()
            agreement = evaluate_agreement(draft, target, evaluation)
            draft.train()
            recent = losses[-max(1, len(losses) // 10) :]
            checkpoints.append(
                Checkpoint(step + 1, train_seconds, sum(recent) / len(recent), agreement)
            )
            evaluation_seconds += time.perf_counter() - evaluated
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
        tuple(checkpoints),
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


def draft_path(
    spec: DraftSpec, cache: str | os.PathLike | None = None, config: DistillConfig = DEFAULT_CONFIG
) -> Path:
    """Directory of the distilled draft ``spec`` under ``config`` (it may not exist yet).

    Its name ends with a key of everything that determines the weights: the spec, the
    configuration, the target's GGUF sha256, the corpus fingerprint and the torch version.
    """
    root = cache_dir(cache)
    key = content_key(
        asdict(spec),
        config.key(),
        target_id(root),
        corpus.fingerprint(),
        torch.__version__,
        length=12,
    )
    return root / "drafts" / f"{spec.name}-{key}"


def distill_ladder(
    cache: str | os.PathLike | None = None,
    ladder: tuple[DraftSpec, ...] = DEFAULT_LADDER,
    config: DistillConfig = DEFAULT_CONFIG,
    force: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Distils every draft of ``ladder`` that is not cached yet.

    Generates (or reads from the cache) the teacher data first: the distillation data per
    ``config.data`` and the held-out evaluation data.

    Parameters
    ----------
    cache
        Cache directory (:func:`hierspec.family.cache.cache_dir`).
    ladder
        The drafts.
    config
        Their training configuration (part of each draft's cache key).
    force
        Distil every draft again, cached or not.
    progress
        Show progress bars and print one line per distilled draft.

    Returns
    -------
    list[Path]
        One directory per draft of ``ladder``, each holding the model, the tokenizer and a
        :data:`~hierspec.family.cache.DRAFT_MARKER` record (spec, configuration, agreement
        before and after training, time).
    """
    root = cache_dir(cache)
    paths = [draft_path(spec, root, config) for spec in ladder]
    missing = [
        (spec, path)
        for spec, path in zip(ladder, paths)
        if force or not (path / DRAFT_MARKER).is_file()
    ]
    if not missing:
        return paths
    target = load_target(root)
    tokenizer = load_tokenizer(root)
    data = training_data(root, config, progress, target)
    evaluation = teacher_data(root, split="heldout", progress=progress, target=target)
    for spec, path in missing:
        draft, result = distill(target, spec, data, config, evaluation, progress)
        record = {
            "spec": asdict(spec),
            "config": asdict(config),
            "result": result.to_dict(),
            "teacher_tokens": data.num_tokens,
        }
        save_checkpoint(path, draft, tokenizer, DRAFT_MARKER, record)
        if progress:
            final = result.final
            print(
                f"{spec.name}: {len(spec.layers)} layers, KL {result.final_kl:.3f}, "
                f"greedy agreement {final.greedy_agreement:.3f}, overlap {final.overlap:.3f} "
                f"({result.seconds:.0f} s, {result.threads} threads) -> {path}"
            )
    return paths


def training_data(
    cache: str | os.PathLike | None = None,
    config: DistillConfig = DEFAULT_CONFIG,
    progress: bool = True,
    target: torch.nn.Module | None = None,
) -> TeacherData:
    """The distillation data of ``config``: the target's responses (``config.data``) then the
    corpus windows (``config.windows``), each read from ``<cache>/teacher/`` or made and cached
    there (``target``: the float32 target if already loaded)."""
    parts = []
    if config.data is not None:
        parts.append(teacher_data(cache, config.data, "train", progress, target))
    if config.windows is not None:
        parts.append(window_data(cache, config.windows, progress, target))
    return TeacherData.concatenate(parts)


def load_draft(
    spec: DraftSpec,
    cache: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    config: DistillConfig = DEFAULT_CONFIG,
) -> torch.nn.Module:
    """A distilled draft from the cache, eval mode, in ``dtype``.

    Raises
    ------
    FileNotFoundError
        Not distilled yet; the message names ``hierspec distill``.
    """
    import transformers

    path = draft_path(spec, cache, config)
    if not (path / DRAFT_MARKER).is_file():
        raise FileNotFoundError(f"draft {spec.name} not found in {path}; run `hierspec distill`")
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.to(device).eval()


def draft_record(
    spec: DraftSpec, cache: str | os.PathLike | None = None, config: DistillConfig = DEFAULT_CONFIG
) -> dict:
    """The :data:`~hierspec.family.cache.DRAFT_MARKER` record of a distilled draft (a dict: spec,
    config, result, teacher_tokens)."""
    path = draft_path(spec, cache, config) / DRAFT_MARKER
    if not path.is_file():
        raise FileNotFoundError(
            f"draft {spec.name} not found in {path.parent}; run `hierspec distill`"
        )
    return json.loads(path.read_text())
