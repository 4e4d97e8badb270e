"""Runs: the runners that put encoders, postprocessors, evaluators and indexes together and build
one run record (bench, sweep, whiten, index eval, encode, diagnose, compare, distill): settings
in, a JSON-ready record out, nothing rendered. Their tables, Markdown, HTML and plots are
:mod:`embedkit.reports`'s; the project's own benchmark drivers are outside the package, in
benchmarks/."""
