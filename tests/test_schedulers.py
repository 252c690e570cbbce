"""Every scheduler option: the LR logged at each optimizer step of a real fit equals the
closed form computed here, with and without gradient accumulation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from tiny_fit import TRAIN_BATCHES, FakeMetric, fit, logged_lrs, one_thread  # noqa: F401

from conftest import make_cfg, run_cli
from podium.errors import PodiumError

EPOCHS = 3


def expected_lr(name: str, base: float, step: int, steps_per_epoch: int) -> float:
    """Closed forms, written from the schedules' definitions (not from torch's code)."""
    epoch, total = step // steps_per_epoch, EPOCHS * steps_per_epoch
    if name == "none":
        return base
    if name == "step":  # step_size=2, gamma=0.5 (overridden below)
        return base * 0.5 ** (epoch // 2)
    if name == "cosine":  # per epoch, T_max = max_epochs, eta_min = 0
        return base * (1 + math.cos(math.pi * epoch / EPOCHS)) / 2
    if name == "warmup_cosine":  # 2 warm-up steps from 0.1 x base, then cosine to 0
        warmup = 2
        if step < warmup:
            return base * (0.1 + 0.9 * step / warmup)
        return base * (1 + math.cos(math.pi * (step - warmup) / (total - warmup))) / 2
    if name == "onecycle":  # pct_start 0.3, div 25, final_div 1e4, cosine annealing
        start, low = base / 25, base / 25 / 1e4
        peak = 0.3 * total - 1  # the step at which the lr reaches base

        def cos_between(a: float, b: float, frac: float) -> float:
            return b + (a - b) * (1 + math.cos(math.pi * frac)) / 2

        if step <= peak:
            return cos_between(start, base, step / peak)
        return cos_between(base, low, (step - peak) / (total - 1 - peak))
    raise ValueError(name)


OVERRIDES = {
    "none": [],
    "step": ["scheduler.scheduler.step_size=2", "scheduler.scheduler.gamma=0.5"],
    "cosine": [],
    "warmup_cosine": ["scheduler.scheduler.warmup_steps=2", "scheduler.scheduler.start_factor=0.1"],
    "onecycle": [],
}
CASES = [(name, acc) for name in OVERRIDES for acc in (1, 4)]


@pytest.mark.parametrize(("name", "accumulate"), CASES, ids=[f"{n}-acc{a}" for n, a in CASES])
def test_logged_lr_follows_the_closed_form(name, accumulate, tmp_path, demo_root):
    _, trainer, _, _ = fit(tmp_path, demo_root, [
        f"scheduler={name}", *OVERRIDES[name], f"trainer.max_epochs={EPOCHS}",
        f"trainer.accumulate_grad_batches={accumulate}", "optimizer.no_decay_norm_bias=false",
    ])
    steps_per_epoch = math.ceil(TRAIN_BATCHES / accumulate)
    assert trainer.global_step == EPOCHS * steps_per_epoch
    lrs = logged_lrs(tmp_path / "run")
    assert list(lrs.index) == list(range(EPOCHS * steps_per_epoch))
    base = 3e-3  # conf/optimizer/adamw.yaml
    for step, row in lrs.iterrows():
        assert row.to_numpy() == pytest.approx(
            expected_lr(name, base, step, steps_per_epoch), rel=1e-6, abs=1e-12
        ), f"step {step}"


def test_plateau_reduces_after_patience_epochs_without_improvement(tmp_path, demo_root):
    # patience 1: reduce when 2 epochs in a row fail to improve on the best value.
    values = [1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    # epoch 0 best; 1 bad; 2 improves (counter reset); 3 bad; 4 bad -> halve for epoch 5;
    # 5 bad; 6 bad -> halve again for epoch 7.
    expected = [1, 1, 1, 1, 1, 0.5, 0.5, 0.25]
    _, trainer, _, _ = fit(tmp_path, demo_root, [
        "scheduler=plateau", "scheduler.monitor=val/fake", "scheduler.scheduler.mode=min",
        "scheduler.scheduler.patience=1",
        "scheduler.scheduler.factor=0.5", f"trainer.max_epochs={len(values)}",
        "++trainer.limit_train_batches=1",
    ], callbacks=[FakeMetric(values)])
    lrs = logged_lrs(tmp_path / "run")
    assert list(lrs.iloc[:, 0] / 3e-3) == pytest.approx(expected)


@pytest.mark.parametrize(("warmup", "total", "steps"), [(0.1, 1085, 108), (0.25, 20, 5),
                                                       (0.01, 20, 1)])
def test_a_warmup_below_one_is_a_fraction_of_the_run(warmup, total, steps):
    import torch

    from podium.model.optim import warmup_cosine

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=warmup, total_steps=total)
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == pytest.approx(0.01) and lrs[steps] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:steps], lrs[1:steps + 1], strict=True))
    assert lrs[steps + 1] < 1.0  # the cosine from there


def test_plateau_watches_metric_monitor_by_default(tmp_path):
    from podium.model.metrics import resolve_metric

    cfg = resolve_metric(make_cfg(tmp_path, ["scheduler=plateau"]))
    assert cfg.scheduler.monitor == "val/f1_macro" and cfg.scheduler.scheduler.mode == "max"
    cfg = resolve_metric(make_cfg(tmp_path, ["scheduler=plateau", "scheduler.monitor=val/loss"]))
    assert cfg.scheduler.scheduler.mode == "min"


def test_warmup_longer_than_the_run_is_one_line(tmp_path, demo_root):
    # 2 epochs x ceil(5 / 4) = 4 optimizer steps.
    with pytest.raises(PodiumError, match=r"warmup_steps=5 is more than the run's 4 optimizer"):
        fit(tmp_path, demo_root, ["scheduler=warmup_cosine", "scheduler.scheduler.warmup_steps=5",
                                  "trainer.max_epochs=2", "trainer.accumulate_grad_batches=4"])


def test_unknown_plateau_monitor_fails_at_first_validation_listing_keys(tmp_path, demo_root,
                                                                        monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    proc = run_cli("podium.train", "scheduler=plateau", "scheduler.monitor=val/nope",
                   "debug=limit", "model.net.depth=8", f"data.root={demo_root}",
                   f"data.demo_root={demo_root}", f"paths.log_dir={tmp_path / 'logs'}",
                   check=False)
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "Traceback" not in proc.stderr
    assert last.startswith("error: scheduler.monitor=val/nope was never logged")
    assert "val/loss" in last and "val/f1_macro" in last
    # It stopped after the first epoch's validation: no metrics of a second epoch.
    frame = pd.read_csv(next((tmp_path / "logs").rglob("metrics.csv")))
    assert frame["val/loss"].notna().any() and set(frame.epoch.dropna()) == {0}
