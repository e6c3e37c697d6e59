"""JSON-line records of the benchmark scripts: printed, and appended to a file when one is named."""

from __future__ import annotations

import json
from pathlib import Path


def emit(record: dict, out: str | Path | None) -> None:
    """Print one record as a JSON line and append it to `out` (its folder made) when given."""
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")
