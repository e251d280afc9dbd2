"""The import graph follows docs/design.md: every import points down the layers, and the heavy
frameworks stay at the edges. Read from the source (ast), so nothing is imported to check it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: core <- simulation, ingest, text <- features <- models <- escalation <- serving, reports <- pipelines
#: (the command line sits on top: `churn serve` starts the API, `churn report` renders the report)
RANK = {
    "core": 0,
    "simulation": 1,
    "ingest": 1,
    "text": 1,
    "features": 2,
    "models": 3,
    "escalation": 4,
    "serving": 5,
    "reports": 5,
    "pipelines": 6,
}
#: framework -> the only places that may import it
EDGES = {"prefect": ("pipelines/",), "bentoml": ("serving/",), "mlflow": ("models/registry.py", "pipelines/")}


def _imports() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted(ROOT.glob("*/**/*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if relative.split("/")[0] not in RANK:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                out += [(relative, node.lineno, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                out.append((relative, node.lineno, node.module))
    return out


def test_imports_point_down_the_layers():
    imports = _imports()
    assert len(imports) > 500
    wrong = [
        f"{where}:{line} imports {module}"
        for where, line, module in imports
        if (top := module.split(".")[0]) in RANK
        and top != where.split("/")[0]
        and RANK[top] >= RANK[where.split("/")[0]]
    ]
    assert not wrong, wrong


def test_frameworks_stay_at_the_edges():
    wrong = [
        f"{where}:{line} imports {module}"
        for where, line, module in _imports()
        if (allowed := EDGES.get(module.split(".")[0])) and not where.startswith(allowed)
    ]
    assert not wrong, wrong
