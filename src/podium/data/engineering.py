"""Columns made from columns, before their kinds are decided (podium.data.columns): the same
for the network and the trees, for training and for `make predict` on a new folder.

In order (`TabularDataModule.read_inputs`):
1. `data.features_fn=module:function` (or `path/to/file.py:function`), a competitor's own
   columns: a function of the DataFrame, importable from the working directory, called once
   on the training table (every column but the target) and once on the test table; it
   returns a DataFrame of the same rows (add, change or drop columns, never rows). Its cells
   become text cells, as read from a CSV.
2. Date-time columns (every cell an ISO date, `2013-01-05` or `2013-01-05 14:30:00`, parsed by
   pandas) become numbers: year, month, day, day of week (Monday 0), hour (when a training
   cell has a time) and days since 1970-01-01 (`Date_year`, ..., `Date_days`).
3. Text-like columns (podium.data.columns' kind: text distinct in most rows) become
   `data.text_components` SVD components of their tf-idf n-grams (podium.data.text) and their
   length in characters (`Name_svd1`, ..., `Name_length`); an empty cell is missing in each.
4. Constant columns, and categorical ones with at most one level seen
   `data.rare_min_count` times (a 0/1 flag almost always 0), are dropped (`one_level`).
The date parts and the text transform are decided on every training row and, for the text
(no label is read), fitted on the training and test rows' text; both are kept as plain
numbers and strings in the DataSpec's `features["engineering"]` (`engineer` applies them to
any frame).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.data.columns import column_kind, fit_levels, is_numeric, missing_mask
from podium.data.text import ANALYZERS, describe, fit_text, text_components
from podium.errors import PodiumError

DATE_PARTS = {"year": "year", "month": "month", "day": "day", "dayofweek": "day of week",
              "hour": "hour", "days": "days since 1970-01-01"}
ISO_DATE = (r"\s*\d{4}-\d{2}-\d{2}"                                   # a date, then maybe
            r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?(?:Z|[+-]\d{2}:?\d{2})?\s*$")  # a time
EPOCH = pd.Timestamp("1970-01-01")


# -- the competitor's own columns ---------------------------------------------------------------
def load_features_fn(name: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """`module:function` (importable from the working directory) or `file.py:function`."""
    module_name, sep, function = name.rpartition(":")
    if not sep or not module_name or not function:
        raise PodiumError(f"data.features_fn={name} is not module:function: give e.g. "
                          f"data.features_fn=my_features:add_features (my_features.py in "
                          f"{os.getcwd()})")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name).expanduser().resolve()
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or not path.is_file():
                raise ImportError(f"{path} is not a file")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            module = importlib.import_module(module_name)
    except ImportError as err:
        raise PodiumError(f"data.features_fn={name}: cannot import {module_name} ({err}); "
                          f"give module:function importable from {os.getcwd()}, or "
                          f"path/to/file.py:function") from err
    fn = getattr(module, function, None)
    if not callable(fn):
        raise PodiumError(f"data.features_fn={name}: {module_name} has no function "
                          f"{function}")
    return fn


def apply_features_fn(frame: pd.DataFrame, name: str, what: str,
                      id_col: str | None = None) -> pd.DataFrame:
    """`name`'s function applied to `frame` (`what`: the table it comes from), its result
    checked (a DataFrame of the same rows in the same order) and read as text cells."""
    out = load_features_fn(name)(frame.copy())
    if not isinstance(out, pd.DataFrame) or len(out) != len(frame):
        got = f"{len(out)} rows" if isinstance(out, pd.DataFrame) else type(out).__name__
        raise PodiumError(f"data.features_fn={name} returned {got} for {what} ({len(frame)} "
                          f"rows): return a DataFrame of the same {len(frame)} rows in their "
                          f"order (add, change or drop columns, never rows)")
    out = out.reset_index(drop=True)
    out.columns = [str(c) for c in out.columns]
    if id_col in out.columns and id_col in frame.columns and not np.array_equal(
            text_cells(out[id_col]).to_numpy(), frame[id_col].to_numpy(dtype=object)):
        raise PodiumError(f"data.features_fn={name} changed the order or the values of "
                          f"{id_col} in {what}: return the rows in the order given")
    return pd.DataFrame({c: text_cells(out[c]) for c in out.columns})


def text_cells(values: pd.Series) -> pd.Series:
    """A column as read_csv reads one: text, "" where nothing is (numbers as Python writes
    them, whole ones without a decimal point)."""
    if pd.api.types.is_string_dtype(values) and not values.isna().any():
        return values.reset_index(drop=True)
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return pd.Series(number_cells(values.to_numpy(dtype=np.float64, na_value=np.nan)))
    return pd.Series(values.astype(object).where(values.notna(), "").map(str).to_numpy())


def number_cells(numbers: np.ndarray) -> np.ndarray:
    """float values as text cells (shortest round-trip form; whole columns as integers;
    NaN: "")."""
    cells = np.full(len(numbers), "", dtype=object)
    present = ~np.isnan(numbers)
    values = numbers[present]
    whole = np.all(values == np.round(values)) and np.all(np.abs(values) < 2**53)
    cells[present] = (values.astype(np.int64) if whole else values).astype(str)
    return cells


# -- dates ----------------------------------------------------------------------------------------
def parse_dates(values: pd.Series) -> pd.Series:
    """Naive UTC date-times (cells with an offset moved to UTC); NaT where a cell is missing
    or not an ISO date."""
    cells = values.where(values.str.match(ISO_DATE), "")
    parsed = pd.to_datetime(cells, format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_convert(None)


def is_date(values: pd.Series) -> bool:
    """Every present cell an ISO date (a year, month and day, maybe a time) pandas parses."""
    present = values[~missing_mask(values)]
    if not len(present) or is_numeric(values) or not present.str.match(ISO_DATE).all():
        return False
    return bool(parse_dates(present).notna().all())


def date_parts(values: pd.Series, parts: Sequence[str]) -> dict[str, np.ndarray]:
    """float64 parts of each cell (NaN where it is missing or no date)."""
    parsed = parse_dates(values.reset_index(drop=True))
    out = {}
    for part in parts:
        if part == "days":
            numbers = (parsed - EPOCH).dt.total_seconds() / 86400.0
        else:
            numbers = getattr(parsed.dt, part)
        out[part] = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    return out


def fit_date(values: pd.Series) -> list[str]:
    """The parts a date column gives: the hour only when a cell holds a time of day."""
    parsed = parse_dates(values).dropna()
    timed = bool(((parsed - parsed.dt.normalize()) != pd.Timedelta(0)).any())
    return [p for p in DATE_PARTS if p != "hour" or timed]


# -- fitting and applying -------------------------------------------------------------------------
def check_settings(text_analyzer: str, text_ngrams: Sequence[int]) -> tuple[int, int]:
    if text_analyzer not in ANALYZERS:
        raise PodiumError(f"data.text_analyzer={text_analyzer} is unknown: use "
                          f"{' or '.join(ANALYZERS)}")
    ngrams = tuple(int(n) for n in text_ngrams)
    if len(ngrams) != 2 or not 1 <= ngrams[0] <= ngrams[1]:
        raise PodiumError(f"data.text_ngrams={list(text_ngrams)}: give [low, high] with "
                          f"1 <= low <= high, e.g. [1,2]")
    return ngrams


def fit_engineering(train: pd.DataFrame, test: pd.DataFrame,
                    categorical: Sequence[str] | None = None, dates: bool = True,
                    text_components: int = 8, text_analyzer: str = "word",
                    text_ngrams: Sequence[int] = (1, 2), text_max_terms: int = 2000) -> dict:
    """Which columns are dates (and their parts) and each text-like column's tf-idf + SVD,
    fitted on the training rows (kinds, parts) and the training and test rows' text.
    Columns in `categorical` (data.categorical_cols) are left as they are."""
    ngrams = check_settings(text_analyzer, text_ngrams)
    engineering: dict = {"dates": {}, "text": {}, "unfitted_text": []}
    for column in train.columns:
        values = train[column]
        if (categorical and column in categorical) or missing_mask(values).all():
            continue
        if dates and is_date(values):
            engineering["dates"][column] = fit_date(values)
        elif text_components > 0 and column_kind(values) == "text":
            cells = pd.concat([values, test[column]], ignore_index=True)
            texts = cells[~missing_mask(cells)].str.strip()
            stats = fit_text(texts, text_components, text_analyzer, ngrams, text_max_terms)
            if stats is None:
                engineering["unfitted_text"].append(column)
            else:
                engineering["text"][column] = stats
    made = [name for column in (*engineering["dates"], *engineering["text"])
            for name in made_columns(column, engineering)]
    taken = sorted(set(made) & set(train.columns))
    if taken:
        raise PodiumError(f"column {taken[0]} is in the table and would also be made from a "
                          f"date or text column: rename it (with data.features_fn) or leave "
                          f"it out with data.drop_cols=[{taken[0]}]")
    return engineering


def made_columns(column: str, engineering: dict) -> list[str]:
    """The names `engineer` gives `column`'s numbers (itself when nothing is made)."""
    if column in engineering.get("dates", {}):
        return [f"{column}_{part}" for part in engineering["dates"][column]]
    if column in engineering.get("text", {}):
        k = len(engineering["text"][column]["components"])
        return [f"{column}_svd{i + 1}" for i in range(k)] + [f"{column}_length"]
    return [column]


def engineer(frame: pd.DataFrame, engineering: dict) -> pd.DataFrame:
    """`frame` with each date and text column replaced, in place, by its numbers (as text
    cells, as every column is read); the other columns as they are."""
    columns: dict[str, pd.Series | np.ndarray] = {}
    for column in frame.columns:
        values = frame[column].reset_index(drop=True)
        if column in engineering.get("dates", {}):
            parts = date_parts(values, engineering["dates"][column])
            numbers = list(parts.values())
        elif column in engineering.get("text", {}):
            missing = missing_mask(values)
            texts = values.where(~missing, "").str.strip()
            block = text_components(texts, engineering["text"][column])
            block[missing] = np.nan
            length = texts.str.len().to_numpy(dtype=np.float64)
            length[missing] = np.nan
            numbers = [*block.T, length]
        else:
            columns[column] = values
            continue
        for name, number in zip(made_columns(column, engineering), numbers, strict=True):
            columns[name] = number_cells(number)
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)))


def one_level(frame: pd.DataFrame, kinds: dict[str, list[str]], rare_min_count: int
              ) -> list[str]:
    """Constant columns, and categorical ones with at most one level seen `rare_min_count`
    times (the rarer ones pooled: a flag almost always 0 is a constant to the model)."""
    pooled = [c for c in kinds["categorical"]
              if len(fit_levels(frame[c], rare_min_count)) <= 1]
    return [c for c in frame.columns if c in kinds["constant"] or c in pooled]


def engineering_lines(engineering: dict, dropped: Sequence[str], rare_min_count: int,
                      hook: str | None = None, hook_columns: tuple = ()) -> list[str]:
    """One line per engineered column family, for the start of a run."""
    lines = []
    if hook:
        added, removed = hook_columns
        lines.append(f"  data.features_fn={hook}: "
                     + (f"new columns ({len(added)}): {named(added)}" if added
                        else "no new column")
                     + (f"; removed ({len(removed)}): {named(removed)}" if removed else ""))
    for column, parts in engineering["dates"].items():
        lines.append(f"  date column {column} -> {', '.join(DATE_PARTS[p] for p in parts)}: "
                     f"{named(made_columns(column, engineering))}")
    for column, stats in engineering["text"].items():
        k = len(stats["components"])
        svd = f"{column}_svd1" + (f" ... {column}_svd{k}" if k > 1 else "")
        lines.append(f"  text column {column} -> {describe(stats)} and its length: {svd}, "
                     f"{column}_length")
    if engineering.get("unfitted_text"):
        lines.append(f"  text column(s) {named(engineering['unfitted_text'])}: no word in two "
                     f"rows, nothing to learn (dropped as text-like)")
    if dropped:
        lines.append(f"  constant or one level, dropped ({len(dropped)}): {named(dropped)} "
                     f"(one value, or one level once levels seen fewer than {rare_min_count} "
                     f"times are pooled)")
    if lines:
        lines.insert(0, "columns made and dropped (every training row; tf-idf on the "
                        "training and test text, no label read):")
    return lines


def named(columns: Sequence[str]) -> str:
    columns = list(columns)
    return ", ".join(columns[:8]) + (f", ... ({len(columns)} in all)" if len(columns) > 8
                                     else "")
