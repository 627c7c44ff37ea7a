"""``hierspec generate`` streams the text as it is committed (transformers' TextStreamer), the
report after it; ``--no-stream`` prints the text with the report."""

from __future__ import annotations

import json

import pytest
from tiny_checkpoints import write_checkpoints

from hierspec.cli import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    checkpoints = write_checkpoints(root, ["m0", "m1"])
    profile = root / "profile.json"
    profile.write_text(
        json.dumps(
            {
                "models": [
                    {"name": "m0", "costs_ms": [1.0] * 4},
                    {"name": "m1", "costs_ms": [10.0] * 4},
                ],
                "acceptance": [[1, 0.8], [0, 1]],
            }
        )
    )
    return checkpoints, profile


@pytest.mark.parametrize("stream", [True, False])
def test_generate_streams_the_text_before_the_report(setup, tmp_path, capsys, stream):
    checkpoints, profile = setup
    report_path = tmp_path / "report.json"
    arguments = [
        "generate",
        "--models",
        *checkpoints,
        "--profile",
        str(profile),
        "--prompt",
        "w1 w2 w3",
        "--max-new-tokens",
        "10",
        "--max-draft-length",
        "3",
        "--raw",
        "--ignore-eos",
        "--no-baseline",
        "--no-progress",
        "--json",
        str(report_path),
    ]
    assert main(arguments + ([] if stream else ["--no-stream"])) == 0
    printed = capsys.readouterr().out
    text = json.loads(report_path.read_text())["text"]
    assert text and printed.count(text) == 1  # once, streamed or not
    assert printed.startswith(text + "\n")  # the text first, then the report
    assert printed.index("best plan:") > len(text)
