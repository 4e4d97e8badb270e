"""What the speed report measures besides sentences per second: the model's multiply-adds per
sentence and this machine's attainable float32 GEMM rate (the start-up of ``embedkit bench`` is
measured by the command line itself: ``startup_probe``).

>>> flops_per_layer_token(hidden=512, intermediate=2048, tokens=16) / 1e6
6.324224
"""

from __future__ import annotations

import time
from collections.abc import Sequence


def flops_per_layer_token(hidden: int, intermediate: int, tokens: int) -> float:
    """Floating-point operations (2 per multiply-add) of one encoder layer for one token of a
    ``tokens``-long sequence: Q, K, V and output projections, the two feed-forward products,
    and the attention scores and weighted sum."""
    dense = 4 * hidden * hidden + 2 * hidden * intermediate
    attention = 2 * tokens * hidden
    return 2.0 * (dense + attention)


def flops_per_sentence(model: str, lengths: Sequence[int]) -> float:
    """Mean floating-point operations per sentence for the real (unpadded) tokens."""
    from transformers import AutoConfig

    from embedkit.encoders import resolve_model_path

    cfg = AutoConfig.from_pretrained(resolve_model_path(model))
    h, ff, layers = int(cfg.hidden_size), int(cfg.intermediate_size), int(cfg.num_hidden_layers)
    total = sum(n * layers * flops_per_layer_token(h, ff, n) for n in lengths)
    return total / max(len(lengths), 1)


def token_lengths(model: str, sentences: Sequence[str], max_length: int) -> list[int]:
    """Tokens per sentence, special tokens included, as the encoders truncate them."""
    from transformers import AutoTokenizer

    from embedkit.encoders import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(model))
    ids = tok(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    return [len(x) for x in ids]


def gemm_peak(threads: int, n: int = 2048, repeats: int = 5,
              dtype: str = "float32") -> list[float]:
    """GFLOP/s of ``repeats`` ``n x n`` products in torch (``dtype``: float32 or bfloat16) on
    ``threads`` threads (one warm-up first): what this CPU attains on large matrix products."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a = torch.randn(n, n).to(getattr(torch, dtype))
        b = torch.randn(n, n).to(getattr(torch, dtype))
        torch.mm(a, b)
        runs = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            runs.append(2.0 * n ** 3 / (time.perf_counter() - t) / 1e9)
        return runs
    finally:
        torch.set_num_threads(before)

