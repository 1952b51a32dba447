"""One trial, torch only and never Ray: its config, steps, batches, checkpoints and the loop that
trains it (`trial.run_trial`), plus fixed-epoch fits and warm starts."""
