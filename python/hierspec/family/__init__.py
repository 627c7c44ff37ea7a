"""The bundled model family: SmolLM2-135M-Instruct and the drafts hierspec builds for it.

A demo of the library on one real target, kept apart from it: only the command line and the
benchmarks import this package, and nothing in the library imports it back.

Candidates, cheapest first (every one shares the target's tokenizer and 49152-token vocabulary):

    ngram          :class:`hierspec.ngram.NGramDrafter`: prompt lookup + corpus n-gram statistics
                   (:mod:`hierspec.family.ngram_statistics`).
    distilled      layers of the target distilled into small drafts
                   (:mod:`hierspec.family.distill`), one per entry of
                   :data:`hierspec.family.distill.DEFAULT_LADDER`, run in bfloat16.
    target-bf16    the target in bfloat16 (on CPUs with avx512_bf16 its cost curve is nearly flat).
    target         the converted target in float32 (:mod:`hierspec.family.target`).

Modules: ``cache`` (the cache directory, its layout and marker files), ``target`` (the GGUF
target and its conversion), ``corpus`` (offline text and its splits), ``ngram_statistics``,
``teacher`` (the target's responses as distillation data), ``distill`` (the drafts).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hierspec.ngram import NGramDrafter
from hierspec.packing import pack_for_cpu

from .cache import SOURCE_MARKER, cache_dir
from .distill import DEFAULT_CONFIG, DEFAULT_LADDER, DistillConfig, distill_ladder, load_draft
from .ngram_statistics import load_corpus_statistics
from .target import convert_target, load_target, load_tokenizer, target_path

__all__ = [
    "Family",
    "cache_dir",
    "family_model_names",
    "load_family",
    "load_target",
    "load_tokenizer",
    "prepare_family",
]


def family_model_names() -> tuple[str, ...]:
    """Names of the bundled family's candidates, cheapest first, the target last.

    Examples
    --------
    >>> family_model_names()
    ('ngram', 'draft-6l', 'draft-12l', 'target-bf16', 'target')
    """
    return ("ngram", *(spec.name for spec in DEFAULT_LADDER), "target-bf16", "target")


@dataclass(frozen=True)
class Family:
    """The candidate models, cheapest first, the target last, with one shared tokenizer.

    Parameters
    ----------
    names
        One unique name per model.
    models
        Each a transformers causal LM (eval mode) or a :class:`hierspec.protocol.DraftModel`
        (the n-gram drafter); ``models[-1]`` is the target.
    tokenizer
        The shared tokenizer.
    cache_dir
        The cache directory the models came from.
    """

    names: tuple[str, ...]
    models: tuple[object, ...]
    tokenizer: object
    cache_dir: Path

    def __post_init__(self) -> None:
        if len(self.names) != len(self.models):
            raise ValueError(
                f"names and models must have the same length, got {len(self.names)} names and "
                f"{len(self.models)} models"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names must be unique, got {self.names!r}")
        if not self.models:
            raise ValueError("models must hold at least the target, got ()")

    @property
    def target(self) -> object:
        """The last model."""
        return self.models[-1]

    def select(self, names: tuple[str, ...] | list[str]) -> Family:
        """The sub-family of ``names`` (kept in the family's cheapest-first order).

        Raises
        ------
        ValueError
            A name is unknown, or the target is not among ``names``.
        """
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(f"names must be among {self.names}, got unknown {unknown!r}")
        if self.names[-1] not in names:
            raise ValueError(
                f"names must include the target {self.names[-1]!r}, got {list(names)!r}"
            )
        keep = [i for i, name in enumerate(self.names) if name in names]
        return Family(
            tuple(self.names[i] for i in keep),
            tuple(self.models[i] for i in keep),
            self.tokenizer,
            self.cache_dir,
        )


def prepare_family(
    cache: str | os.PathLike | None = None,
    threads: int | None = None,
    progress: bool = True,
    *,
    config: DistillConfig = DEFAULT_CONFIG,
    force: bool = False,
) -> Path:
    """Builds everything :func:`load_family` needs that is not cached yet.

    Converts the target, counts the corpus n-grams, generates the teacher data and distils the
    ladder of drafts (:data:`hierspec.family.distill.DEFAULT_LADDER`). Each step is skipped when
    its cached result exists (see :mod:`hierspec.family.cache` for the layout and keys).

    Parameters
    ----------
    cache
        Cache directory (:func:`cache_dir`).
    threads
        torch's CPU threads for the duration (restored afterwards); default: unchanged.
    progress
        Show progress bars and print one line per distilled draft.
    config
        The drafts' training configuration; :func:`load_family` loads the drafts of
        :data:`hierspec.family.distill.DEFAULT_CONFIG`, others are cached beside them.
    force
        Distil the drafts again even if cached (the target, n-gram statistics and teacher data
        are still reused).

    Returns
    -------
    Path
        The cache directory.
    """
    root = cache_dir(cache)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        convert_target(root)
        tokenizer = load_tokenizer(root)
        load_corpus_statistics(tokenizer, cache=root, progress=progress)
        distill_ladder(root, DEFAULT_LADDER, config, force=force, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)
    return root


def load_family(
    cache: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    include: tuple[str, ...] | None = None,
    prepare: bool = True,
    progress: bool = True,
    pack: bool = True,
) -> Family:
    """The bundled family, cheapest first: ngram, distilled drafts, target-bf16, target.

    Parameters
    ----------
    cache
        Cache directory (:func:`cache_dir`).
    device
        Where the neural models live.
    include
        Names to keep (the target is always kept); default all.
    prepare
        Build what is missing first (:func:`prepare_family`); with ``False`` a missing piece
        raises ``FileNotFoundError`` naming the command that builds it.
    progress
        Show progress bars while preparing.
    pack
        On the CPU, run the float32 target's linear layers on oneDNN with prepacked weights
        (:func:`hierspec.packing.pack_for_cpu`): same function, a pass over a few tokens then
        costs about what a pass over one does. Every configuration run from the family, the
        target-alone baseline included, uses the same packed target.

    Returns
    -------
    Family
        The models, every one checked to have the tokenizer's vocabulary size.
    """
    root = cache_dir(cache)
    if prepare:
        prepare_family(root, progress=progress)
    elif not (target_path(root) / SOURCE_MARKER).is_file():
        raise FileNotFoundError(
            f"no converted target in {target_path(root)}; run `hierspec distill` (or "
            "scripts/setup.sh) first"
        )
    tokenizer = load_tokenizer(root)
    names: list[str] = []
    models: list[object] = []

    def wanted(name: str) -> bool:
        return include is None or name in include

    if wanted("ngram"):
        statistics = load_corpus_statistics(tokenizer, cache=root, build=prepare, progress=progress)
        names.append("ngram")
        models.append(NGramDrafter(len(tokenizer), statistics))
    for spec in DEFAULT_LADDER:
        if wanted(spec.name):
            names.append(spec.name)
            models.append(load_draft(spec, cache=root, dtype=torch.bfloat16, device=device))
    if wanted("target-bf16"):
        names.append("target-bf16")
        models.append(load_target(root, dtype=torch.bfloat16, device=device))
    names.append("target")
    target = load_target(root, dtype=torch.float32, device=device)
    if pack:
        pack_for_cpu(target)
    models.append(target)
    vocab = len(tokenizer)
    for name, model in zip(names, models):
        model_vocab = getattr(model, "vocab_size", None)
        if model_vocab is None:
            model_vocab = model.config.vocab_size
        if model_vocab != vocab:
            raise ValueError(f"model {name} has vocab_size {model_vocab}, tokenizer has {vocab}")
    return Family(tuple(names), tuple(models), tokenizer, root)
