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


def one_line_errors(entry: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a PodiumError raised by an entry point into `error: ...` on stderr and exit 2.

    The full traceback still goes to the run's log file (Hydra's file handler) so nothing
    is hidden, but the terminal shows the one line that says what to fix.
    """

    @wraps(entry)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return entry(*args, **kwargs)
        except PodiumError as err:
            log.debug("podium error", exc_info=True)
            print(f"error: {err}", file=sys.stderr, flush=True)
            sys.exit(2)

    return wrapper
