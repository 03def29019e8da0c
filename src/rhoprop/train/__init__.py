"""Training, evaluation and prediction: Lightning module, trainer setup, checkpoints, uncertainties.

Heavy imports (Lightning) happen in the submodules; import what you use, e.g.
``from rhoprop.train.fit import train`` or ``from rhoprop.train.predict import predict_paths``.
"""

from rhoprop.train.config import TrainConfig

__all__ = ["TrainConfig"]
