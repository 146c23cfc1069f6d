"""Alignment training: `tessera train CONFIG` and its Python API.

>>> from tessera.embedder.training import load_config, train
>>> result = train(load_config("digits.yaml"))  # doctest: +SKIP
>>> load_space(result.output)                    # doctest: +SKIP
"""

from .config import ConfigError, TrainConfig, config_from_dict, load_config
from .trainer import TrainResult, train

__all__ = ["ConfigError", "TrainConfig", "TrainResult", "config_from_dict", "load_config", "train"]
