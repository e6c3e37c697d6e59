"""The project speaks of itself only: no tracked file (name or text) tells how its development was organised."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
# development-history words: a numbered "stop" or "issue", the word for a work sitting, the phrase for the
# current piece of work (each pattern split so this file does not match itself)
WORDS = re.compile("|".join([r"\bstops? ?#?\d+", r"stop[_-]?\d+", r"\bissues? ?#\d+", r"\bissues? \d+",
                             r"\bsess" + r"ions?\b", r"\bthis " + r"task\b"]), re.I)


def tracked_files() -> list[str]:
    res = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        pytest.skip("not a git checkout")
    return res.stdout.splitlines()


def test_no_development_history_words_in_names_or_text():
    found = []
    for name in tracked_files():
        if WORDS.search(name):
            found.append(f"{name}: file name")
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:  # binary (PNG, checkpoints)
            continue
        for i, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            m = WORDS.search(line)
            if m:
                found.append(f"{name}:{i}: {m.group(0)!r}")
    assert not found, "development-history words:\n" + "\n".join(found[:40])


def test_the_scan_catches_what_it_is_for():
    for text in ("st" + "op 31", "St" + "op 32 note", "sweep_st" + "op19.jsonl", "iss" + "ue 12", "iss" + "ue #3",
                 "this sess" + "ion", "in this " + "task"):
        assert WORDS.search(text), text
    for text in ("stops the run at the step", "exit status 3", "an issue with the data", "step 12", "stop-gradient"):
        assert not WORDS.search(text), text


def test_the_library_logs_and_only_the_command_line_prints():
    import ast

    printing = []
    for path in sorted((ROOT / "ffvision").rglob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not printing, "print() outside ffvision/cli.py (log through logging.getLogger('ffvision')): " + \
        ", ".join(printing)
