"""Tuning the embedding model: question → passage pairs, training, model versions on
disk, calibration of "I don't know", and switching every stored vector to a new model.

This is the package's public entry point: code outside it imports only these names.
"""

from .model_switch import ModelSwitch, record_active_model, switch_model
from .model_versions import ModelVersions
from .pairs import split_pairs
from .training import Recipe
from .tuner import Tuner, last_tune, peak_rss_mb

__all__ = ["ModelSwitch", "record_active_model", "switch_model", "ModelVersions", "Recipe", "Tuner", "last_tune", "peak_rss_mb", "split_pairs"]
