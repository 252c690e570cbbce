"""`make bench-imbalance`: imbalance recipes on CIFAR-10-LT at one fixed CPU budget, against a
plain PyTorch loop.

Each row trains one recipe with the same epochs, batch size, data split and seed, and is
scored on the same stratified validation split (20 % of the long-tailed training set, seed
42): podium's rows through the real CLI (`python -m podium.train experiment=<name> ...`,
scored from the run's oof.csv, i.e. its best checkpoint's predictions with the recipe's
test-time augmentation), the plain loop through `scripts/plain_loop.py` (its best epoch, the
same selection rule). A row is a recipe at a network depth; results are kept in
benchmarks/imbalance.json by (row, depth, epochs), so rows can be (re)run one at a time,
and benchmarks/imbalance.md is written from all of them. CIFAR-10-LT's test set is balanced,
so every podium row runs under each `--priors` setting of `data.test_prior` (train: the
checkpoint picked on the long-tailed split, nothing shifted; uniform: picked under the
uniform prior, the submission shifted to it) and is scored under the uniform prior too:
validation rows weighted by 1/C / (their class's share), the estimate of the balanced
test set; "submission" is what the written file scores there (cross-fitted where a learned
shift is used).

    python scripts/bench_imbalance.py [--epochs 15] [--rows plain_loop,longtail]
        [--depths 8,20] [--priors train,uniform] [--set key=value ...] [--tag " (tau 1)"]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from podium.run import OOF

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-lt"
EXPERIMENTS = ["baseline", "label_smoothing", "focal", "soft_f1", "weighted_ce",
               "balanced_sampler", "balanced_softmax", "ldam_drw", "longtail"]
DEFAULT_ROWS = "plain_loop,balanced_softmax,longtail"


def podium_row(experiment: str, depth: int, args: argparse.Namespace, log_dir: Path,
               prior: str = "train") -> dict:
    recipe = [
        f"experiment={experiment}", f"data.root={args.data}", f"model.net.depth={depth}",
        f"trainer.max_epochs={args.epochs}", f"data.batch_size={args.batch_size}",
        f"data.test_prior={prior}", *args.set,
    ]
    if experiment != "longtail":  # the recipes that predate it ran with shifts and flips
        recipe.insert(1, "augment=flip")
    proc, wall = run([sys.executable, "-m", "podium.train", *recipe,
                      f"paths.log_dir={log_dir}", "print_config=false"])
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    run_dir = Path(proc.stdout.split("run folder: ")[1].splitlines()[0])
    scores = oof_scores(run_dir / OOF)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # what the file scores under the uniform prior: the shifted prediction's cross-fitted
    # estimate, or (nothing learned) the plain prediction's
    submitted = metrics.get("oof_score_submitted") if prior == "uniform" else None
    return {**scores, "submission_uniform": submitted or scores["f1_macro_uniform"],
            "prior": prior, "wall_s": round(wall, 1), "run": str(run_dir),
            "command": shown("python -m podium.train " + " ".join(recipe))}


def plain_row(depth: int, args: argparse.Namespace) -> dict:
    command = [sys.executable, str(ROOT / "scripts" / "plain_loop.py"), f"--data={args.data}",
               f"--epochs={args.epochs}", f"--depth={depth}", f"--batch-size={args.batch_size}"]
    proc, wall = run(command)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    keep = ("f1_macro", "balanced_accuracy", "accuracy", "best_epoch", "f1_macro_last")
    return {**{k: result[k] for k in keep}, "wall_s": round(wall, 1),
            "command": shown("python scripts/plain_loop.py " + " ".join(command[2:]))}


def shown(command: str) -> str:
    """A command as run from the repository root (the data folder relative to it)."""
    return command.replace(str(DATA), "../shared/data/cifar10-lt")


def run(command: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env)
    return proc, time.perf_counter() - start


def oof_scores(path: Path) -> dict:
    """Macro-F1, balanced accuracy and accuracy of a run's validation predictions, and
    macro-F1 under the uniform prior (scikit-learn's sample_weight = 1/C / class share)."""
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    oof = pd.read_csv(path, dtype=str)
    classes = list(oof.columns[3:])
    predicted = oof[classes].astype(float).to_numpy().argmax(1)
    truth = oof.iloc[:, 2].map({c: i for i, c in enumerate(classes)}).to_numpy()
    share = np.bincount(truth, minlength=len(classes)) / len(truth)
    weights = (1.0 / len(classes)) / share[truth]
    return {"f1_macro": f1_score(truth, predicted, average="macro"),
            "f1_macro_uniform": f1_score(truth, predicted, average="macro",
                                         sample_weight=weights),
            "balanced_accuracy": balanced_accuracy_score(truth, predicted),
            "accuracy": accuracy_score(truth, predicted)}


def table(results: list[dict]) -> str:
    lines = [
        "# Imbalance recipes on CIFAR-10-LT",
        "",
        "Scored on a stratified 20 % validation split of the long-tailed training set (seed "
        "42; 2,481 images, the tail classes 10 each), by the best epoch's predictions (podium: "
        "best.ckpt by val macro-F1, with the recipe's test-time augmentation; the plain loop: "
        "its best epoch). CifarResNet of the given depth (width 16), batch 128, seed 42, 2 "
        "shared CPU cores (wall times vary with the machine's load). Recipes other than "
        "`longtail` and `plain_loop` ran with their defaults (AdamW lr 3e-3 + cosine) and "
        "`augment=flip`. Commands: `make bench-imbalance` (the depth-8 rows), "
        "`make bench-imbalance ARGS=\"--rows longtail,balanced_sampler --depths 20\"` (the "
        "default network); each row's own command is listed below.",
    ]
    priored = [r for r in results if "prior" in r]
    if priored:
        lines += prior_table(priored)
    for epochs in sorted({r["epochs"] for r in results if "prior" not in r}, reverse=True):
        rows = [r for r in results if r["epochs"] == epochs and "prior" not in r]
        lines += ["", f"## {epochs} epochs", "",
                  "| recipe | depth | val macro-F1 | balanced acc. | accuracy | wall time (s) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for r in sorted(rows, key=lambda r: (r["depth"], -r.get("f1_macro", 0))):
            if "error" in r:
                lines.append(f"| {r['row']} | {r['depth']} | failed: {r['error']} | | | |")
                continue
            lines.append(f"| {r['row']} | {r['depth']} | {100 * r['f1_macro']:.1f} | "
                         f"{100 * r['balanced_accuracy']:.1f} | {100 * r['accuracy']:.1f} | "
                         f"{r['wall_s']:.0f} |")
        commands = [f"- {r['row']} (depth {r['depth']}): `{r['command']}`"
                    for r in rows if r.get("command")]
        if commands:
            lines += ["", "Commands:", "", *commands]
        for note in sorted({r["note"] for r in rows if r.get("note")}):
            lines += ["", f"Rows without a command: {note}."]
    return "\n".join(lines) + "\n"


def prior_table(results: list[dict]) -> list[str]:
    """Rows run under both test priors: each scored on the long-tailed split as it is and
    under the uniform prior (CIFAR-10-LT's balanced test set)."""
    lines = ["", "## Under the test set's prior (CIFAR-10-LT's test set is balanced)", "",
             "Validation macro-F1 of the network's predictions as the split is (long-tailed) "
             "and under the uniform prior (rows weighted to a balanced test set); "
             "\"submission\": the written file's macro-F1 under the uniform prior (with "
             "data.test_prior=uniform its predictions are moved to that prior by Bayes' rule; "
             "cross-fitted where a learned shift is used). The higher \"submission\" wins "
             "on a balanced test set.", "",
             "| recipe | depth | epochs | data.test_prior | val macro-F1 | val macro-F1, uniform "
             "prior | submission, uniform prior | balanced acc. | wall time (s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    ordered = sorted(results, key=lambda r: (r["epochs"], r["depth"],
                                             -r.get("submission_uniform", 0)))
    for r in ordered:
        if "error" in r:
            lines.append(f"| {r['row']} | {r['depth']} | {r['epochs']} | {r['prior']} | "
                         f"failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['row']} | {r['depth']} | {r['epochs']} | {r['prior']} | "
                     f"{100 * r['f1_macro']:.1f} | {100 * r['f1_macro_uniform']:.1f} | "
                     f"{100 * r['submission_uniform']:.1f} | "
                     f"{100 * r['balanced_accuracy']:.1f} | {r['wall_s']:.0f} |")
    lines += ["", "Commands:", "", *[f"- `{r['command']}`" for r in ordered if r.get("command")]]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--depths", default="8", help="comma-separated, e.g. 8,20")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--rows", default=DEFAULT_ROWS,
                        help=f"plain_loop and/or experiments: {','.join(EXPERIMENTS)}")
    parser.add_argument("--priors", default="train,uniform",
                        help="data.test_prior settings each podium row runs under")
    parser.add_argument("--set", nargs="*", default=[], help="extra podium overrides")
    parser.add_argument("--tag", default="", help="appended to the rows' names, e.g. ' tau=1'")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "imbalance.md",
                        help="the table; its rows are kept beside it (.json)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "bench")
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        sys.exit(f"error: {args.data} not found: pass --data <CIFAR-10-LT folder>")

    log_dir = args.log_dir / time.strftime("%Y-%m-%d_%H-%M-%S")
    results_file = args.out.with_suffix(".json")  # benchmarks/imbalance.json by default
    results = json.loads(results_file.read_text()) if results_file.is_file() else []
    for depth in map(int, args.depths.split(",")):
        for row in args.rows.split(","):
            for prior in ([None] if row == "plain_loop" else args.priors.split(",")):
                result = (plain_row(depth, args) if row == "plain_loop"
                          else podium_row(row, depth, args, log_dir, prior))
                result = {"row": row + args.tag, "depth": depth, "epochs": args.epochs,
                          **result}
                print(json.dumps(result), flush=True)
                key = (result["row"], depth, args.epochs, result.get("prior"))
                results = [r for r in results
                           if (r["row"], r["depth"], r["epochs"], r.get("prior")) != key]
                results.append(result)
                results_file.write_text(json.dumps(results, indent=1) + "\n")
    args.out.write_text(table(results))
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
