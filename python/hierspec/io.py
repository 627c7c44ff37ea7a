"""Files and records: atomic writes, JSON, content keys and the machine a measurement ran on.

One implementation of each, used by the profiler, the CLI, the bundled family and the benchmarks:
    atomic writes   a temporary file in the destination's folder, renamed into place, so an
                    interrupted run never leaves a half-written file that looks complete;
    JSON            strict JSON (NaN and infinities become ``null``), one-space indent;
    content keys    a short sha256 of JSON-encoded parts: cache file names that change exactly
                    when what went into the cached object changes;
    machine info    OS, CPU, cores, torch threads, load average and library versions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write_text",
    "cache_dir",
    "content_key",
    "file_digest",
    "json_safe",
    "machine_info",
    "versions",
    "write_json",
]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """A temporary path beside ``path``; renamed onto ``path`` when the block ends normally.

    Parameters
    ----------
    path
        The destination file. Its folder is created.
    suffix
        Suffix of the temporary name (some writers, e.g. ``numpy.savez``, append one unless the
        name already ends with it).

    Yields
    ------
    Path
        Where the block writes. It is removed if the block raises.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(folder / "a.txt") as temporary:
    ...     _ = temporary.write_text("done")
    >>> (folder / "a.txt").read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}-", suffix=suffix, dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; caches and results are ordinary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A staging folder beside ``path``; it replaces ``path`` when the block ends normally.

    Checkpoints are folders of several files: writing them into a staging folder and renaming it
    means a folder at ``path`` is always complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
    try:
        yield staging
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def cache_dir(cache: str | os.PathLike[str] | None = None) -> Path:
    """hierspec's cache directory (profiles, the bundled family): ``cache`` when given, else
    ``$HIERSPEC_CACHE``, else ``~/.cache/hierspec``. It may not exist yet."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("HIERSPEC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hierspec"


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by ``None`` (strict JSON has
    no NaN) and every NumPy scalar by its Python value, recursively through dicts, lists and
    tuples.

    Examples
    --------
    >>> json_safe({"a": float("nan"), "b": (1.0, float("inf")), "c": np.bool_(True)})
    {'a': None, 'b': [1.0, None], 'c': True}
    """
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Writes :func:`json_safe` ``value`` to ``path``, atomically, with a one-space indent."""
    atomic_write_text(path, json.dumps(json_safe(value), indent=1) + "\n")


def content_key(*parts: object, length: int = 16, sort_keys: bool = True) -> str:
    """The first ``length`` hex digits of the sha256 of ``json.dumps(parts)``.

    Objects JSON cannot encode are encoded by ``str``. Cache names derived from it change exactly
    when one of ``parts`` does.

    Examples
    --------
    >>> content_key("draft", {"layers": 6}, length=12)
    '007e2d2ba742'
    """
    text = json.dumps(parts, sort_keys=sort_keys, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """The sha256 (hex) of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Versions of hierspec, Python, torch, numpy and transformers (``None`` if missing)."""
    import numpy
    import torch

    from hierspec import __version__

    found: dict[str, str | None] = {
        "hierspec": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import transformers

        found["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency
        found["transformers"] = None
    return found


def machine_info() -> dict[str, Any]:
    """The machine a measurement ran on: OS, CPU model and flags of interest, cores, torch's
    threads, the load average (1, 5, 15 min), the CUDA device if any and library versions."""
    import torch

    cpu_model = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name") and ":" in line:
                    cpu_model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and ":" in line and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    load_average: Callable[[], tuple[float, float, float]] | None = getattr(os, "getloadavg", None)
    return {
        "platform": platform.platform(),
        "cpu": cpu_model,
        "cpu_flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "logical_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": list(load_average()) if load_average is not None else None,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": versions(),
    }
