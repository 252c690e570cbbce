"""`python -m podium.submit runs=[dir,...]`: average runs' test probabilities into one submission.

A run is a training run folder or a cross-validation folder (all its folds); see
podium.ensemble. The class probabilities are averaged (optionally weighted), optionally
post-processed with what the runs' out-of-fold predictions teach
(`postprocess=f1_offsets|logit_adjust`), and written as a validated `submission.csv` with
the averaged `test_probs.csv` into a new `logs/submit/...` folder.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from podium.config import CONFIG_DIR
from podium.errors import one_line_errors


def submit(cfg: DictConfig) -> dict:
    """Average the given runs (default: the latest) and write the submission; returns the
    summary written to metrics.json."""
    from hydra.utils import instantiate

    from podium.ensemble import gather_members, latest_run, submit_members
    from podium.io import write_json

    given = [Path(r) for r in cfg.runs] or [latest_run(Path(cfg.paths.log_dir))]
    members = gather_members(given, cfg.paths, cfg.weights)
    tta = [instantiate(t) for t in cfg.get("tta") or []]
    output_dir = Path(cfg.paths.output_dir)
    summary = submit_members(members, output_dir, cfg.submission.format,
                             instantiate(cfg.get("postprocess")), tta, cfg.force)
    write_json(output_dir / "metrics.json", summary)
    return summary


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="submit")
@one_line_errors
def main(cfg: DictConfig) -> None:
    from podium.ensemble import print_summary

    print_summary(submit(cfg))


if __name__ == "__main__":
    main()
