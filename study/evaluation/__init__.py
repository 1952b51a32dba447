"""After tuning, the only readers of the test split: test-split scoring, confirmation runs and
their Ray tasks, inference, Grad-CAM, cross-style scores and `python -m study.evaluate`."""
