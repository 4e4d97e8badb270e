"""Experiments: the runners that put encoders, postprocessors, evaluators and indexes together
and build one run record (bench, sweep, whiten, index eval, speed and SimCSE reports)."""
