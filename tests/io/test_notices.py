"""Other libraries' bars and warnings, quieted and rendered as embedkit's one-line notices."""

from __future__ import annotations

import warnings

from embedkit.io.notices import quiet_libraries, warning_line


def test_warning_line_has_no_file_or_line():
    from embedkit.postprocess import RankDeficientWarning

    other = warnings.WarningMessage("feature names\nmore", FutureWarning,
                                    "/site-packages/sklearn/utils/validation.py", 2739)
    assert warning_line(other) == "notice: FutureWarning: feature names"
    own = warnings.WarningMessage("rank 2 < 4", RankDeficientWarning, "/elsewhere.py", 1)
    assert warning_line(own) == "warning: rank 2 < 4"
    from_embedkit = warnings.WarningMessage("old index", UserWarning,
                                            __import__("embedkit").__file__, 1)
    assert warning_line(from_embedkit) == "warning: old index"


def test_quiet_libraries_turns_the_transformers_bar_off(monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    monkeypatch.setattr(hf_logging, "_tqdm_active", True)
    quiet_libraries(terminal=False)
    assert not hf_logging.is_progress_bar_enabled() and are_progress_bars_disabled()
