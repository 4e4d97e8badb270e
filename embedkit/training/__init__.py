"""Fine-tuning encoders: unsupervised and supervised SimCSE, CoSENT.

- :mod:`~embedkit.training.config`: :class:`SimCSEConfig`, every setting with its constraint;
- :mod:`~embedkit.training.data`: the examples (sentences, pairs, triplets) and their sampling;
- :mod:`~embedkit.training.batches`: micro-batches and their loss, through the forward pass
  evaluation uses;
- :mod:`~embedkit.training.losses`: InfoNCE (SimCSE) and CoSENT;
- :mod:`~embedkit.training.trainer`: :func:`train_simcse`, the loop;
- :mod:`~embedkit.training.checkpoint`: model folders, checkpoints and exact resume.

>>> from embedkit.training import SimCSEConfig
>>> SimCSEConfig(corpus="c.txt", out_dir="o").method
'simcse-unsupervised'
"""

from typing import TYPE_CHECKING

from embedkit import lazy_exports

if TYPE_CHECKING:  # pragma: no cover
    from embedkit.training.config import SimCSEConfig, TrainingWarning
    from embedkit.training.losses import cosent_loss, infonce_loss, simcse_loss
    from embedkit.training.trainer import TrainResult, load_training_model, train_simcse

_LAZY = {
    "SimCSEConfig": "embedkit.training.config",
    "TrainingWarning": "embedkit.training.config",
    "cosent_loss": "embedkit.training.losses",
    "infonce_loss": "embedkit.training.losses",
    "simcse_loss": "embedkit.training.losses",
    "TrainResult": "embedkit.training.trainer",
    "load_training_model": "embedkit.training.trainer",
    "train_simcse": "embedkit.training.trainer",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = ["SimCSEConfig", "TrainResult", "TrainingWarning", "cosent_loss", "infonce_loss",
           "load_training_model", "simcse_loss", "train_simcse"]
