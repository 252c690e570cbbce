"""AutoGluon on one table competition folder, for `make bench-autogluon`.

Runs with the AutoGluon virtual environment's python (`make autogluon-venv`), never
podium's: it imports nothing of podium. Reads <root>/train.csv and test.csv, fits
`TabularPredictor(label, eval_metric, problem_type).fit(train, presets, time_limit)`,
writes the test predictions (id + the target: the positive class's probability for a
binary task, the value for regression) and a JSON of what AutoGluon says about itself:
the best model's validation score (the leaderboard's `score_val`, in the metric's own
units), its models, and the wall time of the fit and of the prediction.

    .venv-autogluon/bin/python scripts/autogluon_fit.py --root DIR --metric auroc|rmse
        --predictions OUT.csv --json OUT.json [--models DIR] [--time-limit 300]
        [--presets medium_quality] [--num-cpus N] [--positive-class LABEL]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

# podium's metric names -> AutoGluon's (eval_metric) and the problem type they imply
METRICS = {"auroc": ("roc_auc", "binary"), "rmse": ("root_mean_squared_error", "regression"),
           "mae": ("mean_absolute_error", "regression")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="competition folder")
    parser.add_argument("--metric", required=True, choices=sorted(METRICS))
    parser.add_argument("--predictions", required=True, help="test predictions CSV to write")
    parser.add_argument("--json", required=True, help="scores and times JSON to write")
    parser.add_argument("--models", default=None, help="AutoGluon's model folder")
    parser.add_argument("--id-col", default="id")
    parser.add_argument("--target-col", default="target")
    parser.add_argument("--time-limit", type=float, default=300)
    parser.add_argument("--presets", default="medium_quality")
    parser.add_argument("--num-cpus", default="auto")
    parser.add_argument("--positive-class", default=None,
                        help="binary: the class whose probability is written (default: the "
                             "second of the two sorted classes, as podium scores AUROC)")
    args = parser.parse_args()

    start = time.perf_counter()
    from autogluon.tabular import TabularPredictor, __version__

    root = Path(args.root)
    train = pd.read_csv(root / "train.csv", dtype={args.id_col: str})
    test = pd.read_csv(root / "test.csv", dtype={args.id_col: str})
    eval_metric, problem_type = METRICS[args.metric]
    positive = None
    if problem_type == "binary":
        train[args.target_col] = train[args.target_col].astype(str)
        classes = sorted(train[args.target_col].unique())
        positive = args.positive_class or classes[-1]
    predictor = TabularPredictor(label=args.target_col, eval_metric=eval_metric,
                                 problem_type=problem_type, path=args.models,
                                 positive_class=positive, verbosity=2)
    num_cpus = args.num_cpus if args.num_cpus == "auto" else int(args.num_cpus)
    fit_start = time.perf_counter()
    predictor.fit(train.drop(columns=[args.id_col]), presets=args.presets,
                  time_limit=args.time_limit, num_cpus=num_cpus)
    fit_s = time.perf_counter() - fit_start

    predict_start = time.perf_counter()
    features = test.drop(columns=[args.id_col])
    if problem_type == "binary":
        values = predictor.predict_proba(features, as_multiclass=False)
    else:
        values = predictor.predict(features)
    predict_s = time.perf_counter() - predict_start
    out = pd.DataFrame({args.id_col: test[args.id_col], args.target_col: values.to_numpy()})
    Path(args.predictions).parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(args.predictions, index=False)

    board = predictor.leaderboard(silent=True)
    # score_val is "higher is better" in AutoGluon (an error metric negated): in the
    # metric's own units again
    def original(value: float) -> float:
        return float(predictor.eval_metric.convert_score_to_original(float(value)))

    best = board.loc[board["model"] == predictor.model_best].iloc[0]
    report = {
        "autogluon": __version__, "presets": args.presets, "time_limit": args.time_limit,
        "eval_metric": eval_metric, "problem_type": problem_type, "positive_class": positive,
        "model_best": predictor.model_best, "score_val": original(best["score_val"]),
        "models": [{"model": row["model"], "score_val": original(row["score_val"]),
                    "fit_time": round(float(row["fit_time"]), 2)}
                   for _, row in board.iterrows()],
        "fit_s": round(fit_s, 1), "predict_s": round(predict_s, 1),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("model_best", "score_val", "fit_s", "wall_s")}))


if __name__ == "__main__":
    main()
