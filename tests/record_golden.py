"""Records tests/data/golden.json: planner outputs, greedy outputs and seeded samples.

Run once, before a refactoring that must not change behaviour (``python tests/record_golden.py``);
``tests/test_golden.py`` then checks that the current code reproduces every recorded value.
The instances are defined in ``tests/golden_cases.py``, shared by both.
"""

from __future__ import annotations

import json
from pathlib import Path

from golden_cases import compute_all

if __name__ == "__main__":
    path = Path(__file__).parent / "data" / "golden.json"
    path.write_text(json.dumps(compute_all(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {path}")
