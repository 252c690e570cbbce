"""`make bench-tabular`: experiment=tabular against the gradient-boosting bar, and their blend.

On every table below, built as a competition folder (train.csv, test.csv,
sample_submission.csv, answers.csv) in a work folder that is never committed, three commands
run through make, as a user would type them:
  make cv EXP=tabular FOLDS=5        the tabular recipe's 5-fold OOF score
  make gbdt FOLDS=5                  LightGBM (conf/gbdt/lightgbm.yaml) on the same folds
  make submit RUN="<cv> <gbdt>" ARGS="weights=auto"   the blend learned on their OOF
Each is timed (wall clock, whatever else the machine runs). The score is the OOF score of the
competition metric (the task's default: binary AUROC, multiclass macro-F1, regression MAE);
the held-out test score (answers.csv, never used to choose anything) is listed beside it.
The bar (issue: tabular competitions): the recipe's OOF >= the trees' on every table, the
blend's >= both. Prints the results as JSON and writes benchmarks/tabular.md (+ .json).

Tables (all ship inside installed packages, nothing is downloaded):
  demo_binary      scikit-learn's breast cancer (conf/data/demo_binary.yaml)
  demo_regression  scikit-learn's diabetes (conf/data/demo_regression.yaml)
  wine             scikit-learn's load_wine: 178 rows, 13 numbers, 3 classes
  penguins         palmerpenguins: species from island, sex (categorical) and measurements
                   with missing values
  cars             vega_datasets' cars: miles per gallon (regression) from numbers with
                   missing horsepower, a categorical origin and a free-text name
  seattle_weather  vega_datasets' Seattle weather: 1,461 days, the weather (sun, fog, rain,
                   drizzle, snow: imbalanced, 31:1) from precipitation, temperatures, wind,
                   month and year

    python scripts/bench_tabular.py [--tables wine,cars] [--work DIR] [--folds 5]
        [--set key=value ...] [--out benchmarks/tabular]

`--seeds 1,2,3` asks how honest the OOF is: for each seed every table is split anew and the
folds and models take that seed; benchmarks/tabular_honesty.md lists, per table and folder,
the mean over the seeds of (OOF - test) ± its bootstrap standard error. A test split fixed
across seeds would leave its own luck (an easy or hard 20 %) in every seed's gap.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

# One OpenMP thread per process (torch and the trees alike) unless OMP_NUM_THREADS says
# otherwise: these models are tiny, and on a shared machine a second thread spins idle in
# every parallel region whenever another process holds the core (folds ran 5-8x slower).
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "tabular"
sys.path.insert(0, str(ROOT / "src"))  # this checkout's podium, as the make commands get it


def wine(root: Path, split: int = 0) -> list[str]:
    from sklearn.datasets import load_wine

    from podium.data.demo import write_table_competition

    data = load_wine(as_frame=True)
    target = pd.Series(np.asarray(data.target_names)[data.target])
    write_table_competition(root, data.data, target, split)
    return ["data=tabular", f"data.root={root}"]


def penguins(root: Path, split: int = 0) -> list[str]:
    from palmerpenguins import load_penguins

    from podium.data.demo import write_table_competition

    frame = load_penguins()
    write_table_competition(root, frame.drop(columns="species"), frame["species"], split)
    return ["data=tabular", f"data.root={root}"]


def cars(root: Path, split: int = 0) -> list[str]:
    from vega_datasets import local_data

    from podium.data.demo import write_table_competition

    frame = local_data.cars().dropna(subset=["Miles_per_Gallon"])
    frame["Year"] = pd.to_datetime(frame["Year"]).dt.year
    target = frame.pop("Miles_per_Gallon").astype(float)
    write_table_competition(root, frame, target, split)
    return ["data=tabular", f"data.root={root}"]


def seattle_weather(root: Path, split: int = 0) -> list[str]:
    from vega_datasets import local_data

    from podium.data.demo import write_table_competition

    frame = local_data.seattle_weather()
    dates = pd.to_datetime(frame.pop("date"))
    frame["month"], frame["year"] = dates.dt.month, dates.dt.year
    target = frame.pop("weather").astype(str)
    write_table_competition(root, frame, target, split)
    return ["data=tabular", f"data.root={root}"]


def demo(kind: str) -> Callable[[Path, int], list[str]]:
    def build(root: Path, split: int = 0) -> list[str]:
        from podium.data.demo import build_tabular_demo

        build_tabular_demo(root, kind, split)
        return [f"data=demo_{kind}", f"data.root={root}", f"data.demo_root={root}"]
    return build


TABLES: dict[str, Callable[[Path, int], list[str]]] = {
    "demo_binary": demo("binary"), "demo_regression": demo("regression"),
    "wine": wine, "penguins": penguins, "cars": cars, "seattle_weather": seattle_weather,
}


def make(target: str, variables: dict[str, str], log: Path) -> tuple[float, str]:
    """`make TARGET VAR=...` with this interpreter; (wall seconds, stdout). The output goes
    to `log` too; a failing command stops the bench with its last line."""
    command = ["make", "-s", "-C", str(ROOT), target, f"PY={sys.executable}",
               *(f"{k}={v}" for k, v in variables.items())]
    env = {"OMP_NUM_THREADS": "1", **os.environ,  # see THREADS
           "PYTHONPATH": os.pathsep.join(  # this checkout's podium
               filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    log.write_text(f"$ {' '.join(command)}\n{proc.stdout}\n{proc.stderr}")
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise SystemExit(f"make {target} failed ({log}): {last}")
    return wall, proc.stdout


def newest(folder: Path) -> Path:
    return max((p for p in folder.iterdir() if p.is_dir()), key=lambda p: p.name)


def scores(folder: Path, answers: pd.DataFrame) -> dict:
    """The OOF score of the competition metric ± its bootstrap standard error (podium's
    metrics.json), and the held-out test score ± the bootstrap standard error of the test
    rows (scikit-learn's scorer on submission.csv against `answers`: id, target)."""
    metrics = json.loads((folder / "metrics.json").read_text())
    metric = metrics.get("competition") or metrics["metric"]
    submitted = pd.read_csv(folder / "submission.csv", dtype={"id": str})
    merged = answers.merge(submitted, on="id", suffixes=("", "_pred"), validate="1:1")
    return {"metric": metric, "oof": metrics.get("oof_score_submitted", metrics["oof_score"]),
            "oof_se": metrics.get("oof_se"),
            "test": metrics.get(metric, metrics.get(f"leaderboard/{metric}")),
            "test_se": bootstrap_se(metric, merged["target"].to_numpy(),
                                    merged["target_pred"].to_numpy())}


def bootstrap_se(metric: str, y: np.ndarray, predicted: np.ndarray) -> float:
    """The bootstrap standard error of scikit-learn's score of `predicted` (podium's 200
    resamples of the rows): binary AUROC on the positive class's probability (the last
    sorted label), macro-F1 and accuracy on labels, MAE on values."""
    from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, roc_auc_score

    from podium.submission.oof import bootstrap_se as resampled

    if metric == "auroc":
        y, predicted = y.astype(str) == sorted(set(y.astype(str)))[-1], predicted.astype(float)
    score = {"auroc": roc_auc_score, "acc": accuracy_score, "accuracy": accuracy_score,
             "mae": mean_absolute_error,
             "f1_macro": lambda t, p: f1_score(t, p, average="macro")}[metric]
    return resampled(score, y, predicted)


def bench_table(name: str, work: Path, folds: int, extra: list[str],
                seed: int | None = None, split: int = 0) -> dict:
    """Build the table's folder (`split`: the seed of its train/test split), then cv, gbdt
    and the blend, each timed (`seed`: the folds' and the models' seed, for both; `extra`:
    overrides for both)."""
    extra = [*extra, *([] if seed is None else [f"seed={seed}"])]
    root, logs = work / f"split{split}" / "data" / name, work / f"split{split}" / "logs" / name
    data = TABLES[name](root, split)
    logs.mkdir(parents=True, exist_ok=True)
    args = " ".join([*data, f"paths.log_dir={logs}", *extra])
    cv_wall, _ = make("cv", {"EXP": "tabular", "FOLDS": str(folds), "ARGS": args},
                      logs / "cv.log")
    cv_dir = newest(logs / "cv" / "tabular")
    gbdt_wall, _ = make("gbdt", {"FOLDS": str(folds), "ARGS": args}, logs / "gbdt.log")
    gbdt_dir = newest(logs / "gbdt" / "lightgbm")
    blend_wall, out = make("submit", {"RUN": f"{cv_dir} {gbdt_dir}",
                                      "ARGS": f"weights=auto paths.log_dir={logs}"},
                           logs / "submit.log")
    blend_dir = newest(logs / "submit" / "ensemble")
    answers = pd.read_csv(root / "answers.csv", dtype={"id": str})
    tabular, gbdt, blend = (scores(d, answers) for d in (cv_dir, gbdt_dir, blend_dir))
    lower = tabular["metric"] in ("mae", "mse", "rmse", "rmsle", "logloss")
    sign = -1 if lower else 1
    names = {str(cv_dir): "tabular", str(gbdt_dir): "gbdt"}
    weights = next((line for line in out.splitlines() if line.startswith("weights: ")), "")
    chosen = next((line.rsplit("-> ", 1)[-1] for line in out.splitlines()
                   if line.startswith("blend:")), "given weights (weights=auto learned nothing)")
    for folder, short in names.items():
        weights = weights.replace(folder, short)
    return {
        "table": name, "seed": seed, "split": split,
        "rows": len(pd.read_csv(root / "train.csv")), "metric": tabular["metric"],
        "lower_is_better": lower,
        "tabular": {**tabular, "wall_s": round(cv_wall, 1), "folder": str(cv_dir)},
        "gbdt": {**gbdt, "wall_s": round(gbdt_wall, 1), "folder": str(gbdt_dir)},
        "blend": {**blend, "wall_s": round(blend_wall, 1), "folder": str(blend_dir),
                  "weights": weights.removeprefix("weights: "), "chosen": chosen},
        "tabular_beats_gbdt": sign * tabular["oof"] >= sign * gbdt["oof"],
        "blend_beats_both": sign * blend["oof"] >= max(sign * tabular["oof"],
                                                       sign * gbdt["oof"]) - 1e-12,
    }


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown(results: list[dict], meta: dict) -> str:
    lines = [
        "# experiment=tabular vs the gradient-boosting bar",
        "",
        f"`make bench-tabular` ({meta['command']}), {meta['date']}, {meta['cpus']} CPU cores "
        f"shared with other work, {meta['threads']} OpenMP thread(s) per process; wall times "
        f"vary with the machine's load: {meta['note']}; the whole bench "
        f"{meta['total_wall_s'] / 60:.0f} min. "
        f"Each table is a competition folder built from a dataset that ships in a package "
        f"(80 % train, 20 % test with answers); {meta['folds']}-fold OOF score of the "
        f"competition metric (the task's default) on the same folds for both: "
        f"`make cv EXP=tabular`, `make gbdt` (LightGBM, conf/gbdt/lightgbm.yaml) and "
        f"`make submit RUN=\"<cv> <gbdt>\" ARGS=\"weights=auto\"`. The held-out test score "
        f"(answers.csv) is shown for reference and chose nothing. The bar: tabular OOF >= "
        f"GBDT OOF, blend >= both.",
        "",
        "| table | training rows | metric | tabular OOF | GBDT OOF | blend OOF | tabular >= GBDT | "
        "blend >= both | tabular test | GBDT test | blend test | wall s (cv / gbdt / blend) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        t, g, b = r["tabular"], r["gbdt"], r["blend"]
        metric = r["metric"] + (" (lower is better)" if r["lower_is_better"] else "")
        lines.append(
            f"| {r['table']} | {r['rows']} | {metric} | {fmt(t['oof'])} | {fmt(g['oof'])} | "
            f"{fmt(b['oof'])} | {'yes' if r['tabular_beats_gbdt'] else '**no**'} | "
            f"{'yes' if r['blend_beats_both'] else '**no**'} | {fmt(t['test'])} | "
            f"{fmt(g['test'])} | {fmt(b['test'])} | {t['wall_s']:.0f} / {g['wall_s']:.0f} / "
            f"{b['wall_s']:.0f} |")
    lines += ["", "Blend weights (`weights=auto`: learned on the OOF, kept only when the "
                  "chain cross-fitted gains more than 1.645 standard errors):", ""]
    lines += [f"- {r['table']}: {r['blend']['weights']} ({r['blend']['chosen']})"
              for r in results]
    return "\n".join(lines) + "\n"


def honesty(results: list[dict]) -> list[dict]:
    """Per table and folder (tabular, gbdt, blend): the mean over the seeds of (OOF - test),
    signed so that positive means the OOF promised more than the test gave, and the
    bootstrap standard error of that mean (each seed's OOF and test errors, independent:
    sqrt(sum of oof_se^2 + test_se^2) / seeds)."""
    rows = []
    for table in dict.fromkeys(r["table"] for r in results):
        runs = [r for r in results if r["table"] == table]
        sign = -1 if runs[0]["lower_is_better"] else 1
        row = {"table": table, "metric": runs[0]["metric"], "seeds": [r["seed"] for r in runs]}
        for folder in ("tabular", "gbdt", "blend"):
            gaps = [sign * (r[folder]["oof"] - r[folder]["test"]) for r in runs]
            se = np.sqrt(sum(r[folder]["oof_se"] ** 2 + r[folder]["test_se"] ** 2
                             for r in runs)) / len(runs)
            row[folder] = {"gap": float(np.mean(gaps)), "se": float(se),
                           "within_se": bool(abs(np.mean(gaps)) <= se)}
        rows.append(row)
    return rows


def honesty_markdown(rows: list[dict], meta: dict) -> str:
    args = meta["command"].removeprefix("python scripts/bench_tabular.py ")
    lines = [
        "# How honest the OOF is: experiment=tabular, LightGBM and their blend",
        "",
        f"`make bench-tabular ARGS=\"{args}\"`, "
        f"{meta['date']}, {meta['cpus']} CPU cores: {meta['note']}; the whole bench "
        f"{meta['total_wall_s'] / 60:.0f} min. For each seed the table is split anew (80 % "
        f"train, 20 % test with answers) and the folds and models take the same seed. Each "
        f"cell: the mean over the seeds of (OOF score - test score), signed so that positive "
        f"means the OOF promised more than the test gave, ± the bootstrap standard error of "
        f"that mean (the OOF's and the test rows' resampled, each seed independent); "
        f"**bold** where the gap exceeds one standard error.",
        "",
        "| table | metric | network (tabular) | LightGBM | blend (weights=auto) | "
        "network <= LightGBM |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        cells = [f"{r[f]['gap']:+.4f} ± {r[f]['se']:.4f}" for f in ("tabular", "gbdt", "blend")]
        cells = [c if r[f]["within_se"] else f"**{c}**"
                 for c, f in zip(cells, ("tabular", "gbdt", "blend"), strict=True)]
        lines.append(f"| {r['table']} | {r['metric']} | {' | '.join(cells)} | "
                     f"{'yes' if r['tabular']['gap'] <= r['gbdt']['gap'] else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", default=",".join(TABLES),
                        help=f"comma-separated, of {', '.join(TABLES)}")
    parser.add_argument("--work", default=None,
                        help="folder for the tables and runs (default: a new temporary one)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--set", nargs="*", default=[],
                        help="extra overrides for make cv and make gbdt (key=value)")
    parser.add_argument("--seed", type=int, default=None,
                        help="the folds' and models' seed for cv and gbdt (default: 42)")
    parser.add_argument("--seeds", default=None,
                        help="e.g. 1,2,3: each seed splits the tables anew and seeds the "
                             "folds and models; writes how honest the OOF was (OUT: "
                             "benchmarks/tabular_honesty)")
    parser.add_argument("--out", default=None, help="writes OUT.md and OUT.json")
    parser.add_argument("--note", default="nothing else of this project ran",
                        help="what else ran meanwhile, for the table's caption")
    args = parser.parse_args()
    names = [n for n in args.tables.split(",") if n]
    unknown = sorted(set(names) - set(TABLES))
    if unknown:
        raise SystemExit(f"--tables: unknown {', '.join(unknown)}; known: {', '.join(TABLES)}")
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-tabular-"))
    start = time.perf_counter()
    runs = ([(int(s), int(s)) for s in args.seeds.split(",")] if args.seeds
            else [(args.seed, 0)])  # (seed, split)
    results = []
    for seed, split in runs:
        for name in names:
            results.append(bench_table(name, work, args.folds, args.set, seed, split))
            print(json.dumps(results[-1]), flush=True)
    meta = {"command": "python scripts/bench_tabular.py" + (
                f" --tables {args.tables}" if args.tables != ",".join(TABLES) else "") + (
                f" --set {' '.join(args.set)}" if args.set else "") + (
                f" --seed {args.seed}" if args.seed is not None else "") + (
                f" --seeds {args.seeds}" if args.seeds else ""),
            "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "folds": args.folds,
            "python": platform.python_version(), "note": args.note,
            "threads": os.environ.get("OMP_NUM_THREADS", "1"),
            "total_wall_s": round(time.perf_counter() - start, 1), "work": str(work)}
    out = Path(args.out or (f"{OUT}_honesty" if args.seeds else OUT))
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": meta, "results": results}
    if args.seeds:
        report["honesty"] = honesty(results)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(honesty_markdown(report["honesty"], meta) if args.seeds
                                      else markdown(results, meta))
    print(json.dumps({"meta": meta, "bar_met": all(
        r["tabular_beats_gbdt"] and r["blend_beats_both"] for r in results)}))


if __name__ == "__main__":
    main()
