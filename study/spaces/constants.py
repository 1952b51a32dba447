"""Keys every trial's config carries besides its hyperparameters (threads, seeds, the settings a
trial reads), fixed by the run, never searched.
"""

from __future__ import annotations

from typing import Any

from study.spaces.settings import SpaceSettings

# settings every trial's config holds (`trial_constants`): the data is decoded, ASHA stops and
# trials.parquet records by them, so a space's config may not carry its own value of one
SETTINGS_IN_CONFIG = ("max_epochs", "image_size", "metric", "mode")


# from --cpus-per-trial: torch threads per trial
THREADS = "num_threads"


RUN_CONSTANTS = (*SETTINGS_IN_CONFIG, THREADS)  # every key `trial_constants` returns


def trial_constants(settings: SpaceSettings, cpus_per_trial: float) -> dict[str, Any]:
    """What every trial's config holds besides the space's suggestions; they win over the space's
    config (study.tuning.searcher), and a space that returns one of them fails
    `check_space_builds`."""
    return {
        **{key: getattr(settings, key) for key in SETTINGS_IN_CONFIG},
        THREADS: max(1, int(cpus_per_trial)),
    }
