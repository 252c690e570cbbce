"""User-fixable problems, reported as one line instead of a traceback."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any

log = logging.getLogger(__name__)


class PodiumError(Exception):
    """A problem the user can fix (bad data, bad config): printed as one line, exit code 2."""


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def one_line_errors(entry: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PodiumError raised by an entry point into `error: ...` on stderr and exit 2.

    The full traceback still goes to the run's log file (Hydra's file handler) so nothing
    is hidden, but the terminal shows the one line that says what to fix. In a multirun
    (cross-validation folds, sweeps) any failure of one job is recorded in its folder as
    `failed.txt` and the other jobs go on.
    """

    @wraps(entry)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return entry(*args, **kwargs)
        except PodiumError as err:
            if in_multirun():
                return record_failure(err)
            log.info("podium error", exc_info=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)
        except Exception as err:
            if in_multirun():
                return record_failure(err)
            raise

    return wrapper


def record_failure(err: Exception) -> float:
    """Keep a multirun going: note the failure beside the job's outputs, return NaN."""
    from pathlib import Path

    from hydra.core.hydra_config import HydraConfig

    output_dir = Path(HydraConfig.get().runtime.output_dir)
    log.info("job failed", exc_info=True)
    (output_dir / "failed.txt").write_text(f"{type(err).__name__}: {err}\n")
    print(f"error: job in {output_dir} failed: {err} (the other jobs go on)",
          file=sys.stderr, flush=True)
    return float("nan")
