"""`make bench-imbalance`: every imbalance recipe on CIFAR-10-LT at one fixed CPU budget.

Each experiment in conf/experiment/ is trained through the real CLI
(`python -m podium.train experiment=<name> ...`) with the same model, epochs, batch size,
data split and seed, and scored on the same stratified validation split (20 % of the
long-tailed training set, seed 42; the best epoch by val macro-F1, as a run would submit).
Writes benchmarks/imbalance.md and prints the results as JSON.

    python scripts/bench_imbalance.py [--epochs 10] [--depth 8] [--only focal,baseline]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cifar10-lt"
EXPERIMENTS = ["baseline", "label_smoothing", "focal", "soft_f1", "weighted_ce",
               "balanced_sampler", "balanced_softmax", "ldam_drw"]


def run(experiment: str, args: argparse.Namespace, log_dir: Path) -> dict:
    overrides = [
        f"experiment={experiment}", f"data.root={args.data}", "augment=flip",
        f"model.net.depth={args.depth}", f"trainer.max_epochs={args.epochs}",
        f"data.batch_size={args.batch_size}", f"paths.log_dir={log_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "podium.train", *overrides], cwd=ROOT,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"experiment": experiment, "error": proc.stderr.strip().splitlines()[-1]}
    run_dir = Path(proc.stdout.split("run folder: ")[1].splitlines()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "experiment": experiment,
        "f1_macro": metrics["val/f1_macro"],
        "balanced_accuracy": metrics["val/recall_macro"],  # macro recall
        "accuracy": metrics["val/acc"],
        "wall_s": round(wall, 1),
        "run": str(run_dir),
    }


def table(results: list[dict], args: argparse.Namespace) -> str:
    base = next((r for r in results if r["experiment"] == "baseline" and "f1_macro" in r), None)
    lines = [
        "# Imbalance recipes on CIFAR-10-LT",
        "",
        f"Budget: CifarResNet-{args.depth} (width 16), {args.epochs} epochs, batch "
        f"{args.batch_size}, AdamW lr 3e-3 + cosine, augment=flip, seed 42, 2 CPU cores. "
        "Scored on a stratified 20 % validation split of the long-tailed training set "
        "(best epoch by val macro-F1). Command: `make bench-imbalance`.",
        "",
        "| experiment | val macro-F1 | vs baseline | balanced acc. | accuracy | wall time (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['experiment']} | failed: {r['error']} | | | | |")
            continue
        delta = f"{100 * (r['f1_macro'] - base['f1_macro']):+.1f}" if base else ""
        lines.append(f"| {r['experiment']} | {100 * r['f1_macro']:.1f} | {delta} | "
                     f"{100 * r['balanced_accuracy']:.1f} | {100 * r['accuracy']:.1f} | "
                     f"{r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--only", default=",".join(EXPERIMENTS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "imbalance.md")
    args = parser.parse_args()
    if not (args.data / "train.csv").exists():
        sys.exit(f"error: {args.data} not found: pass --data <CIFAR-10-LT folder>")

    log_dir = ROOT / "logs" / "bench" / time.strftime("%Y-%m-%d_%H-%M-%S")
    results = []
    for experiment in args.only.split(","):
        results.append(run(experiment, args, log_dir))
        print(json.dumps(results[-1]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table(results, args))
    print(json.dumps({"results": results, "table": str(args.out)}, indent=2))


if __name__ == "__main__":
    main()
