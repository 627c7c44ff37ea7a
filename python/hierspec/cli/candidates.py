"""The candidate models of ``hierspec profile`` and ``hierspec generate``, from their names.

Model specifications (``MODELS`` of ``hierspec profile``, ``--models`` of ``hierspec generate``),
cheapest first, the target last:
    a family name      a candidate of the bundled family
                       (:func:`hierspec.family.family_model_names`: ``ngram``, the distilled
                       drafts ``draft-6l``, ..., ``target-bf16``, ``target``); listing only
                       family names keeps the family's order and always includes ``target``;
    a checkpoint dir   a transformers causal LM saved with ``save_pretrained``, optionally
                       ``PATH@bf16`` (or ``@fp16``, ``@fp32``) for its dtype; the tokenizer is the
                       family's when a family name is listed, else the last checkpoint's.

The bundled family (:mod:`hierspec.family`) is imported only when a specification is not a
checkpoint directory (or none is given: the whole family).
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hierspec.io import cache_dir, file_digest
from hierspec.planning import Profile
from hierspec.profiler import ProfilerConfig, cached_profile, profile_cache_path

__all__ = [
    "Candidates",
    "add_common_arguments",
    "add_model_help",
    "calibration_messages",
    "candidates_profile",
    "candidates_profile_path",
    "check_threads",
    "from_family",
    "load_candidates",
]

_DTYPES = {
    "fp32": torch.float32, "float32": torch.float32,
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16,
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Candidates:
    """Candidate models, cheapest first, the target last, with one shared tokenizer.

    Parameters
    ----------
    names
        One unique name per model.
    models
        Transformers causal LMs (eval mode) or :class:`hierspec.DraftModel` objects.
    tokenizer
        The tokenizer of the target (shared by every candidate).
    cache_dir
        Where cached profiles go (``<cache_dir>/profiles``).
    identities
        One dict per model of identity the profile cache cannot see in the model itself
        (:func:`hierspec.profiler.profile_cache_path`): digests of the bundled family's
        checkpoint records; ``{}`` for a user's checkpoint.
    """

    names: tuple[str, ...]
    models: tuple[object, ...]
    tokenizer: Any
    cache_dir: Path
    identities: tuple[Mapping[str, Any], ...]

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must hold at least the target, got ()")
        if not len(self.names) == len(self.models) == len(self.identities):
            raise ValueError(
                f"names, models and identities must have the same length, got {len(self.names)}, "
                f"{len(self.models)} and {len(self.identities)}"
            )
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"names must be unique, got {self.names!r}")

    def select(self, names: Sequence[str], source: str) -> Candidates:
        """The candidates named by ``names``, which must be among them, in their order, and end
        with the target (``source`` names where ``names`` came from in the errors)."""
        unknown = [name for name in names if name not in self.names]
        if unknown:
            raise ValueError(
                f"{source} has models {unknown} that are not among the candidates "
                f"{list(self.names)}"
            )
        if names[-1] != self.names[-1]:
            raise ValueError(
                f"{source} ends with {names[-1]!r}, but the target is {self.names[-1]!r}"
            )
        order = [self.names.index(name) for name in names]
        if order != sorted(order):
            raise ValueError(
                f"{source} lists its models in the order {list(names)}, not the candidates' "
                f"order {list(self.names)}"
            )
        return Candidates(
            tuple(names),
            tuple(self.models[index] for index in order),
            self.tokenizer,
            self.cache_dir,
            tuple(self.identities[index] for index in order),
        )


MAX_THREADS = 1024  # torch takes a C int; far beyond any CPU this runs on


def check_threads(threads: int) -> int:
    """``threads`` if it is in ``[1, MAX_THREADS]`` (``--threads``)."""
    if threads < 1:
        raise ValueError(f"--threads must be >= 1, got {threads}")
    if threads > MAX_THREADS:
        raise ValueError(f"--threads must be <= {MAX_THREADS}, got {threads}")
    return threads


def add_model_help(what: str) -> str:
    """Help text of a models argument, naming the family's candidates."""
    from hierspec.family import family_model_names

    return (
        "candidates, cheapest first, the target last: family names "
        f"({', '.join(family_model_names())}) or checkpoint directories (PATH[@bf16]); {what}"
    )


def _split_spec(spec: str) -> tuple[Path, torch.dtype, str]:
    """``PATH`` or ``PATH@DTYPE`` -> (path, dtype, the ``@DTYPE`` suffix or "")."""
    if "@" in spec:
        head, tail = spec.rsplit("@", 1)
        if tail in _DTYPES:
            return Path(head).expanduser(), _DTYPES[tail], f"@{tail}"
    return Path(spec).expanduser(), torch.float32, ""


def _is_checkpoint(spec: str) -> bool:
    return (_split_spec(spec)[0] / "config.json").is_file()


def _load_checkpoint(spec: str, known: Sequence[str]) -> tuple[str, torch.nn.Module]:
    """``PATH`` or ``PATH@DTYPE`` -> (name, model in eval mode, float32 linears packed)."""
    path, dtype, suffix = _split_spec(spec)
    if not (path / "config.json").is_file():
        raise ValueError(
            f"model {spec!r} is neither a family model {list(known)} nor a "
            "transformers checkpoint directory (no config.json)"
        )
    import transformers

    from hierspec.packing import pack_for_cpu

    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=dtype).eval()
    pack_for_cpu(model)  # float32 on the CPU: oneDNN, flat in the tokens per pass (no-op for bf16)
    return path.name + suffix, model


def _family_identity(model: object) -> dict[str, Any]:
    """Digests of the family's record files beside a family checkpoint (a retrained draft or a
    reconverted target gets a new cached profile)."""
    from hierspec.family.cache import DRAFT_MARKER, SOURCE_MARKER

    source = str(getattr(getattr(model, "config", None), "_name_or_path", "") or "")
    identity = {}
    for marker in (DRAFT_MARKER, SOURCE_MARKER):
        path = Path(source) / marker if source else None
        if path is not None and path.is_file():
            identity[marker] = file_digest(path)[:16]
    return identity


def load_candidates(
    specs: Sequence[str], cache: str | None = None, progress: bool = True
) -> Candidates:
    """The candidates named by ``specs`` (module docstring).

    No specs: the whole bundled family, prepared first if needed (converting the target and
    distilling the drafts, with progress bars; nothing is downloaded).
    """
    if specs and all(_is_checkpoint(spec) for spec in specs):
        return _from_checkpoints(specs, cache)
    from hierspec.family import family_model_names, load_family

    known = family_model_names()
    family_specs = tuple(spec for spec in specs if spec in known)
    if len(family_specs) == len(specs):  # the family (or part of it) in the family's order
        return from_family(load_family(cache, include=family_specs or None, progress=progress))
    family = load_family(cache, include=family_specs, progress=progress) if family_specs else None
    names: list[str] = []
    models: list[object] = []
    identities: list[Mapping[str, Any]] = []
    for spec in specs:
        if family is not None and spec in family.names:
            name, model = spec, family.models[family.names.index(spec)]
            identity = _family_identity(model)
        else:
            (name, model), identity = _load_checkpoint(spec, known), {}
        while name in names:
            name += "'"
        names.append(name)
        models.append(model)
        identities.append(identity)
    tokenizer = family.tokenizer if family is not None else _checkpoint_tokenizer(specs[-1])
    return Candidates(tuple(names), tuple(models), tokenizer, cache_dir(cache), tuple(identities))


def from_family(family: Any) -> Candidates:
    """The candidates of a :class:`hierspec.family.Family` (with their records' digests)."""
    return Candidates(
        family.names,
        family.models,
        family.tokenizer,
        family.cache_dir,
        tuple(_family_identity(model) for model in family.models),
    )


def calibration_messages(num_prompts: int) -> list[str]:
    """The first ``num_prompts`` calibration prompts of the bundled family's corpus (its
    validation split: neither the drafts' training text nor the benchmark's held-out prompts)."""
    from hierspec.family import corpus

    if num_prompts < 1:
        raise ValueError(
            f"calibration prompts (--num-prompts / --profile-prompts) must be >= 1, got "
            f"{num_prompts}"
        )
    return [prompt.message for prompt in corpus.calibration_prompts(num_prompts)]


def candidates_profile(
    candidates: Candidates,
    config: ProfilerConfig,
    num_prompts: int,
    refresh: bool = False,
    progress: bool = True,
) -> tuple[Profile, Path, bool]:
    """The cached profile of ``candidates`` under ``config`` on ``num_prompts`` calibration
    prompts (:func:`calibration_messages`): the one ``hierspec generate`` plans from and the
    benchmarks compare with (:func:`hierspec.profiler.cached_profile`)."""
    return cached_profile(
        candidates.models,
        candidates.names,
        calibration_messages(num_prompts),
        candidates.cache_dir,
        config,
        tokenizer=candidates.tokenizer,
        identities=candidates.identities,
        refresh=refresh,
        progress=progress,
    )


def candidates_profile_path(
    candidates: Candidates, config: ProfilerConfig, num_prompts: int
) -> Path:
    """Where :func:`candidates_profile` caches (the file may not exist yet)."""
    return profile_cache_path(
        candidates.cache_dir,
        candidates.models,
        candidates.names,
        config,
        calibration_messages(num_prompts),
        candidates.identities,
    )


def _from_checkpoints(specs: Sequence[str], cache: str | None) -> Candidates:
    names: list[str] = []
    models: list[object] = []
    for spec in specs:
        name, model = _load_checkpoint(spec, ())
        while name in names:
            name += "'"
        names.append(name)
        models.append(model)
    return Candidates(
        tuple(names),
        tuple(models),
        _checkpoint_tokenizer(specs[-1]),
        cache_dir(cache),
        tuple({} for _ in models),
    )


def _checkpoint_tokenizer(spec: str) -> Any:
    import transformers

    path = _split_spec(spec)[0]
    try:
        return transformers.AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"no tokenizer found with the target checkpoint {str(path)!r}: {error}"
        ) from None


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--cache`` and ``--no-progress`` (every command that loads models)."""
    parser.add_argument(
        "--cache", help="cache directory (default $HIERSPEC_CACHE or ~/.cache/hierspec)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
