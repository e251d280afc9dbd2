"""Processes that need the encoder's export or static table at once make it once (text/encoder.py
make_once): the API's workers start together, and each used to spend the same minutes of CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, time
from pathlib import Path
from text.encoder import make_once

target, log = Path(sys.argv[1]), Path(sys.argv[2])

def make():
    with log.open("a") as f:
        f.write("made\\n")
    time.sleep(1.0)  # long enough for the other process to arrive while this one holds the lock
    target.write_text("table")

make_once(target, make)
assert target.read_text() == "table"
"""


def test_processes_asking_at_once_make_the_target_once(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "table.npy", tmp_path / "made.log"
    root = Path(__file__).resolve().parents[2]
    children = [subprocess.Popen([sys.executable, "-c", CHILD, str(target), str(log)], cwd=root) for _ in range(3)]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    assert log.read_text() == "made\n" and target.read_text() == "table"


def test_a_target_already_made_is_not_made_again(tmp_path: Path) -> None:
    from text.encoder import make_once

    target = tmp_path / "table.npy"
    target.write_text("kept")
    make_once(target, lambda: (_ for _ in ()).throw(AssertionError("made again")))
    assert target.read_text() == "kept"
