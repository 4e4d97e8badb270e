"""The values quantised-index settings take, in a module that imports nothing heavy (no
FAISS, no numpy), so that the command line's help lists them without loading FAISS.

>>> INDEX_CODES, RESCORE_WITH, DEFAULT_RESCORE
(('float', 'int8', 'binary', 'factory'), ('float', 'int8'), 4)
"""

from __future__ import annotations

__all__ = ["DEFAULT_RESCORE", "INDEX_CODES", "RESCORE_WITH"]

#: what an index keeps of each vector (``index build --vectors``): float32, SQ8 codes, sign bits
#: (of the vectors centred on the training sample's mean), or the factory's own codes (PQ, SQ4)
#: rescored like the others
INDEX_CODES = ("float", "int8", "binary", "factory")
#: the vectors a quantised index's candidates are rescored with (kept on disk, mapped)
RESCORE_WITH = ("float", "int8")
#: candidates asked of the quantised index per hit wanted
DEFAULT_RESCORE = 4
