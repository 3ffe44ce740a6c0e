"""Compatibility names of the former ``models.cli`` module.

``secagg train`` and ``secagg recommend`` now live in :mod:`models.commands` and the factories
in :mod:`models.factory`; this module keeps ``from models.cli import make_dp_aggregator`` (and
the other names it used to export) working. New code imports from those modules instead.
"""

from models.commands.recommend import add_arguments as add_recommend_arguments
from models.commands.recommend import run as run_recommend
from models.commands.train import add_arguments as add_train_arguments
from models.commands.train import run as run_train
from models.factory import make_aggregator, make_dp_aggregator, make_model

__all__ = [
    "add_recommend_arguments",
    "add_train_arguments",
    "make_aggregator",
    "make_dp_aggregator",
    "make_model",
    "run_recommend",
    "run_train",
]
