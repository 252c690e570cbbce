"""`make runs [DIR=logs]`: every run under a folder, one table per competition and its
metric, best first.

    python scripts/summarize_runs.py logs/sweep/focal [--csv out.csv] [--top 30]

A run is a folder with `.hydra/config.yaml` and `metrics.json` (or `failed.txt`); a cross-
validation folder (`make cv`) is one row, and its folds are not listed again. Scores are
comparable only on the same data and metric, so runs are grouped by competition
(`data.root`, resolved), `metric.competition` and the test prior its validation was
weighted by (`data.test_prior`: a score under a uniform prior is another yardstick), and
ranked within their group by one score in that metric's own direction: the OOF score where
there is one (a cross-validation folder, `make gbdt`'s folder; a refit of one takes its
OOF score), the validation score otherwise; column `scored_on` says which (oof | val |
refit: oof | refit: val). An ensemble (`make submit`, `make cv`'s blend with trees) is a row
too, scored by its chain's cross-fitted OOF score (`oof: chain cross-fitted`), beside its
first member's competition; its `overrides` are its members and weights. Columns: data_root,
competition, test_prior, rank, run_name, experiment, overrides, score, scored_on, best (the
monitored validation value `metric.monitor` of the best checkpoint; a cross-validation
folder: the folds' mean), best_epoch, epochs, wall time (from the config's to metrics.json's
modification time), status (ok, failed, or pruned: a sweep trial its pruner stopped early,
`pruned.txt`), debug (what makes the run a quick check: a `debug=` option, fast_dev_run,
overfit_batches or
limit_*_batches; such runs sort after the real ones), path. Runs that differ only in
`seed` form a seed group: `seed_mean` / `seed_std` / `seeds` of the score.
Failed runs sort last. The tables are printed with rich and written, one after the other,
to `<DIR>/runs.csv`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from podium.model.metrics import infer_mode
from podium.run import CONFIG, HYDRA_DIR, METRICS

HIDDEN = ("paths.", "hydra.", "task_name=", "sweep_name=", "data.root=", "data.demo_root=",
          "experiment=", "hparams_search=", "sweep.",
          "deadline=", "threads=")  # how fast, not what: make stack gives its members both
COLUMNS = ["data_root", "competition", "test_prior", "rank", "run_name", "experiment",
           "overrides", "score", "scored_on", "best", "best_epoch", "seed_mean", "seed_std",
           "seeds", "epochs", "wall_s", "status", "debug", "path"]
GROUP = ["data_root", "competition", "test_prior"]  # runs scored by one yardstick
SHOWN = [c for c in COLUMNS if c not in GROUP]  # in each title
TEXT = ("run_name", "experiment", "overrides", "scored_on", "status", "debug", "path")


def read_yaml(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def without_hydra_resolver(value):
    """`${hydra:x}` -> `${hydra.x}`: resolvable against the run's saved .hydra/hydra.yaml."""
    if isinstance(value, dict):
        return {k: without_hydra_resolver(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_hydra_resolver(v) for v in value]
    return value.replace("${hydra:", "${hydra.") if isinstance(value, str) else value


def resolved(config: dict, hydra: dict, key: str):
    """`key` of the saved (unresolved) config, its interpolations resolved as in the run;
    as written when they cannot be."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        whole = OmegaConf.create(without_hydra_resolver({**config, "hydra": hydra}))
        value = OmegaConf.select(whole, key, throw_on_missing=True)
    except OmegaConfBaseException:
        value = None
    if value is None:  # as written
        value = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
    return value


def debug_of(config: dict, choices: dict) -> str:
    """What makes a run a quick check rather than a result ('' for a real run)."""
    if choices.get("debug"):
        return f"debug={choices['debug']}"
    trainer = config.get("trainer") or {}
    marks = [f"{key}={trainer[key]}" for key in ("fast_dev_run", "overfit_batches")
             if trainer.get(key)]
    for key, value in trainer.items():  # an int is a number of batches, 1.0 is all of them
        if key.startswith("limit_") and value is not None and not (
                isinstance(value, float) and value == 1.0):
            marks.append(f"{key}={value}")
    return " ".join(marks)


def run_row(run: Path) -> dict | None:
    """One run folder -> one row (None: neither a training run nor an ensemble)."""
    metrics = read_json(run / METRICS)
    failed = run / "failed.txt"
    if "monitor" not in metrics and not failed.is_file():
        return ensemble_row(run, metrics) if "runs" in metrics else None
    config = read_yaml(run / CONFIG) or {}
    hydra = (read_yaml(run / HYDRA_DIR / "hydra.yaml") or {}).get("hydra", {})
    overrides = read_yaml(run / HYDRA_DIR / "overrides.yaml") or []
    monitor = metrics.get("monitor") or (config.get("metric") or {}).get("monitor") or ""
    competition = (metrics.get("competition") or (config.get("metric") or {}).get("competition")
                   or monitor.rsplit("/", 1)[-1])
    score, scored_on = metrics.get(f"val/{competition}", math.nan), "val"
    if "folds" in metrics and f"oof/{competition}" in metrics:  # its own folds (make gbdt)
        score, scored_on = metrics[f"oof/{competition}"], "oof"
    if metrics.get("refit_of"):  # the estimate of what it refits: its OOF, else its validation
        score, scored_on = refit_estimate(run, metrics["refit_of"], competition)
    start = (run / CONFIG).stat().st_mtime
    end = (run / METRICS) if (run / METRICS).is_file() else failed
    choices = hydra.get("runtime", {}).get("choices", {})
    root = resolved(config, hydra, "data.root")
    return {
        "data_root": os.path.normpath(str(root)) if root else "",
        "run_name": str(resolved(config, hydra, "run_name") or ""),
        "best_epoch": metrics.get("best_epoch", math.nan),
        "debug": debug_of(config, choices),
        "experiment": "gbdt" if "booster" in metrics else choices.get("experiment", ""),
        "overrides": " ".join(o for o in overrides if not o.startswith(HIDDEN)),
        "competition": competition, "mode": infer_mode(competition), "seed": config.get("seed"),
        "test_prior": str((metrics.get("test_prior") or {}).get("setting")
                          or (config.get("data") or {}).get("test_prior") or "train"),
        "score": score, "scored_on": scored_on, "best": metrics.get(monitor, math.nan),
        "epochs": metrics.get("epochs", math.nan),
        "wall_s": round(end.stat().st_mtime - start, 1),
        "status": "failed" if failed.is_file() else
                  "pruned" if (run / "pruned.txt").is_file() else "ok",
        "path": str(run),
    }


def ensemble_row(folder: Path, metrics: dict) -> dict | None:
    """A `make submit` / `make predict` folder: its chain's cross-fitted OOF score
    (`oof_score_submitted`), ranked beside the runs of its first member's competition."""
    first = next(Path(metrics["runs"][0]).glob(f"**/{CONFIG}"), None) if metrics["runs"] else None
    member = run_row(first.parent.parent) if first is not None else None
    if member is None or metrics.get("oof_score_submitted") is None:
        return None  # no OOF rows (a predict folder): nothing comparable
    shares: dict[Path, float] = {}  # a cv folder's folds (named 0, 1, ...) share one entry
    for ran, weight in zip(map(Path, metrics["runs"]), metrics["weights"], strict=True):
        folder_of = ran.parent if ran.name[:1].isdigit() else ran
        shares[folder_of] = shares.get(folder_of, 0.0) + weight
    weights = " ".join(f"{f.name}:{w:.2f}" for f, w in shares.items())
    return {**member, "run_name": folder.parent.name, "experiment": "ensemble",
            "overrides": weights, "score": metrics["oof_score_submitted"],
            "scored_on": "oof: chain cross-fitted", "best": math.nan, "best_epoch": math.nan,
            "epochs": math.nan, "seed": None, "debug": "",
            "wall_s": round((folder / METRICS).stat().st_mtime
                            - (folder / CONFIG).stat().st_mtime, 1),
            "status": "ok", "path": str(folder)}


def refit_estimate(run: Path, sources: list[str], competition: str) -> tuple[float, str]:
    """A refit has no validation split: its score is the OOF score of the cross-validation
    folder it refits, or the validation score of the run."""
    parents = {Path(s).parent for s in sources}
    gathered = read_json(next(iter(parents)) / METRICS) if len(parents) == 1 else {}
    if "folds" in gathered:
        return gathered.get(f"oof/{competition}", math.nan), "refit: oof"
    source = read_json(Path(sources[0]) / METRICS)
    return source.get(f"val/{competition}", math.nan), "refit: val"


def cv_row(cv_dir: Path, folds: list[dict]) -> dict:
    """A cross-validation folder: its OOF score of the competition's metric (the folds'
    mean monitored value in `best`)."""
    metrics = read_json(cv_dir / METRICS)
    ok = [f for f in folds if f["status"] == "ok"] or folds
    first = ok[0]
    overrides = " ".join(o for o in first["overrides"].split() if not o.startswith("data.fold="))
    return {**first, "overrides": overrides, "best": float(np.nanmean([f["best"] for f in ok])),
            "score": metrics.get(f"oof/{first['competition']}", math.nan), "scored_on": "oof",
            "epochs": float(np.nanmean([f["epochs"] for f in ok])),
            "wall_s": round(sum(f["wall_s"] for f in folds), 1),
            "status": "ok" if len(ok) == len(folds) else f"{len(folds) - len(ok)} fold(s) failed",
            "path": str(cv_dir)}


def collect(root: Path) -> pd.DataFrame:
    """Every run under `root` (the folder itself may be a run)."""
    rows, cv_dirs = [], {}
    for config in sorted(root.glob(f"**/{CONFIG}")):
        run = config.parent.parent
        row = run_row(run)
        if row is None:
            continue
        parent = run.parent
        if "folds" in read_json(parent / METRICS):
            cv_dirs.setdefault(parent, []).append(row)
        else:
            rows.append(row)
    rows += [cv_row(cv, folds) for cv, folds in cv_dirs.items()]
    table = pd.DataFrame(rows, columns=[*COLUMNS, "mode", "seed"])
    table["mode"] = table["mode"].fillna("max")
    table["debug"] = table["debug"].fillna("")
    return seed_groups(table)


def seed_groups(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std of `score` over runs that differ only in their seed."""
    table = table.copy()
    table["group"] = table.experiment + " | " + table.overrides.map(
        lambda o: " ".join(x for x in o.split() if not x.startswith("seed=")))
    table[["seed_mean", "seed_std"]] = math.nan
    table["seeds"] = 1
    for _, group in table[table.status == "ok"].groupby([*GROUP, "group", "scored_on"]):
        if group.seed.nunique() > 1:
            table.loc[group.index, "seed_mean"] = group.score.mean()
            table.loc[group.index, "seed_std"] = group.score.std(ddof=0)
            table.loc[group.index, "seeds"] = len(group)
    return table


def best_first(table: pd.DataFrame) -> pd.DataFrame:
    """Grouped by competition and its metric; in each group higher is better for a score,
    lower for a loss or an error (the metric's own direction), debug runs after the real
    ones, NaN (failed) last; `rank` counts within the group."""
    signed = np.where(table["mode"] == "min", table.score, -table.score)
    order = np.lexsort((np.nan_to_num(signed, nan=np.inf), table.debug.ne("").to_numpy(),
                        table.score.isna().to_numpy(), table.test_prior.to_numpy(),
                        table.competition.to_numpy(), table.data_root.to_numpy()))
    table = table.iloc[order].reset_index(drop=True)
    table["rank"] = table.groupby(GROUP).cumcount() + 1
    return table[COLUMNS]


def show(table: pd.DataFrame, title: str, top: int | None) -> None:
    """One rich table per (competition folder, metric) group, its best `top` rows."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    console.print(title)
    for (root, competition, prior), group in table.groupby(GROUP, sort=False):
        shown = Table(title=f"data.root={root or '?'}  metric.competition={competition}  "
                            f"data.test_prior={prior}  ({len(group)} runs)")
        columns = [c for c in SHOWN if c in ("rank", "run_name", "score", "scored_on")
                   or not group[c].replace("", np.nan).isna().all()]  # empty ones: CSV only
        for column in columns:
            shown.add_column(column, justify="left" if column in TEXT else "right",
                             overflow="fold")
        for row in group.head(top).itertuples(index=False):
            cells = []
            for column in columns:
                value = getattr(row, column)
                if isinstance(value, float):
                    value = "" if math.isnan(value) else (
                        f"{value:.4f}" if column in ("score", "best", "seed_mean", "seed_std")
                        else f"{value:g}")
                cells.append(str(value))
            style = ("dim" if row.debug else None) if row.status == "ok" else \
                "yellow" if row.status == "pruned" else "red"
            shown.add_row(*cells, style=style)
        console.print(shown)


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
    groups = table.groupby(GROUP).ngroups
    show(table, f"{len(table)} runs under {args.dir} in {groups} group(s) (competition, "
         "metric, test prior), each ranked best first", args.top)
    print(f"table written to {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
