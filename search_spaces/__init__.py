"""One define-by-run search space per file; `python -m study.run --list` shows them."""
