"""What an encoder built from an :class:`~embedkit.encoders.config.EncoderConfig` would be,
read from the model folder without loading its weights: how a driver plans work that its
workers encode (the Ray engine of :func:`~embedkit.runs.encode.run_encode`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from embedkit.encoders.base import TokenizedEncoder, load_tokenizer
from embedkit.encoders.export import runtime_versions
from embedkit.encoders.pooling import Pooling
from embedkit.errors import ConfigError


class ModelFacts(TokenizedEncoder):
    """What an encoder built from a config is (identity, dimension, default pooling, prompt,
    maximum length, batching, its :meth:`describe`), read from the model folder's tokenizer
    and ``config.json``: the weights are neither loaded nor exported, and nothing is encoded.
    How a driver plans work that its workers encode (the Ray engine)."""

    def _load(self, load_path: str) -> Any:
        self.tokenizer, config = load_tokenizer(load_path, self.name, self.revision)
        self.has_pooler = True  # the weights are unread: a worker refuses a pooler it lacks
        return config

    def _run_facts(self) -> dict[str, Any]:
        if self.backend == "torch":
            return {"attention": getattr(self.model_config, "_attn_implementation", None),
                    "threads": self.encoder_config.threads}
        return {"threads": self.encoder_config.threads, "streams": None,
                "inference_precision": None}  # known once a worker compiles the graph

    def _tail_facts(self) -> dict[str, Any]:
        if self.backend == "torch":
            from importlib import metadata

            return {"versions": {"torch": metadata.version("torch")}}
        return {"export": None, "export_steps": None,
                "versions": runtime_versions(self.backend)}

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray,
                 pools: list[Pooling]) -> dict[str, np.ndarray]:
        raise ConfigError(f"{self.name}: ModelFacts reads a model folder and encodes nothing; "
                          "build the encoder from its EncoderConfig to encode", param="encoder")
