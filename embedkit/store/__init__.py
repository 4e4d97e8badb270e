"""Formats of what embedkit keeps on disk: fitted maps (``fitted``), recipes, encode folders."""
