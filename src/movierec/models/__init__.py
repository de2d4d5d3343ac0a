"""Single-stage recommendation models behind one interface (:mod:`movierec.models.base`).

Names map to classes in :mod:`movierec.strategies`, one level up (with ``ranked``).
"""

from movierec.models.base import ModelConfig, Recommender, TrainOptions

__all__ = ["ModelConfig", "Recommender", "TrainOptions"]
