"""podium's Optuna sweeper under the name Hydra accepts.

Hydra instantiates a sweeper only if its class lives in the `hydra_plugins` package (see
hydra.core.plugins); the code is in podium.sweep.sweeper. Hydra imports this module whenever it
starts, so it must stay light (no optuna, torch or lightning at import).
"""

from podium.sweep import sweeper


class OptunaSweeper(sweeper.OptunaSweeper):
    """`hydra.sweeper._target_: hydra_plugins.podium_sweeper.OptunaSweeper`"""
