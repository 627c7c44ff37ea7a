"""Teacher data: the target's top-k predictions along its own responses and along corpus text.

Two sources of distillation data, both from the corpus **train** split only:

    responses   (on-policy, :class:`TeacherDataConfig`): the target answers train-split prompts;
                costs one target pass per generated token (the decode loop below).
    windows     (teacher-forced, :class:`CorpusWindowsConfig`): windows of consecutive tokens of
                train-split documents, scored by the target in one pass per window (no
                generation), so many more tokens fit the same minutes; raw corpus text, not chat
                responses.

Data (on-policy): prompts from the corpus train split
(:func:`hierspec.family.corpus.training_prompts`; the benchmark prompts come from the held-out
split and are never used), wrapped in the target's chat template, and the target's own responses
to them - half sampled at temperature 1, half greedy, from an explicit ``torch.Generator``. A
draft is used to predict exactly such responses, so this is the distribution that matters. For
every position the target's top-k log-probabilities are stored (:class:`TeacherData`, cached in
``<cache>/teacher/``). The evaluation data (held-out prompts, greedy responses) also keeps the
target's final hidden states, from which its full logits are one head pass away.

Why a decode loop of its own and not :class:`hierspec.HierarchicalDecoder`: the engine decodes
one sequence at a time and returns tokens; teacher generation needs many prompts answered in
one left-padded batch (the cost that bounds distillation on a CPU), a per-row choice of greedy
or sampled response, and the target's hidden state at every position of prompt + response.
Nothing here is speculative: it is the target alone, and its output is training data, not a
decoding result.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from hierspec.io import atomic_path, content_key
from hierspec.prompts import chat_input_ids

from . import corpus
from .cache import cache_dir
from .target import load_target, load_tokenizer, target_id

__all__ = [
    "EVAL_MAX_PROMPT_TOKENS",
    "EVAL_NEW_TOKENS",
    "EVAL_PROMPTS",
    "CorpusWindow",
    "CorpusWindowsConfig",
    "TeacherData",
    "TeacherDataConfig",
    "generate_teacher_data",
    "select_windows",
    "teacher_data",
    "teacher_forced_data",
    "window_data",
]


def _check_positive_ints(config: object, names: Sequence[str]) -> None:
    """``ValueError`` naming the field and its value unless each of ``names`` is an int (not a
    bool) >= 1."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


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
        _check_positive_ints(
            self, ("num_prompts", "max_prompt_tokens", "max_new_tokens", "batch_size", "top_k")
        )
        if not 0.0 <= self.sample_fraction <= 1.0:
            raise ValueError(f"sample_fraction must be in [0, 1], got {self.sample_fraction!r}")


@dataclass(frozen=True)
class CorpusWindowsConfig:
    """Teacher-forced distillation data: ``num_windows`` windows of ``window_tokens`` consecutive
    tokens of corpus train-split documents (:func:`select_windows`, seeded by ``seed``), scored
    by the target ``batch_size`` windows per pass; ``top_k`` log-probabilities kept per position.
    Every position of a window but the first is a training target (``response_starts`` = 1).
    """

    num_windows: int = 128
    window_tokens: int = 256
    batch_size: int = 8
    top_k: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive_ints(self, ("num_windows", "batch_size", "top_k"))
        value = self.window_tokens
        if not isinstance(value, int) or isinstance(value, bool) or value < 2:
            raise ValueError(f"window_tokens must be an int >= 2, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed must be an int, got {self.seed!r}")


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

    @property
    def num_targets(self) -> int:
        """Positions that predict a response token (``loss_on="response"``'s training targets)."""
        return sum(int(s.numel()) - start for s, start in zip(self.sequences, self.response_starts))

    @classmethod
    def concatenate(cls, parts: Sequence[TeacherData]) -> TeacherData:
        """The entries of ``parts`` in order (``hidden`` kept only when every part has it)."""
        if not parts:
            raise ValueError("parts must not be empty")
        with_hidden = all(part.hidden is not None for part in parts)
        return cls(
            tuple(s for part in parts for s in part.sequences),
            tuple(s for part in parts for s in part.response_starts),
            tuple(s for part in parts for s in part.topk_ids),
            tuple(s for part in parts for s in part.topk_logprobs),
            tuple(h for part in parts for h in part.hidden) if with_hidden else None,
        )

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

    The prompts are answered ``batch_size`` at a time, left-padded, with a key-value cache; a
    greedy row's response equals ``target.generate(prompt, do_sample=False)``.

    Parameters
    ----------
    target
        A Llama-style transformers causal LM (``target.model`` the decoder, its output
        embeddings the head), eval mode.
    prompts
        Token ids ``[length]`` (int64) per prompt.
    max_new_tokens
        Response length limit (a response also ends after ``eos_token_id``).
    sample
        Per prompt, True to sample at temperature 1 (from ``generator``), False for greedy.
    generator
        The only source of randomness.
    top_k
        Predictions kept per position, in ``[1, vocab]``.
    eos_token_id
        Ends a response (kept as its last token); None: every response has ``max_new_tokens``.
    batch_size
        Prompts per batch.
    keep_hidden
        Also keep the final hidden states (for exact evaluation).
    progress
        Show a progress bar.

    Returns
    -------
    TeacherData
        One entry per prompt, in order.
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


def _cache_path(root: Path, name: str, payload: object) -> Path:
    """``<root>/teacher/<name>-<key>.pt``; the key covers ``payload`` (the data's
    configuration), the target's GGUF sha256, the corpus fingerprint and the torch version."""
    key = content_key(
        name, payload, target_id(root), corpus.fingerprint(), torch.__version__, length=12
    )
    return root / "teacher" / f"{name}-{key}.pt"


def teacher_data(
    cache: str | os.PathLike | None = None,
    config: TeacherDataConfig | None = None,
    split: str = "train",
    progress: bool = True,
    target: torch.nn.Module | None = None,
) -> TeacherData:
    """The distillation or evaluation data of the bundled target, cached in ``<cache>/teacher/``.

    Prompts longer than their limit keep their first token and their end (the assistant header).

    Parameters
    ----------
    cache
        Cache directory (:func:`hierspec.family.cache.cache_dir`); the target is converted first
        if needed.
    config
        How the distillation data is made (default ``TeacherDataConfig()``); ignored for the
        evaluation data.
    split
        ``"train"``: distillation data per ``config``. ``"heldout"``: evaluation data,
        :data:`EVAL_PROMPTS` held-out prompts with greedy responses of :data:`EVAL_NEW_TOKENS`
        tokens and the target's hidden states.
    progress
        Show a progress bar while the target answers.
    target
        The float32 target if already loaded (else it is loaded when the data is not cached).

    Returns
    -------
    TeacherData
        The cached or newly generated data.
    """
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    config = config or TeacherDataConfig()
    root = cache_dir(cache)
    evaluation = [
        EVAL_PROMPTS,
        EVAL_NEW_TOKENS,
        EVAL_MAX_PROMPT_TOKENS,
        corpus.SPLITS,
    ]  # + split rule
    path = _cache_path(root, split, asdict(config) if split == "train" else evaluation)
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
    with atomic_path(path) as temporary:
        torch.save(data.to_dict(), temporary)
    return data


# ---------------------------------------------------------------------------------------------
# Teacher-forced corpus windows


@dataclass(frozen=True)
class CorpusWindow:
    """One window: ``token_ids`` ``[window_tokens]`` int64 = the tokens ``start ..
    start + window_tokens - 1`` of the train-split document ``source/name``."""

    source: str
    name: str
    start: int
    token_ids: torch.Tensor


# A document is a candidate when it has at least this many characters per window token (BPE
# tokens of English and code average 3-4 characters), so most candidates hold a whole window;
# the few that tokenize shorter are skipped by drawing again.
_CHARS_PER_WINDOW_TOKEN = 4


def select_windows(
    tokenize: Callable[[str], list[int]],
    num_windows: int,
    window_tokens: int,
    generator: torch.Generator,
) -> list[CorpusWindow]:
    """``num_windows`` windows of ``window_tokens`` tokens of corpus **train**-split documents.

    Window ``i`` comes from source ``corpus.SOURCES[i % 2]`` (prose and code alternate, as in
    the prompts), from a document of that source drawn uniformly among those with at least
    ``4 * window_tokens`` characters, at a token offset drawn uniformly among those that fit;
    every draw comes from ``generator``. Documents are tokenized (``tokenize``: text -> ids)
    only when drawn. The validation and held-out splits are never read.
    """
    if not isinstance(num_windows, int) or num_windows < 1:
        raise ValueError(f"num_windows must be an int >= 1, got {num_windows!r}")
    if not isinstance(window_tokens, int) or window_tokens < 2:
        raise ValueError(f"window_tokens must be an int >= 2, got {window_tokens!r}")
    candidates = {
        source: [
            document
            for document in corpus.documents("train", (source,))
            if len(document.text) >= _CHARS_PER_WINDOW_TOKEN * window_tokens
        ]
        for source in corpus.SOURCES
    }
    for source, documents in candidates.items():
        if not documents:
            raise ValueError(
                f"window_tokens={window_tokens} is too long: no {source} train document has "
                f"{_CHARS_PER_WINDOW_TOKEN * window_tokens} characters"
            )
    tokenized: dict[tuple[str, str], list[int]] = {}
    windows: list[CorpusWindow] = []
    attempts = 0
    while len(windows) < num_windows:
        attempts += 1
        if attempts > 20 * num_windows:
            raise ValueError(
                f"window_tokens={window_tokens} is too long: too few train documents hold a window"
            )
        documents = candidates[corpus.SOURCES[len(windows) % len(corpus.SOURCES)]]
        document = documents[int(torch.randint(len(documents), (1,), generator=generator))]
        key = (document.source, document.name)
        if key not in tokenized:
            tokenized[key] = list(tokenize(document.text))
        ids = tokenized[key]
        if len(ids) < window_tokens:
            continue
        start = int(torch.randint(len(ids) - window_tokens + 1, (1,), generator=generator))
        window = torch.tensor(ids[start : start + window_tokens], dtype=torch.int64)
        windows.append(CorpusWindow(document.source, document.name, start, window))
    return windows


@torch.no_grad()  # not inference_mode: the tensors returned are training data for autograd
def teacher_forced_data(
    target: torch.nn.Module,
    windows: Sequence[torch.Tensor],
    top_k: int,
    batch_size: int = 8,
    progress: bool = False,
) -> TeacherData:
    """The target's top-k predictions along each of ``windows`` (``[length]`` int64 each, all of
    one length), ``batch_size`` windows per forward pass, no generation and no cache.

    Returns one entry per window, in order, with ``response_starts`` = 1: every position but
    the last predicts a token of the window, and all are training targets.
    """
    if not windows:
        raise ValueError("windows must not be empty")
    lengths = {int(w.numel()) for w in windows}
    if len(lengths) != 1 or min(lengths) < 2:
        raise ValueError(f"windows must all have one length >= 2, got lengths {sorted(lengths)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    vocab = target.config.vocab_size
    if not isinstance(top_k, int) or not 1 <= top_k <= vocab:
        raise ValueError(f"top_k must be an int in [1, {vocab}], got {top_k!r}")
    from tqdm.auto import tqdm

    head = target.get_output_embeddings()
    all_ids: list[torch.Tensor] = []
    all_logprobs: list[torch.Tensor] = []
    bar = tqdm(
        total=len(windows) * min(lengths),
        desc="target on corpus windows",
        unit="tok",
        disable=not progress,
        leave=False,
    )
    for first in range(0, len(windows), batch_size):
        batch = torch.stack([w.to(torch.int64) for w in windows[first : first + batch_size]])
        hidden = target.model(input_ids=batch[:, :-1], use_cache=False).last_hidden_state
        for row in range(batch.shape[0]):  # one row of logits at a time: [length - 1, vocab]
            logprobs = torch.log_softmax(head(hidden[row]).float(), dim=-1)
            values, ids = logprobs.topk(top_k, dim=-1)
            all_ids.append(ids)
            all_logprobs.append(values)
        bar.update(batch.numel())
    bar.close()
    sequences = tuple(w.to(torch.int64).clone() for w in windows)
    return TeacherData(sequences, (1,) * len(sequences), tuple(all_ids), tuple(all_logprobs))


def window_data(
    cache: str | os.PathLike | None = None,
    config: CorpusWindowsConfig | None = None,
    progress: bool = True,
    target: torch.nn.Module | None = None,
) -> TeacherData:
    """The teacher-forced corpus windows of ``config`` (default ``CorpusWindowsConfig()``),
    cached in ``<cache>/teacher/windows-<key>.pt`` (the key covers the configuration, the
    target's GGUF sha256, the corpus fingerprint and the torch version).

    ``target``: the float32 target if already loaded (else it is loaded when not cached).
    """
    config = config or CorpusWindowsConfig()
    if not isinstance(config, CorpusWindowsConfig):
        raise TypeError(f"config must be a CorpusWindowsConfig, got {type(config).__name__}")
    root = cache_dir(cache)
    path = _cache_path(root, "windows", asdict(config))
    if path.is_file():
        return TeacherData.from_dict(torch.load(path, weights_only=True))
    tokenizer = load_tokenizer(root)
    target = target if target is not None else load_target(root)
    windows = select_windows(
        lambda text: tokenizer(text, add_special_tokens=False)["input_ids"],
        config.num_windows,
        config.window_tokens,
        torch.Generator().manual_seed(config.seed),
    )
    data = teacher_forced_data(
        target, [w.token_ids for w in windows], config.top_k, config.batch_size, progress
    )
    with atomic_path(path) as temporary:
        torch.save(data.to_dict(), temporary)
    return data
