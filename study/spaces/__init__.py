"""Search spaces: `search_spaces/<name>.py` files found by name, the study settings each declares,
the cover finder (every categorical choice), and the constants every trial carries."""
