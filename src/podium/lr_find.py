"""`python -m podium.lr_find [overrides]`: Lightning's learning-rate range test.

Trains `lr_find.num_training` steps with the lr growing from `lr_find.min_lr` to
`lr_find.max_lr`, prints the suggested lr (the steepest descent of the loss) and saves the
loss-vs-lr plot as `lr_find.png` in the run folder (`logs/lr_find/<experiment>/<time>/`).
The scheduler is off and every parameter group gets the same lr during the search, so the
suggestion is for `optimizer.lr` (the head's lr under `model.backbone_lr_mult`).
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, open_dict

from podium.build import build_run
from podium.config import CONFIG_DIR, resolve_defaults
from podium.errors import one_line_errors


def find_lr(cfg: DictConfig) -> float | None:
    """Run the range test; returns the suggested lr (None when too few steps ran)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    from lightning.pytorch.tuner import Tuner

    resolve_defaults(cfg, announce=True)
    with open_dict(cfg):
        cfg.scheduler = None  # the finder replaces it anyway; no warm-up length checks
        cfg.callbacks, cfg.logger = {}, {}  # nothing written but the plot
    datamodule, module, trainer = build_run(cfg, enable_checkpointing=False)
    finder = Tuner(trainer).lr_find(module, datamodule=datamodule, update_attr=False,
                                    **cfg.lr_find)
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    suggestion = finder.suggestion()
    figure = finder.plot(suggest=suggestion is not None)
    figure.savefig(output_dir / "lr_find.png", dpi=120)
    print(f"run folder: {output_dir}")
    if suggestion is None:
        print("suggested lr: none (too few steps ran; raise lr_find.num_training or "
              "trainer.max_epochs)")
    else:
        print(f"suggested lr: {suggestion:.3g} (set optimizer.lr={suggestion:.3g})")
    return suggestion


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="lr_find")
@one_line_errors
def main(cfg: DictConfig) -> float | None:
    return find_lr(cfg)


if __name__ == "__main__":
    main()
