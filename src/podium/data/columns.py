"""A table's feature columns: what kind each is, and its encoder fitted as plain numbers.

Kinds (`column_kinds`, decided on every training row, never on the target):
- numeric: every non-missing cell is a number (with more than two distinct values);
- categorical: anything else worth learning from, and numbers with at most two values
  (flags); levels seen fewer than `rare_min_count` times are grouped into one "rare" level
  (index 0, where unseen test levels go too);
- text-like: text whose distinct values fill more than half the rows (names, ticket or
  cabin numbers): one-hot encoding them lets a network memorise the training rows, so they
  are dropped, and the run says so (podium.data.engineering has already made them into
  tf-idf SVD components, unless data.text_components=0 or no word is in two rows);
- id-like: a value unique to every row (a running number, a code without spaces): dropped;
- constant: one value everywhere: dropped (podium.data.engineering drops these, and
  categorical columns left with one level once rare levels are pooled, from the frames).
A feature column that is empty in every row is an error (drop it with `data.drop_cols`).

The encoders (`fit_encoders`) are fitted on the training split only and stored as plain
numbers and strings in the DataSpec's `features` (a checkpoint read with weights_only=True
rebuilds them): per numeric column its median (missing cells; a numeric column with missing
cells also gets a 0/1 indicator column) and either its mean/std (`standard`) or scikit-learn's
QuantileTransformer quantiles (`quantile`, to a normal distribution), and the bins of the
piecewise-linear numeric embeddings (rtdl_num_embeddings.compute_bins on the transformed
training values); per categorical column its kept levels. `encode` turns a frame into one
float32 matrix: the transformed numbers, then the category indices (categorical columns,
then the missing indicators), which the tabular networks embed or one-hot encode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from podium.errors import PodiumError

MISSING = frozenset({"", "na", "nan", "null", "none", "?"})  # cells read as "no number"
TEXT_DISTINCT = 0.5  # text with distinct values in more than this share of rows is free text
QUANTILE_BOUND = 1e-7  # scikit-learn's BOUNDS_THRESHOLD: the normal output's clipping
KINDS = ("numeric", "categorical", "text", "id", "constant")


def missing_mask(values: pd.Series) -> np.ndarray:
    """Cells that hold no value: empty, or a missing-value token (NA, nan, null, ?)."""
    return np.fromiter((str(v).strip().lower() in MISSING for v in values.to_numpy(object)),
                       bool, len(values))  # a loop: 2.4x pandas' .str chain on 40k rows


def as_numbers(values: pd.Series) -> np.ndarray:
    """float64 values; missing cells (and anything that is not a number) are NaN."""
    numbers = pd.to_numeric(values.str.strip(), errors="coerce").to_numpy(dtype=float, copy=True)
    numbers[missing_mask(values)] = np.nan
    return numbers


def is_numeric(values: pd.Series) -> bool:
    present = values[~missing_mask(values)]
    return bool(len(present)) and pd.to_numeric(present.str.strip(), errors="coerce").notna().all()


def column_kind(values: pd.Series) -> str:
    """numeric | categorical | text | id | constant (see the module's docstring)."""
    missing = missing_mask(values)
    present = values[~missing]
    distinct = present.nunique()
    if distinct <= 1:
        return "categorical" if missing.any() and distinct == 1 else "constant"
    if is_numeric(values):
        numbers = as_numbers(present)
        whole = np.all(numbers == np.round(numbers))
        if whole and distinct == len(values) and np.ptp(numbers) == len(values) - 1:
            return "id"  # a running number: 1..n in some order
        return "numeric" if distinct > 2 else "categorical"
    if distinct == len(values) and not present.str.contains(r"\s").any():
        return "id"
    if distinct > TEXT_DISTINCT * len(present):
        return "text"
    return "categorical"


def column_kinds(frame: pd.DataFrame, columns: Sequence[str], path: Path,
                 categorical: Sequence[str] | None = None) -> dict[str, list[str]]:
    """Every feature column's kind; `categorical` (data.categorical_cols) are categorical
    whatever they look like. A column empty in every row stops the run with one line."""
    kinds: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for column in columns:
        values = frame[column]
        if missing_mask(values).all():
            raise PodiumError(
                f"{path}: feature column '{column}' is empty in every row ({len(values)} rows); "
                f"leave it out with data.drop_cols=[{column}]")
        kind = "categorical" if categorical is not None and column in categorical \
            else column_kind(values)
        kinds[kind].append(column)
    return kinds


def quantile_transform(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """scikit-learn's QuantileTransformer(output_distribution="normal").transform for one
    column, from its fitted `quantiles_` (references evenly spaced in [0, 1]): the same
    interpolation averaged both ways (ties), values within 1e-7 of the ends pinned to them,
    the normal's inverse CDF clipped at 1e-7 from 0 and 1."""
    from scipy.stats import norm

    references = np.linspace(0, 1, len(quantiles))
    out = 0.5 * (np.interp(values, quantiles, references)
                 - np.interp(-values, -quantiles[::-1], -references[::-1]))
    out[values + QUANTILE_BOUND > quantiles[-1]] = 1.0
    out[values - QUANTILE_BOUND < quantiles[0]] = 0.0
    eps = np.spacing(1)
    return np.clip(norm.ppf(out), norm.ppf(QUANTILE_BOUND - eps),
                   norm.ppf(1 - (QUANTILE_BOUND - eps)))


def n_quantiles(rows: int) -> int:
    """TabM's choice (Gorishniy et al. 2025): a quantile per 30 rows, 10 to 1000."""
    return max(min(rows // 30, 1000), 10)


def fit_numeric(values: np.ndarray, transform: str) -> dict:
    """One numeric column's median, missing indicator and transform, as plain numbers."""
    from sklearn.preprocessing import QuantileTransformer

    present = values[~np.isnan(values)]
    fill = float(np.median(present))
    filled = np.where(np.isnan(values), fill, values)
    stats: dict = {"fill": fill, "indicator": bool(np.isnan(values).any())}
    if transform == "quantile":
        scaler = QuantileTransformer(n_quantiles=min(n_quantiles(len(filled)), len(filled)),
                                     output_distribution="normal", subsample=10**9)
        stats["quantiles"] = scaler.fit(filled[:, None]).quantiles_[:, 0].tolist()
    else:
        std = float(filled.std())
        stats.update(mean=float(filled.mean()), std=std if std > 0 else 1.0)
    return stats


def transform_numeric(values: np.ndarray, stats: dict) -> np.ndarray:
    filled = np.where(np.isnan(values), stats["fill"], values)
    if "quantiles" in stats:
        return quantile_transform(filled, np.asarray(stats["quantiles"]))
    return (filled - stats["mean"]) / stats["std"]


def fit_levels(values: pd.Series, rare_min_count: int) -> list[str]:
    """The levels kept (most frequent first, ties by name); rarer ones share index 0."""
    counts = values.str.strip().value_counts()
    kept = counts[counts >= rare_min_count]
    return sorted(kept.index, key=lambda level: (-kept[level], level))


def level_index(values: pd.Series, levels: Sequence[str]) -> np.ndarray:
    """1 + the level's position; 0 for a rare level or one never seen in training."""
    index = {level: i + 1 for i, level in enumerate(levels)}
    return values.str.strip().map(index).fillna(0).to_numpy(dtype=float)


def fit_bins(numbers: np.ndarray, n_bins: int) -> list[list[float]]:
    """rtdl_num_embeddings' quantile bins of each transformed training column (a column
    constant on this split gets one bin around its value)."""
    import torch
    from rtdl_num_embeddings import compute_bins

    bins = []
    for column in torch.as_tensor(numbers, dtype=torch.float32).T:
        if column.unique().numel() < 2:
            bins.append([float(column[0]) - 1.0, float(column[0]) + 1.0])
            continue
        edges = compute_bins(column[:, None], n_bins=max(2, min(n_bins, len(column) - 1)))
        bins.append(edges[0].tolist())
    return bins


def fit_encoders(frame: pd.DataFrame, kinds: dict[str, list[str]], numeric_transform: str,
                 n_bins: int, rare_min_count: int) -> dict:
    """The encoders of the training split's rows `frame`, as plain numbers and strings."""
    if numeric_transform not in ("standard", "quantile"):
        raise PodiumError(f"data.numeric_transform={numeric_transform} is unknown: use "
                          f"standard or quantile")
    numeric = {c: fit_numeric(as_numbers(frame[c]), numeric_transform) for c in kinds["numeric"]}
    features = {"columns": list(frame.columns), "numeric_transform": numeric_transform,
                "numeric": numeric,
                "categorical": {c: fit_levels(frame[c], rare_min_count)
                                for c in kinds["categorical"]},
                "dropped": {k: kinds[k] for k in ("text", "id", "constant") if kinds[k]}}
    numbers = numeric_block(frame, features)
    features["bins"] = fit_bins(numbers, n_bins) if numbers.shape[1] else []
    return features


def numeric_block(frame: pd.DataFrame, features: dict) -> np.ndarray:
    columns = [transform_numeric(as_numbers(frame[c]), stats)
               for c, stats in features["numeric"].items()]
    return np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))


def indicator_columns(features: dict) -> list[str]:
    return [c for c, stats in features["numeric"].items() if stats["indicator"]]


def cardinalities(features: dict) -> list[int]:
    """Levels of each category column of `encode`'s output: categorical columns (kept
    levels + the rare/unseen level), then the missing indicators (2)."""
    return ([len(levels) + 1 for levels in features["categorical"].values()]
            + [2] * len(indicator_columns(features)))


def encode(frame: pd.DataFrame, features: dict) -> np.ndarray:
    """float32 (N, numeric + category columns): transformed numbers, then category indices
    (categorical columns, then 1 where a numeric cell was missing)."""
    blocks = [numeric_block(frame, features)]
    blocks += [level_index(frame[c], levels)[:, None]
               for c, levels in features["categorical"].items()]
    blocks += [np.isnan(as_numbers(frame[c]))[:, None].astype(float)
               for c in indicator_columns(features)]
    return np.concatenate(blocks, axis=1).astype(np.float32)


def summary_lines(frame: pd.DataFrame, kinds: dict[str, list[str]], features: dict) -> list[str]:
    """One line per column kind, for the start of a run: what the network sees and what
    was dropped, with the missing shares."""
    def missing(columns: Sequence[str]) -> str:
        shares = [(c, missing_mask(frame[c]).mean()) for c in columns]
        shares = [f"{c} {share:.0%}" for c, share in shares if share > 0]
        return f"; missing: {', '.join(shares)}" if shares else "; nothing missing"

    def named(columns: Sequence[str]) -> str:
        return ", ".join(columns[:8]) + (f", ... ({len(columns)} in all)" if len(columns) > 8
                                         else "")

    lines = [f"columns: {len(frame)} training rows, {len(frame.columns)} feature columns"]
    numeric = kinds["numeric"]
    if numeric:
        bins = max((len(b) - 1 for b in features["bins"]), default=0)
        lines.append(f"  numeric ({len(numeric)}, {features['numeric_transform']}, up to "
                     f"{bins} bins): "
                     f"{named(numeric)}{missing(numeric)}")
    categorical = kinds["categorical"]
    if categorical:
        levels = [f"{c} {len(features['categorical'][c])}" for c in categorical[:8]]
        lines.append(f"  categorical ({len(categorical)}; kept levels: {', '.join(levels)}; "
                     f"rarer and unseen levels share one): {named(categorical)}"
                     f"{missing(categorical)}")
    for kind, label, why in (
            ("text", "text-like", "free text, distinct in most rows: keep one as categories "
                                  "with data.categorical_cols=[...]"),
            ("id", "id-like", "a value unique to every row"),
            ("constant", "constant", "one value in every row")):
        if kinds[kind]:
            lines.append(f"  {label}, dropped ({len(kinds[kind])}): {named(kinds[kind])} ({why})")
    return lines
