"""Recommendation models behind one interface (see :mod:`movierec.models.base`)."""

from movierec.models.base import ModelConfig, Recommender, TrainOptions
from movierec.models.registry import MODELS, create

__all__ = ["MODELS", "ModelConfig", "Recommender", "TrainOptions", "create"]
