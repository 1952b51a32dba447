"""The study folder, Ray-free and torch-free: table layouts (schema), reading and writing them,
the owners of trials.parquet and study.json, lookups of trials, and statistics."""
