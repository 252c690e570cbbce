"""Files in and out: competition CSVs read with one-line errors, files written atomically.

Every CSV podium reads (train.csv, the sample submission, a test table, data.test_csv, an
answer key, a run's test_probs.csv/oof.csv) goes through `read_csv`: a file that is not
there, empty, not UTF-8 text (UTF-16, an archive, binary data), not a CSV, without a
needed column, without rows, or (given its id column) with an empty or repeated id is
one line naming the file, the column and the value, and what to do. Ids stay text.
(Lightning's own metrics.csv, read for the learning curves, is no input and is not.)

Nothing a user made is replaced: `write_atomic` picks `name-1.ext` when `name.ext` exists
(unless told to replace, for podium's own bookkeeping files such as metrics.json).
"""

from __future__ import annotations

import codecs
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError

COLUMN_FIX = "set data.id_col / data.target_col to the right names"
FILE_FIX = "fix or re-export it"
SNIFF_BYTES = 1 << 16  # enough to tell a CSV from UTF-16, an archive or binary data
NOT_TEXT = {  # leading bytes -> what the file is instead
    b"\xff\xfe\x00\x00": "UTF-32 text", b"\x00\x00\xfe\xff": "UTF-32 text",
    b"\xff\xfe": "UTF-16 text", b"\xfe\xff": "UTF-16 text",
    b"PK\x03\x04": "a zip archive", b"\x1f\x8b": "a gzip archive", b"BZh": "a bzip2 archive",
    b"\xfd7zXZ": "an xz archive", b"\x28\xb5\x2f\xfd": "a zstd archive",
}


def read_csv(path: Path, columns: Sequence[str], what: str, id_col: str | None = None,
             fix: str = COLUMN_FIX, remedy: str = FILE_FIX) -> pd.DataFrame:
    """A competition CSV as text cells (ids keep their zeros; an absent trailing cell is
    ""), headers stripped; `columns` must be there (`fix`: what to do otherwise) and there
    must be rows; with `id_col`, every row has an id and no id comes twice. `remedy`: what
    to do with a file that cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise PodiumError(f"{path} not found: {what} (set data.root to your competition folder)")
    check_text(path, what, remedy)
    try:
        with warnings.catch_warnings():  # a row longer than the header: an error, not an index
            warnings.simplefilter("error", pd.errors.ParserWarning)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig",
                                index_col=False)
    except UnicodeDecodeError as err:
        byte = err.object[err.start:err.start + 1].hex()
        raise PodiumError(f"{path} is not UTF-8 text (byte 0x{byte}): re-save {what} as a "
                          f"UTF-8 CSV") from err
    except (pd.errors.ParserError, pd.errors.ParserWarning, pd.errors.EmptyDataError) as err:
        reason = str(err).strip().splitlines()[-1]
        if isinstance(err, pd.errors.ParserWarning):
            reason = "a row has more cells than the header"
        raise PodiumError(f"{path} is not a readable CSV ({reason}): {remedy}") from err
    frame.columns = [c.strip() for c in frame.columns]
    check_header(frame, path)
    check_columns(frame, path, columns, fix)
    if frame.empty:
        raise PodiumError(f"{path} has a header but no rows: {what} needs one row per id; "
                          f"{remedy}")
    if id_col is not None:
        check_ids(frame, path, id_col)
    return frame


def check_text(path: Path, what: str, remedy: str = FILE_FIX) -> None:
    """An empty file, UTF-16, an archive or binary data (NUL bytes) named before pandas
    reads it (as mojibake, or with a message about codecs)."""
    with path.open("rb") as file:
        head = file.read(SNIFF_BYTES)
    if not head.removeprefix(codecs.BOM_UTF8).strip():
        raise PodiumError(f"{path} is empty: {what} needs a header line and one row per id; "
                          f"{remedy}")
    kind = next((k for magic, k in NOT_TEXT.items() if head.startswith(magic)), None)
    if kind is None and b"\x00" in head:
        kind = "binary data (NUL bytes; UTF-16 text without a byte-order mark?)"
    if kind is not None:
        action = "unpack it and point podium at the CSV inside" if "archive" in kind else (
            f"re-save {what} as a UTF-8 CSV")
        raise PodiumError(f"{path} is {kind}, not a UTF-8 CSV: {action}")


def check_header(frame: pd.DataFrame, path: Path) -> None:
    """Two header cells that differ only by spaces would both be read as one column."""
    seen = set()
    for column in frame.columns:
        if column in seen:
            raise PodiumError(f"{path}: column '{column}' appears twice in the header; "
                              f"rename or drop one of them")
        seen.add(column)


def shown(values: Sequence[str], n: int = 10) -> str:
    """The first `n` values, comma-separated, `...` when there are more."""
    values = [str(v) for v in values]
    return ", ".join(values[:n]) + (f", ... ({len(values)} in all)" if len(values) > n else "")


def check_columns(frame: pd.DataFrame, path: Path, columns: Sequence[str], fix: str = COLUMN_FIX,
                  kind: str = "column") -> None:
    """Every one of `columns` is in the header; the missing ones are named (`kind`: what
    they are, e.g. "feature column")."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        names = shown([f"'{c}'" for c in missing], 5)
        noun = kind if len(missing) == 1 else f"{kind}s"
        raise PodiumError(f"{path}: {noun} {names} not found (columns: {shown(frame.columns)});"
                          f" {fix}")


def check_filled(frame: pd.DataFrame, path: Path, column: str, id_col: str,
                 fix: str = "fill or drop those rows") -> None:
    """No empty cell in `column` (blank counts as empty): the first is named by its id."""
    empty = frame[frame[column].str.strip() == ""]
    if len(empty):
        raise PodiumError(f"{path}: empty {column} for id {empty[id_col].iloc[0]} "
                          f"({len(empty)} row(s)); {fix}")


def check_ids(frame: pd.DataFrame, path: Path, id_col: str) -> None:
    """Every row has an id, and each id one row: a submission is keyed by them."""
    empty = np.flatnonzero(frame[id_col].str.strip().eq("").to_numpy())
    if len(empty):
        raise PodiumError(f"{path}: empty {id_col} in row {empty[0] + 1} ({len(empty)} "
                          f"row(s)); every row needs an id: fill or drop those rows")
    duplicated = frame[frame[id_col].duplicated()]
    if len(duplicated):
        raise PodiumError(
            f"{path}: id {duplicated[id_col].iloc[0]} appears more than once "
            f"({len(duplicated)} duplicate(s)); ids must be unique"
        )


def check_same_ids(path: Path, ids: Sequence[str], expected: Sequence[str], expected_name: str,
                   fix: str, extra_ok: bool = False) -> None:
    """`path`'s ids hold every id of `expected` (and, unless `extra_ok`, no other): how many
    differ, with one example each way."""
    have, want = set(ids), set(expected)
    missing = [i for i in expected if i not in have]
    extra = [] if extra_ok else [i for i in ids if i not in want]
    parts = []
    if missing:
        parts.append(f"{len(missing)} id(s) of {expected_name} have no row, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} id(s) are not in {expected_name}, e.g. {extra[0]}")
    if parts:
        raise PodiumError(f"{path}: {'; '.join(parts)}: {fix}")


def read_sample_submission(path: Path, id_col: str) -> pd.DataFrame:
    """The sample submission: the test ids (each once), their order and the submission's
    header, which needs a prediction column besides the id."""
    sample = read_csv(path, [id_col], "the sample submission", id_col=id_col)
    if len(sample.columns) < 2:
        raise PodiumError(f"{path} has only the column '{id_col}': a sample submission needs "
                          f"the id column and the prediction column(s) the leaderboard reads")
    return sample


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
