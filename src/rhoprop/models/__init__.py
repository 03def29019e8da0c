"""Models: the MSA-3DCNN, its heads and losses, model files, and the baselines it is compared
with."""

from rhoprop.data.labels import KINDS
from rhoprop.models.base import MultiTaskModel, Standardizer
from rhoprop.models.heads import TaskSpec
from rhoprop.models.io import ModelBundle, check_standardize_compatible, load_model, save_model
from rhoprop.models.losses import REGRESSION_LOSSES, WEIGHTINGS, TaskWeighting, masked_loss
from rhoprop.models.msa3dcnn import MODEL_SIZES, MSA3DCNN, MSA3DCNNConfig, build_model, model_config

__all__ = [
    "KINDS",
    "MODEL_SIZES",
    "MSA3DCNN",
    "REGRESSION_LOSSES",
    "WEIGHTINGS",
    "MSA3DCNNConfig",
    "ModelBundle",
    "MultiTaskModel",
    "Standardizer",
    "TaskSpec",
    "TaskWeighting",
    "build_model",
    "check_standardize_compatible",
    "load_model",
    "masked_loss",
    "model_config",
    "save_model",
]
