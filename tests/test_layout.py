"""The package's layout: every module imports on its own, and the library never imports the
bundled family (``hierspec.family``), which only the command line and the benchmarks use."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "python" / "hierspec"
# Runs the command line when imported; `python -m hierspec` is tested with the CLI.
NOT_IMPORTABLE = {"hierspec.__main__"}
# Only these may import the bundled family.
FAMILY_USERS = ("hierspec.family", "hierspec.cli")


def _module_name(path: Path) -> str:
    parts = ("hierspec", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(path) for path in PACKAGE.rglob("*.py"))
LIBRARY = [
    name
    for name in MODULES
    if not any(name == user or name.startswith(f"{user}.") for user in FAMILY_USERS)
]


def _python(code: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TRITON_INTERPRET": "1"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environment, timeout=300
    )


# Each module is imported first in a process of its own: a child forked from an interpreter that
# has imported only third-party libraries (torch, numpy, transformers: imported once, to keep the
# test fast), so every hierspec module starts from an empty hierspec state, as with
# `python -c "import hierspec.X"`.
_IMPORT_EACH = """
import importlib, json, os, sys, traceback
import numpy, torch
try:
    import transformers, transformers.modeling_utils
except ImportError:
    pass
assert not any(name == "hierspec" or name.startswith("hierspec.") for name in sys.modules)
failures = {}
for name in json.loads(sys.argv[1] if len(sys.argv) > 1 else MODULES):
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            message = b""
        except BaseException:
            message = traceback.format_exc().encode()
        os.write(write, message or b"ok")
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        output = pipe.read().decode()
    os.waitpid(child, 0)
    if output != "ok":
        failures[name] = output
print(json.dumps(failures))
"""


def test_every_module_imports_first_in_its_own_process():
    assert {"hierspec.family", "hierspec.family.distill", "hierspec.ngram"} <= set(MODULES)
    modules = [name for name in MODULES if name not in NOT_IMPORTABLE]
    result = _python(f"MODULES = {json.dumps(json.dumps(modules))}\n{_IMPORT_EACH}")
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, "\n".join(f"{name}:\n{error}" for name, error in failures.items())


def test_importing_the_library_loads_no_family_module():
    modules = [name for name in LIBRARY if name not in NOT_IMPORTABLE]
    assert "hierspec" in modules and "hierspec.ngram" in modules
    code = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('hierspec.family'))))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def _family_references(source: str, module: str, is_package: bool = False) -> list[str]:
    """Imports of the family in ``source``, the text of ``module`` (absolute or relative, at any
    depth, also inside functions), and string constants naming it
    (``importlib.import_module("hierspec.family")``), as ``"line: name"``."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            targets = [node.value] if node.value.startswith("hierspec.family") else []
        for target in targets:
            if target == "hierspec.family" or target.startswith("hierspec.family."):
                found.append(f"{node.lineno}: {target}")
    return found


def test_no_library_source_refers_to_the_family():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        if module in LIBRARY:
            source = path.read_text(encoding="utf-8")
            references = _family_references(source, module, path.name == "__init__.py")
            found += [f"{path.relative_to(PACKAGE)}:{reference}" for reference in references]
    assert found == []


def test_the_reference_check_sees_relative_and_absolute_imports():
    checks = {
        "from hierspec.family import load_family": True,
        "from . import family": True,
        "from .family.corpus import documents": True,
        "def f():\n    import hierspec.family.distill": True,
        "import importlib\nimportlib.import_module('hierspec.family')": True,
        "from . import ngram\nfrom .io import content_key": False,
        '"""Mentions hierspec.family in prose."""': False,
    }
    for source, expected in checks.items():
        assert bool(_family_references(source, "hierspec.probe")) is expected, source
    assert _family_references("from ..family import cache_dir", "hierspec.engine.cache")
    assert _family_references("from .. import family", "hierspec.profiler.cache")
    assert _family_references("from . import family", "hierspec.profiler", is_package=True) == []
    assert _family_references("from ..family import x", "hierspec.profiler.cache")
