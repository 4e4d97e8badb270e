"""Experiments: the runners that put encoders, postprocessors, evaluators and indexes together
and build one run record (bench, sweep, whiten, index eval, diagnose, compare, encode, speed and
SimCSE reports); their tables, Markdown, HTML and plots are :mod:`embedkit.reports`'s."""
