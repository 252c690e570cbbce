"""Files in and out: competition CSVs read with one-line errors, files written atomically.

Nothing a user made is replaced: `write_atomic` picks `name-1.ext` when `name.ext` exists
(unless told to replace, for podium's own bookkeeping files such as metrics.json).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from podium.errors import PodiumError


def read_csv(path: Path, columns: Sequence[str], what: str) -> pd.DataFrame:
    """Read a competition CSV with string ids; fail with one line if a column is missing."""
    if not path.is_file():
        raise PodiumError(f"{path} not found: {what} (set data.root to your competition folder)")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        reason = str(err).strip().splitlines()[-1]
        raise PodiumError(f"{path} is not a readable CSV ({reason}): fix or re-export it") from err
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise PodiumError(
            f"{path}: column '{missing[0]}' not found (columns: {', '.join(frame.columns)}); "
            f"set data.id_col / data.target_col to the right names"
        )
    return frame


def free_path(path: Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`, ... if it exists: user files are never replaced."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate

def write_atomic(path: Path, text: str, replace: bool = False) -> Path:
    """Write via a temporary file + rename, so a crash leaves the old file or none."""
    path = Path(path)
    if not replace:
        path = free_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path

def write_json(path: Path, data: dict) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", replace=True)
