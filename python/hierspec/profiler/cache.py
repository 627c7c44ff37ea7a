"""Profiles cached per set of models, calibration prompts and measuring conditions.

A cached profile lives at ``<cache>/profiles/profile-<key>.json``; the key is a content key
(:func:`hierspec.io.content_key`) of everything the measurement depends on: the models' names and
identities, the profiler configuration, the calibration prompts, the CPU / CUDA device and the
library versions. A profile is reused only when all of them are the same. The cache knows nothing
of where models or prompts come from: the caller passes the prompts and, if its models have an
identity the module cannot see (e.g. a digest of a training record beside a checkpoint), one dict
of extra identity per model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from hierspec.io import content_key, machine_info, write_json
from hierspec.packing import PackedLinear
from hierspec.planning import Profile, load_profile

from .config import DEFAULT_CONFIG, ProfilerConfig
from .measure import profile

__all__ = ["cached_profile", "model_identity", "profile_cache_path", "write_profile"]


def write_profile(result: Profile, path: str | os.PathLike[str]) -> None:
    """Writes ``result`` as profile JSON (``docs/profile-format.md``), atomically."""
    write_json(path, result.to_dict())


def model_identity(model: object, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What identifies a candidate's weights well enough to reuse a cached profile, with ``extra``
    (the caller's identity of the model) merged in."""
    if isinstance(model, torch.nn.Module):
        config = getattr(model, "config", None)
        identity: dict[str, Any] = {
            "class": type(model).__name__,
            "source": str(getattr(config, "_name_or_path", "") or ""),
            "dtype": str(next(model.parameters()).dtype),
            "parameters": sum(parameter.numel() for parameter in model.parameters()),
            # the kernels its float32 linears run on change its costs (hierspec.packing)
            "packed_linears": sum(isinstance(module, PackedLinear) for module in model.modules()),
        }
    else:
        # Not repr(model): a level's repr may show its state (e.g. its current length).
        identity = {
            "class": type(model).__name__,
            "vocab_size": getattr(model, "vocab_size", None),
            "config": repr(getattr(model, "config", None)),
        }
    identity.update(extra or {})
    return identity


def _prompt_identity(prompt: object) -> object:
    if isinstance(prompt, torch.Tensor):
        return prompt.reshape(-1).tolist()
    return prompt


def _check_identities(
    identities: Sequence[Mapping[str, Any]] | None, num_models: int
) -> list[Mapping[str, Any]]:
    if identities is None:
        return [{}] * num_models
    if len(identities) != num_models:
        raise ValueError(f"identities has {len(identities)} entries, models has {num_models}")
    return list(identities)


def profile_cache_path(
    cache: str | os.PathLike[str],
    models: Sequence[object],
    names: Sequence[str],
    config: ProfilerConfig,
    prompts: Sequence[str | torch.Tensor],
    identities: Sequence[Mapping[str, Any]] | None = None,
) -> Path:
    """``<cache>/profiles/profile-<key>.json`` (module docstring).

    Parameters
    ----------
    cache
        The cache folder.
    models, names
        The candidates and their names (as given to :func:`hierspec.profile`).
    config
        The profiler configuration.
    prompts
        The calibration prompts (strings or token id tensors).
    identities
        One dict of extra identity per model (e.g. digests of files beside a checkpoint), or
        ``None``.
    """
    machine = machine_info()
    extras = _check_identities(identities, len(models))
    parts = {
        "names": list(names),
        "models": [model_identity(model, extra) for model, extra in zip(models, extras)],
        "config": dataclasses.asdict(config),
        "num_prompts": len(prompts),
        "calibration": content_key(*(_prompt_identity(prompt) for prompt in prompts)),
        "cpu": machine["cpu"],
        "cuda": machine["cuda"],
        "versions": machine["versions"],
    }
    return Path(cache) / "profiles" / f"profile-{content_key(parts)}.json"


def cached_profile(
    models: Sequence[object],
    names: Sequence[str],
    prompts: Sequence[str | torch.Tensor],
    cache: str | os.PathLike[str],
    config: ProfilerConfig = DEFAULT_CONFIG,
    tokenizer: object | None = None,
    identities: Sequence[Mapping[str, Any]] | None = None,
    refresh: bool = False,
    progress: bool = True,
) -> tuple[Profile, Path, bool]:
    """The profile of ``models`` under ``config`` on ``prompts``, from the cache or measured once
    and cached.

    Parameters
    ----------
    models, names
        The candidates, cheapest first, the target last, and their names.
    prompts
        Calibration prompts: strings (tokenized by ``tokenizer``, with its chat template when it
        has one) or token id tensors ``[1, P]``.
    cache
        The cache folder (profiles go to ``<cache>/profiles/``).
    config
        How to measure.
    identities
        One dict of extra identity per model for the cache key (see :func:`profile_cache_path`).
    refresh
        Measure again even if a cached profile exists.

    Returns
    -------
    tuple
        ``(profile, path of the JSON, whether it was measured now)``.
    """
    path = profile_cache_path(cache, models, names, config, prompts, identities)
    if path.is_file() and not refresh:
        return load_profile(path), path, False
    result = profile(
        models,
        prompts,
        max_draft_length=config.max_draft_length,
        repeats=config.repeats,
        names=names,
        progress=progress,
        tokenizer=tokenizer,
        temperature=config.sampling.temperature,
        top_k=config.sampling.top_k,
        top_p=config.sampling.top_p,
        context_tokens=config.context_tokens,
        calibration_tokens=config.calibration_tokens,
        large_pass_repeats=config.large_pass_repeats,
        cost_points=config.cost_points,
        threads=config.threads,
        seed=config.seed,
        stop_thresholds=config.stop_thresholds,
    )
    write_profile(result, path)
    return result, path, True
