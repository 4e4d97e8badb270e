"""The values runner settings take, in a module that imports nothing heavy (no torch, no
numpy), so that a command line can list them without loading a runner.

>>> ENGINES, METRICS
(('local', 'ray'), ('spearman', 'pearson'))
"""

from __future__ import annotations

#: where an encode runs (:mod:`embedkit.runs.encode`)
ENGINES = ("local", "ray")
#: the scores a comparison ranks by (:mod:`embedkit.runs.compare`)
METRICS = ("spearman", "pearson")
#: predictions files (:mod:`embedkit.runs.predictions`): auto is Parquet when pyarrow
#: is installed, else JSON lines
FORMATS = ("auto", "jsonl", "parquet")
