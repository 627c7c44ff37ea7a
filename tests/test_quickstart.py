"""docs/quickstart.md runs as written: its Python blocks (in one namespace, in order) and its
command lines (through ``hierspec.cli.main``, what the ``hierspec`` script calls), on tiny
checkpoints saved with ``save_pretrained`` that replace the ``path/to/...`` placeholders. The one
block not run is the install line (it would build and install the package)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import torch
from tiny_checkpoints import write_checkpoints

from hierspec.cli import main

QUICKSTART = Path(__file__).resolve().parents[1] / "docs" / "quickstart.md"
INSTALL = "pip install ."
NAMES = ["small", "medium", "target"]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block, in order."""
    return [
        (match.group(1), match.group(2))
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S)
    ]


def test_quickstart_runs(tmp_path, monkeypatch, capsys):
    checkpoints = write_checkpoints(tmp_path, NAMES)
    (tmp_path / "prompts.txt").write_text("w1 w2 w3 w4 w5\nw7 w8 w9 w1 w2 w3\nw4 w4 w5 w6\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HIERSPEC_CACHE", str(tmp_path / "cache"))
    text = QUICKSTART.read_text()
    for name, path in zip(NAMES, checkpoints):
        text = text.replace(f"path/to/{name}", path)
    blocks = code_blocks(text)
    assert not any("path/to/" in code for _, code in blocks)
    assert [language for language, _ in blocks] == ["bash", "python", "python", "bash", "bash"]
    assert blocks[0][1].strip() == INSTALL  # not run: it would build and install the package
    namespace: dict = {}
    threads = torch.get_num_threads()
    try:
        for language, code in blocks[1:]:
            if language == "python":
                exec(compile(code, str(QUICKSTART), "exec"), namespace)
                continue
            for line in code.strip().splitlines():
                arguments = shlex.split(line)
                assert arguments[0] == "hierspec", line
                assert main(arguments[1:]) == 0, line
    finally:
        torch.set_num_threads(threads)
    printed = capsys.readouterr().out
    assert "best plan:" in printed and "tokens/s" in printed
    assert "greedy output identical to the target alone: yes" in printed
    assert (tmp_path / "profile.json").exists() and (tmp_path / "vllm.json").exists()
