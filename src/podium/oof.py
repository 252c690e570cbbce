"""Out-of-fold evidence: the predictions every ensemble step is proven on.

A step (test-time augmentation, post-processing, a decision threshold) reaches the
submission only when it does not lower the competition's metric (`metric.competition`) on
the validation split (a run) or on the members' combined OOF predictions (an ensemble).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def combine_oof(frames: Sequence[pd.DataFrame | None], id_col: str, target_col: str
                ) -> pd.DataFrame | None:
    """The members' OOF rows; an id predicted by several members gets their mean."""
    frames = [f for f in frames if f is not None]
    if not frames:
        return None
    oof = pd.concat(frames, ignore_index=True).drop(columns=["fold"], errors="ignore")
    return oof.groupby([id_col, target_col], sort=False, dropna=False).mean().reset_index()

def oof_scores(oof: pd.DataFrame, class_names: Sequence[str], target_col: str,
               task: str = "multiclass", k: int = 3) -> dict[str, float]:
    """Every validation metric of the task, computed once over all OOF predictions."""
    import torch

    from podium.metrics import task_metrics

    probs = torch.tensor(oof[list(class_names)].to_numpy(dtype=np.float32))
    if task == "multilabel":  # the label column holds space-separated sets
        from pathlib import Path

        from podium.labels import multi_hot, split_label_set

        sets = [split_label_set(cell) for cell in oof[target_col]]
        target = torch.from_numpy(multi_hot(sets, [str(c) for c in class_names],
                                            Path("oof.csv"), target_col)[0])
    elif task == "regression":
        target = torch.tensor(oof[target_col].astype(float).to_numpy(dtype=np.float32))
        probs = probs[:, 0]
    else:
        index = {str(name): i for i, name in enumerate(class_names)}
        target = torch.tensor(oof[target_col].astype(str).map(index).to_numpy())
    metrics = task_metrics(task, len(class_names), k).clone(prefix="oof/")
    return {key: float(v) for key, v in metrics(probs, target).items()}

def better(after: float, before: float, metric: str) -> bool:
    """`after` is no worse than `before` for `metric` (min for losses and errors)."""
    from podium.metrics import infer_mode

    return after <= before if infer_mode(metric) == "min" else after >= before

def validation_tta_check(module, datamodule, metric: str, k: int, force: bool) -> dict:
    """A training run's TTA, proven on its validation split: the best checkpoint's validation
    predictions with and without the views, scored by the competition's metric. The views
    are dropped from `module` when they lower it (unless `force`)."""
    import lightning as L
    import torch

    from podium.metrics import task_metrics

    spec = module.spec
    trainer = L.Trainer(accelerator="auto", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    views, scores = module.tta, []
    targets = torch.cat([t for _, t in datamodule.val_dataloader()])
    for tta in ([], views):
        module.tta = tta
        probs = torch.cat(trainer.predict(module, dataloaders=datamodule.val_dataloader()))
        probs = probs[:, 0] if spec.task == "regression" else probs
        values = task_metrics(spec.task, len(spec.class_names), k)(probs, targets)
        scores.append(float(values[metric]))
    helps = better(scores[1], scores[0], metric)
    module.tta = views if helps or force else []
    report = {"used": bool(module.tta), "before": scores[0], "after": scores[1],
              "metric": metric}
    if not helps:
        report["warning"] = (f"tta lowers the validation {metric} ({scores[0]:.4f} -> "
                             f"{scores[1]:.4f}): " + ("applied anyway (force=true)" if force
                                                      else "left out (force=true applies it)"))
    return report

def tta_check(members: list, plain: list, with_tta: list, force: bool) -> dict:
    """Score the ensemble's OOF with and without the TTA views by the competition's metric."""
    cfg = members[0].cfg
    data, metric = cfg.data, cfg.metric.competition
    scores = []
    for predictions in (plain, with_tta):
        oof = combine_oof([o for _, o in predictions], data.id_col, data.target_col)
        if oof is None:
            return {"tta": {"used": force}, "warnings": [
                "tta not checked: the runs have no validation predictions"
                + ("" if force else "; left out (force=true applies it anyway)")]}
        names = list(predictions[0][0].columns[1:])
        scores.append(oof_scores(oof, names, data.target_col, data.get("task", "multiclass"),
                                 cfg.metric.k)[f"oof/{metric}"])
    helps = better(scores[1], scores[0], metric)
    report = {"tta": {"used": helps or force, "before": scores[0], "after": scores[1],
                      "metric": metric}}
    if not helps:
        report["warnings"] = [f"tta lowers the OOF {metric} ({scores[0]:.4f} -> "
                              f"{scores[1]:.4f}): " + ("applied anyway (force=true)" if force
                                                       else "left out (force=true applies it)")]
    return report
