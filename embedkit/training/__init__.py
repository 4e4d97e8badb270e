"""Fine-tuning encoders: unsupervised and supervised SimCSE, CoSENT.

>>> from embedkit.training import SimCSEConfig
>>> SimCSEConfig(corpus="c.txt", out_dir="o").method
'simcse-unsupervised'
"""

from embedkit.training.losses import cosent_loss, infonce_loss, simcse_loss
from embedkit.training.simcse import (
    SimCSEConfig,
    TrainingWarning,
    TrainResult,
    load_training_model,
    train_simcse,
)

__all__ = ["SimCSEConfig", "TrainResult", "TrainingWarning", "cosent_loss", "infonce_loss",
           "load_training_model", "simcse_loss", "train_simcse"]
