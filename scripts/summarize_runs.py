"""`make runs [DIR=logs]`: one table of every run under a folder, best first.

    python scripts/summarize_runs.py logs/sweep/focal [--csv out.csv] [--top 30]

A run is a folder with `.hydra/config.yaml` and `metrics.json` (or `failed.txt`); a
cross-validation folder (`make cv`) is one row with its OOF score, and its folds are not
listed again. Columns: experiment, overrides, monitor, best (the monitored validation value
of the best checkpoint), oof (the cross-validation OOF score of the same metric), epochs,
wall time (from the config's to metrics.json's modification time), status (ok, failed, or
pruned: a sweep trial its pruner stopped early, `pruned.txt`), path. Runs that differ only
in `seed` form a group: `seed_mean` / `seed_std` / `seeds` over the group.
Rows are sorted best first (each monitor's `metric.mode`; failed runs last). The table is
printed with rich and written to `<DIR>/runs.csv`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HIDDEN = ("paths.", "hydra.", "task_name=", "sweep_name=", "data.root=", "data.demo_root=",
          "experiment=", "hparams_search=", "sweep.")
COLUMNS = ["experiment", "overrides", "monitor", "best", "oof", "seed_mean", "seed_std",
           "seeds", "epochs", "wall_s", "status", "path"]


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def infer_mode(monitor: str) -> str:
    """As podium.metrics.infer_mode: min for losses and errors, max for scores."""
    name = monitor.rsplit("/", 1)[-1]
    return "min" if name in ("loss", "mae", "mse", "rmse") or name.endswith("_loss") else "max"


def run_row(run: Path) -> dict | None:
    """One run folder -> one row (None: not a training run, e.g. a submit folder)."""
    metrics = read_json(run / "metrics.json")
    failed = run / "failed.txt"
    if "monitor" not in metrics and not failed.is_file():
        return None
    config = read_yaml(run / ".hydra" / "config.yaml") or {}
    hydra = (read_yaml(run / ".hydra" / "hydra.yaml") or {}).get("hydra", {})
    overrides = read_yaml(run / ".hydra" / "overrides.yaml") or []
    monitor = metrics.get("monitor") or (config.get("metric") or {}).get("monitor") or ""
    mode = (config.get("metric") or {}).get("mode") or infer_mode(monitor or "val/f1_macro")
    start = (run / ".hydra" / "config.yaml").stat().st_mtime
    end = (run / "metrics.json") if (run / "metrics.json").is_file() else failed
    return {
        "experiment": hydra.get("runtime", {}).get("choices", {}).get("experiment", ""),
        "overrides": " ".join(o for o in overrides if not o.startswith(HIDDEN)),
        "monitor": monitor, "mode": mode, "seed": config.get("seed"),
        "best": metrics.get(monitor, math.nan), "oof": math.nan,
        "epochs": metrics.get("epochs", math.nan),
        "wall_s": round(end.stat().st_mtime - start, 1),
        "status": "failed" if failed.is_file() else
                  "pruned" if (run / "pruned.txt").is_file() else "ok",
        "path": str(run),
    }


def cv_row(cv_dir: Path, folds: list[dict]) -> dict:
    """A cross-validation folder: mean fold value, the OOF score of the same metric."""
    metrics = read_json(cv_dir / "metrics.json")
    ok = [f for f in folds if f["status"] == "ok"] or folds
    first = ok[0]
    name = first["monitor"].rsplit("/", 1)[-1]
    overrides = " ".join(o for o in first["overrides"].split() if not o.startswith("data.fold="))
    return {**first, "overrides": overrides, "best": float(np.nanmean([f["best"] for f in ok])),
            "oof": metrics.get(f"oof/{name}", math.nan),
            "epochs": float(np.nanmean([f["epochs"] for f in ok])),
            "wall_s": round(sum(f["wall_s"] for f in folds), 1),
            "status": "ok" if len(ok) == len(folds) else f"{len(folds) - len(ok)} fold(s) failed",
            "path": str(cv_dir)}


def collect(root: Path) -> pd.DataFrame:
    """Every run under `root` (the folder itself may be a run)."""
    rows, cv_dirs = [], {}
    for config in sorted(root.glob("**/.hydra/config.yaml")):
        run = config.parent.parent
        row = run_row(run)
        if row is None:
            continue
        parent = run.parent
        if "folds" in read_json(parent / "metrics.json"):
            cv_dirs.setdefault(parent, []).append(row)
        else:
            rows.append(row)
    rows += [cv_row(cv, folds) for cv, folds in cv_dirs.items()]
    table = pd.DataFrame(rows, columns=[*COLUMNS, "mode", "seed"])
    return seed_groups(table)


def seed_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of `best` over runs that differ only in their seed."""
    table = table.copy()
    table["group"] = table.experiment + " | " + table.overrides.map(
        lambda o: " ".join(x for x in o.split() if not x.startswith("seed=")))
    table[["seed_mean", "seed_std"]] = math.nan
    table["seeds"] = 1
    for _, group in table[table.status == "ok"].groupby(["group", "monitor"]):
        if group.seed.nunique() > 1:
            table.loc[group.index, "seed_mean"] = group.best.mean()
            table.loc[group.index, "seed_std"] = group.best.std(ddof=0)
            table.loc[group.index, "seeds"] = len(group)
    return table


def best_first(table: pd.DataFrame) -> pd.DataFrame:
    """Higher is better for `max` monitors, lower for `min`; NaN (failed) last."""
    signed = np.where(table["mode"] == "min", table.best, -table.best)
    order = np.lexsort((np.nan_to_num(signed, nan=np.inf), table.best.isna().to_numpy()))
    return table.iloc[order].reset_index(drop=True)[COLUMNS]


def show(table: pd.DataFrame, title: str, top: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    shown = Table(title=title)
    for column in COLUMNS:
        shown.add_column(column, justify="right" if column not in (
            "experiment", "overrides", "monitor", "status", "path") else "left",
            overflow="fold")
    for row in table.head(top).itertuples(index=False):
        cells = []
        for column, value in zip(COLUMNS, row, strict=True):
            if isinstance(value, float):
                value = "" if math.isnan(value) else (
                    f"{value:.4f}" if column in ("best", "oof", "seed_mean", "seed_std")
                    else f"{value:g}")
            cells.append(str(value))
        shown.add_row(*cells, style={"ok": None, "pruned": "yellow"}.get(row.status, "red"))
    Console(width=200).print(shown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir", nargs="?", default="logs", type=Path)
    parser.add_argument("--csv", type=Path, help="default: <dir>/runs.csv")
    parser.add_argument("--top", type=int, help="print only the best N rows (CSV has all)")
    args = parser.parse_args(argv)
    if not args.dir.is_dir():
        print(f"error: {args.dir} is not a folder (make runs DIR=logs/...)", file=sys.stderr)
        return 2
    table = best_first(collect(args.dir))
    if table.empty:
        print(f"error: no runs (folders with .hydra/ and metrics.json) under {args.dir}",
              file=sys.stderr)
        return 2
    csv = args.csv or args.dir / "runs.csv"
    tmp = csv.with_name(csv.name + ".tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(csv)
    show(table, f"{len(table)} runs under {args.dir}, best first", args.top)
    print(f"table written to {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
