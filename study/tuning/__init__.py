"""Ray Tune and Optuna: the tuner, the searcher, the schedulers registry, Optuna's storage, the
trainable adapter, what each trial is handed, and the result callbacks (tables, console, live
report)."""
