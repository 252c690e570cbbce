"""`make bench-finetune`: a network trained from scratch against ImageNet weights fine-tuned
(experiment=finetune), on the demo and on CIFAR-10-LT, validation under the test prior.

Each dataset gets two rows, run through the real CLI (`python -m podium.train ...`) with the
same split, seed and `data.test_prior=uniform` (both test sets are balanced):
  scratch     the demo: the default `make train` (baseline: ResNet-20); CIFAR-10-LT:
              experiment=longtail (ResNet-20, SGD one-cycle, logit-adjusted loss, flips)
  pretrained  experiment=finetune (EfficientNet-Lite0 from the `pretrained` extra, 64 px;
              CIFAR-10-LT: with flips and flipped TTA, as natural images take them)
Each row reports validation macro-F1 under the uniform prior (the run's oof.csv, rows
weighted 1/C / class share: scikit-learn's sample_weight), as the long-tailed split is, the
demo's leaderboard macro-F1 (its answer key), epochs and wall time. `--epochs N` gives both
rows the same epochs (default: each recipe's own). Rows are kept in benchmarks/finetune.json
by (dataset, row, command): each road tried (`--set-pretrained data.image_size=96 ...`)
keeps its row, with its overrides; benchmarks/finetune.md is written from all of them. Prints JSON.
Wall times depend on what else runs on the machine: say so beside them.

    python scripts/bench_finetune.py [--datasets demo,cifar10-lt] [--rows scratch,pretrained]
        [--epochs N] [--set key=value ...] [--set-pretrained key=value ...]
        [--out benchmarks/finetune.md]

`--speed 32,64,96` instead times one training step of the pretrained network alone
(EfficientNet-Lite0, batch 32, AdamW) at each input size: contiguous, channels_last, and
channels_last under bf16 autocast, in images per second, and its eval forward pass (what a
cached frozen feature costs). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_imbalance import oof_scores, run

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"demo": ROOT / "data" / "demo",
            "cifar10-lt": ROOT.parent / "shared" / "data" / "cifar10-lt"}
RECIPES = {  # dataset -> row -> overrides
    "demo": {"scratch": ["experiment=baseline"], "pretrained": ["experiment=finetune"]},
    "cifar10-lt": {"scratch": ["experiment=longtail"],
                   "pretrained": ["experiment=finetune", "augment=flip", "tta=hflip"]},
}


def bench_row(dataset: str, row: str, root: Path, args: argparse.Namespace, log_dir: Path
              ) -> dict:
    recipe = [*RECIPES[dataset][row], f"data.root={root}", "data.test_prior=uniform",
              *([f"trainer.max_epochs={args.epochs}"] if args.epochs else []), *args.set,
              *getattr(args, f"set_{row}")]
    if dataset == "demo":
        recipe.append(f"data.demo_root={root}")
    proc, wall = run([sys.executable, "-m", "podium.train", *recipe, f"paths.log_dir={log_dir}",
                      "print_config=false"])
    if proc.returncode != 0:
        lines = [x for x in proc.stderr.strip().splitlines() if "HYDRA_FULL_ERROR" not in x]
        return {"error": (lines or ["?"])[-1]}
    run_dir = Path(proc.stdout.split("run folder: ")[1].splitlines()[0])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    scores = oof_scores(run_dir / "oof.csv")
    return {"val_f1_macro_uniform": round(scores["f1_macro_uniform"], 4),
            "val_f1_macro": round(scores["f1_macro"], 4),
            "leaderboard_f1_macro": metrics.get("leaderboard/f1_macro"),
            "epochs": metrics.get("epochs"), "best_epoch": metrics.get("best_epoch"),
            "wall_s": round(wall, 1), "run": relative(str(run_dir)),
            "road": " ".join([*args.set, *getattr(args, f"set_{row}")]),
            "command": "python -m podium.train " + relative(" ".join(recipe))}


def relative(text: str) -> str:
    """Paths of this checkout and its neighbours (../shared) as a clone elsewhere has them."""
    return text.replace(str(ROOT) + "/", "").replace(str(ROOT.parent) + "/", "../")


def road(result: dict) -> str:
    """The row's overrides beyond its recipe (`--set`, `--set-<row>`), as code."""
    return f"`{result['road']}`" if result.get("road") else ""


def table(results: list[dict]) -> str:
    lines = ["# Scratch vs pretrained (experiment=finetune)", "",
             "Validation macro-F1 of the best checkpoint under the uniform test prior "
             "(`data.test_prior=uniform`; the long-tailed split's rows weighted to a balanced "
             "test set), as the split is, the demo's leaderboard macro-F1, epochs run and wall "
             "time on 2 CPU cores (each run alone unless its note says otherwise: compare times "
             "only between rows run alone). `make bench-finetune`; each row's command below.", "",
             "| dataset | row | overrides | epochs | val macro-F1, uniform prior | val macro-F1 | "
             "leaderboard macro-F1 | wall (min) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['row']} | {road(r)} | | failed: {r['error']} "
                         "| | | |")
            continue
        board = r.get("leaderboard_f1_macro")
        lines.append(f"| {r['dataset']} | {r['row']} | {road(r)} | {r['epochs']} | "
                     f"{100 * r['val_f1_macro_uniform']:.1f} | {100 * r['val_f1_macro']:.1f} | "
                     f"{'' if board is None else f'{100 * board:.1f}'} | "
                     f"{r['wall_s'] / 60:.1f} |")
    lines += ["", "Commands:", "", *[f"- {r['dataset']} {r['row']}: `{r['command']}`"
                                     for r in results if r.get("command")]]
    notes = [f"- {r['dataset']} {r['row']}: {r['note']}" for r in results if r.get("note")]
    lines += ["", "Notes:", "", *notes] if notes else []
    return "\n".join(lines) + "\n"


def step_speed(sizes: list[int], model_name: str = "tf_efficientnet_lite0", batch: int = 32,
               repeats: int = 4) -> list[dict]:
    """Images per second of a training step (and of an eval forward pass) of `model_name`
    on this machine's threads, per input size and memory format / autocast."""
    import timm
    import torch

    def images_per_second(size: int, channels_last: bool, bf16: bool, train: bool) -> float:
        net = timm.create_model(model_name, num_classes=10).train(train)
        x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
        if channels_last:
            net, x = net.to(memory_format=torch.channels_last), x.contiguous(
                memory_format=torch.channels_last)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), \
                    torch.set_grad_enabled(train):
                logits = net(x)
            if train:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(logits.float(), y).backward()
                optimizer.step()

        step()  # warm-up: allocations, kernel choice
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        return round(batch * repeats / (time.perf_counter() - start), 1)

    rows = []
    for size in sizes:
        row = {"size": size, "threads": torch.get_num_threads(),
               "train_contiguous": images_per_second(size, False, False, True),
               "train_channels_last": images_per_second(size, True, False, True),
               "train_channels_last_bf16": images_per_second(size, True, True, True),
               "eval_channels_last": images_per_second(size, True, False, False)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="demo,cifar10-lt")
    parser.add_argument("--rows", default="scratch,pretrained")
    parser.add_argument("--epochs", type=int, default=None, help="default: each recipe's own")
    parser.add_argument("--demo", type=Path, default=DATASETS["demo"], help="the demo folder")
    parser.add_argument("--cifar", type=Path, default=DATASETS["cifar10-lt"])
    parser.add_argument("--set", nargs="*", default=[], help="extra podium overrides")
    parser.add_argument("--set-scratch", nargs="*", default=[], help="the scratch row's only")
    parser.add_argument("--set-pretrained", nargs="*", default=[],
                        help="the pretrained row's only")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "finetune.md",
                        help="the table; its rows are kept beside it (.json)")
    parser.add_argument("--log-dir", type=Path, default=ROOT / "logs" / "bench")
    parser.add_argument("--speed", default=None,
                        help="input sizes (32,64,96): time the network's step alone instead")
    parser.add_argument("--repeats", type=int, default=4, help="--speed: steps timed per cell")
    args = parser.parse_args()
    if args.speed:
        step_speed([int(x) for x in args.speed.split(",")], repeats=args.repeats)
        return
    roots = {"demo": args.demo, "cifar10-lt": args.cifar}

    log_dir = args.log_dir / time.strftime("%Y-%m-%d_%H-%M-%S")
    results_file = args.out.with_suffix(".json")
    results = json.loads(results_file.read_text()) if results_file.is_file() else []
    for dataset in args.datasets.split(","):
        root = roots[dataset]
        if dataset != "demo" and not (root / "train.csv").exists():
            print(f"skipping {dataset}: {root} not found", file=sys.stderr)
            continue
        for row in args.rows.split(","):
            result = {"dataset": dataset, "row": row, "date": time.strftime("%Y-%m-%d"),
                      **bench_row(dataset, row, root, args, log_dir)}
            print(json.dumps(result), flush=True)
            key = (dataset, row, result.get("command"))  # a road run again replaces its row
            results = [r for r in results
                       if (r["dataset"], r["row"], r.get("command")) != key] + [result]
            results_file.write_text(json.dumps(results, indent=1) + "\n")
    args.out.write_text(table(results))
    print(f"table: {args.out}")


if __name__ == "__main__":
    main()
