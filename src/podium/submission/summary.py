"""What an ensemble wrote and why: the `Summary` every entry point prints and saves.

Each learned step of the chain (podium.submission.steps) reports `before` and
`after_cross_fitted` (the chain without / with it, fitted on k-1 parts of the OOF rows and
scored on the k-th), `after_in_sample` (optimistic by construction), `se` (the bootstrap
standard error of the paired difference) and `used` (the gain beats 1.645 standard errors:
steps.KEEP_SE).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Summary:
    """What an ensemble wrote and why: members, OOF scores, every step's report.

    `oof` holds every metric of the probabilities the file is made of, the OOF rows'
    cross-fitted through the whole chain; `oof_score` is the competition's among them,
    `oof_score_submitted` the chain's cross-fitted score of what the file holds (labels
    after a learned cut): the honest estimate stored in metrics.json."""

    runs: list[str]
    weights: list[float]
    metric: str                      # metric.competition
    mode: str                        # its direction: max | min
    submission: str = ""
    format: dict = field(default_factory=dict)       # name, why
    oof: dict[str, float] = field(default_factory=dict)  # oof/<metric>: every metric
    tta: dict | None = None          # the chain's steps (podium.submission.steps): tta views,
    blend: dict | None = None        # blend weights (weights=auto),
    postprocess: dict | None = None  # logit_adjust / f1_offsets / multi-label thresholds,
    threshold: dict | None = None    # the binary cut: before, after_cross_fitted, se, used
    leaderboard: dict[str, float] = field(default_factory=dict)  # demos only
    warnings: list[str] = field(default_factory=list)
    test_prior: dict | None = None   # setting, prior, train_prior, estimated, total_variation
    oof_se: float | None = None      # bootstrap standard error of oof_score
    oof_rows: int = 0
    score_prior: dict | None = None  # the prior its test_probs.csv and oof.csv carry
    submitted: float | None = None   # the chain's cross-fitted score (None: no OOF rows)

    @property
    def oof_score(self) -> float | None:
        """The OOF score of the competition's metric of the probabilities the file is made
        of (moved to data.test_prior when one is set; cross-fitted through the chain)."""
        return self.oof.get(f"oof/{self.metric}")

    @property
    def oof_score_submitted(self) -> float | None:
        """The chain's cross-fitted score of what the file holds, on the OOF rows."""
        return self.submitted if self.submitted is not None else self.oof_score

    def to_dict(self) -> dict:
        """metrics.json's fields (leaderboard scores at the top level, as every run's)."""
        data = asdict(self)
        data.pop("submitted")
        data.update(data.pop("leaderboard"), oof_score=self.oof_score,
                    oof_score_submitted=self.oof_score_submitted)
        return {k: v for k, v in data.items() if v is not None}

    def lines(self) -> list[str]:
        """What an entry point prints: members and weights, every check with its score
        before and after (learned steps: in-sample and cross-fitted, and whether used), the
        OOF scores, the format, the leaderboard (demos) and where the file is."""
        from podium.submission.leaderboard import leaderboard_lines

        lines = [f"member {r}: weight {w:.3f}" for r, w in zip(self.runs, self.weights,
                                                               strict=True)]
        if self.test_prior:
            lines.append(prior_line(self.test_prior))
        if self.blend and "weights" in self.blend:
            lines.append(blend_line(self.blend))
        for step in (self.tta, self.blend, self.postprocess, self.threshold):
            if step and "before" in step:
                lines.append(step_line(step))
        lines += [f"warning: {w}" for w in self.warnings]
        if self.oof_score is not None:
            spread = (f" (± {self.oof_se:.4f}: bootstrap standard error of the "
                      f"{self.oof_rows} rows)" if self.oof_se is not None else "")
            lines.append(f"OOF {self.metric} (metric.competition): {self.oof_score:.4f}{spread}")
        if self.submitted is not None and self.submitted != self.oof_score:
            lines.append(f"OOF {self.metric} of the submission (the chain cross-fitted): "
                         f"{self.submitted:.4f}")
        lines.append(f"submission format: {self.format['name']} ({self.format['why']})")
        lines += leaderboard_lines(self.leaderboard)
        lines.append(f"submission: {self.submission}")
        return lines


def step_line(step: dict) -> str:
    """`threshold 0.4971: OOF acc 0.8303 -> 0.8290 cross-fitted (the OOF's 5 folds; ±
    0.0040; 0.8317 in-sample) -> not used`."""
    at = f" {step['threshold']:.4f}" if "threshold" in step else ""
    return (f"{step['name']}{at}: OOF {step['metric']} {step['before']:.4f} -> "
            f"{step['after_cross_fitted']:.4f} cross-fitted ({step['cross_fitted_on']}; "
            f"± {step['se']:.4f}; {step['after_in_sample']:.4f} in-sample) -> "
            f"{'used' if step['used'] else 'not used'}")


def blend_line(blend: dict) -> str:
    """`weights: logs/cv/a 0.700, logs/gbdt/b 0.300 (learned)`."""
    weights = ", ".join(f"{name} {w:.3f}" for name, w in blend["weights"].items())
    how = "learned" if blend.get("used") else "given"
    return f"weights: {weights} ({how})"


def prior_line(report: dict) -> str:
    """`test prior uniform: a 0.500, b 0.500 (training prior: a 0.900, b 0.100; EM estimate
    from the test predictions: a 0.480, b 0.520, total variation 0.02)`; under `train`, the
    training prior once."""
    from podium.prior import describe

    names = list(report["train_prior"])
    show = lambda key: describe(list(report[key].values()), names)  # noqa: E731
    line = (f"test prior train (the training data's): {show('train_prior')} ("
            if report["setting"] == "train" else
            f"test prior {report['setting']}: {show('prior')} (training prior: "
            f"{show('train_prior')}; ")
    return line + (f"EM estimate from the test predictions: {show('estimated')}, total "
                   f"variation {report['total_variation']:.2f})")


def not_used_line(report: dict) -> str | None:
    """A one-line warning for a learned step the chain left out."""
    if report.get("used") or "before" not in report:
        return None if report.get("used") else \
            f"{report['name']} not used: {report['cross_fitted_on']}"
    from podium.model.metrics import infer_mode
    from podium.submission.steps import KEEP_SE

    gain = report["after_cross_fitted"] - report["before"]
    gain = -gain if infer_mode(report["metric"]) == "min" else gain
    return (f"{report['name']} not used: cross-fitted OOF {report['metric']} "
            f"{report['before']:.4f} -> {report['after_cross_fitted']:.4f}, a gain of "
            f"{gain:+.4f}, not above {KEEP_SE} standard errors ({report['se']:.4f} each)")
