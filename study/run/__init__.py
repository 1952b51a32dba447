"""`python -m study.run`: the command line, its checks before Ray starts (preflight, `--set`),
the driver of one study, and what it prints at the end."""
