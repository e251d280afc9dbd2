"""Where every benchmark writes its figures: benchmarks/results/<name>.json."""

from __future__ import annotations

import json
from pathlib import Path


def save(name: str, results: object) -> Path:
    target = Path(__file__).parent / "results" / f"{name}.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return target
