"""What the tasks hold: per task and split, rows, distinct sentences, labels and checksums.

>>> import tempfile, os
>>> from embedkit.data.spec import TaskSpec
>>> d = tempfile.mkdtemp(); f = os.path.join(d, "p.tsv")
>>> _ = open(f, "w", encoding="utf-8").write("a\\tb\\t1\\na\\tc\\t0\\n")
>>> row = list_datasets([TaskSpec.from_dict({"name": "p", "files": {"test": f}})])[0]
>>> row["rows"], row["unique_sentences"], row["labels"]
(2, 3, {'0': 1, '1': 1})
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from embedkit.data.loading import DataOptions, load_split
from embedkit.data.retrieval import load_retrieval_split
from embedkit.data.spec import TaskSpec


def list_datasets(specs: Sequence[TaskSpec], data: DataOptions | None = None
                  ) -> list[dict[str, Any]]:
    """One JSON-ready row per task and split (every split the spec declares)."""
    data = data or DataOptions()
    listing = []
    for spec in specs:
        if spec.is_retrieval:
            listing += _retrieval_rows(spec, data)
            continue
        for split in spec.splits:
            s = load_split(spec, split, data_dir=data.data_dir, source=data.source,
                           skip_invalid=data.skip_invalid)
            hub = (f"{spec.hub.id}@{spec.hub.revision[:8]}"
                   if spec.hub and spec.hub.revision else "")
            listing.append({"task": spec.name, "split": split, "rows": s.n_pairs,
                            "skipped": s.skipped, "unique_sentences": len(s.unique_sentences()),
                            "labels": s.label_distribution(), "max_length": spec.max_length,
                            "hub": hub, "sha256": s.sha256, "source": s.source})
    return listing


def _retrieval_rows(spec: TaskSpec, data: DataOptions) -> list[dict[str, Any]]:
    """A retrieval task's splits: ``rows`` the judgements, ``unique_sentences`` the corpus
    size, ``labels`` the judgements per relevance score, plus ``queries``."""
    out = []
    for split in spec.splits:
        r = load_retrieval_split(spec, split, data_dir=data.data_dir)
        out.append({"task": spec.name, "split": split, "kind": "retrieval",
                    "rows": r.n_judgements, "skipped": 0,
                    "unique_sentences": len(r.corpus_ids), "queries": len(r.query_ids),
                    "labels": r.score_distribution(), "max_length": spec.max_length,
                    "hub": "", "sha256": r.sha256, "source": r.source})
    return out
