"""Low-level input and output: atomic writes and the UTF-8 line reader."""
