"""models: PyTorch recommenders and federated training on the secure backends.

The user-side of every model (its embedding) stays on the client; only the shared side (item
tables, biases, MLP weights) travels, as a dense clipped delta, through a
``protocols.aggregators.Aggregator``. Importing this package imports torch (the ``models`` extra).
"""

from models.base import ItemTable, Recommender, UserStates
from models.ctr import LogisticCTR
from models.data import (
    MOVIELENS_FORMATS,
    DataError,
    Interactions,
    LeaveOneOutSplit,
    MovieLensFormat,
    RatingSplit,
    detect_format,
    leave_one_out_split,
    load_movielens,
    rating_split,
    synthetic_interactions,
    synthetic_movielens,
    validation_split,
)
from models.evaluation import (
    RankingMetrics,
    evaluate_ranking,
    evaluate_ratings,
    popularity_ranking,
)
from models.factory import (
    AGGREGATORS,
    MODELS,
    make_aggregator,
    make_dp_aggregator,
    make_model,
)
from models.federated import (
    ClientUpdate,
    FederatedClient,
    FederatedConfig,
    FederatedServer,
    FederatedTrainer,
    RoundRecord,
    ServerStep,
    TrainingHistory,
)
from models.layers import MLP
from models.metrics import hit_ratio_at_k, ndcg_at_k, rmse, roc_auc, sampled_auc
from models.mf import MatrixFactorization
from models.ncf import NeuMF
from models.objectives import Objective, bce_loss, bpr_loss, squared_error_loss
from models.parameters import ParameterSlot, SharedLayout, flatten_shared, load_shared
from models.recipes import RECIPES, Recipe, recipe_for
from models.recommend import Recommendations, recommend_for_client, record_feedback, top_k_items
from models.server import RowUploadLayout, UploadLayout
from models.server_optimizers import ServerOptimizerConfig
from models.sparse_rounds import SparseConfig
from models.training import LocalTrainingConfig, train_centralized
from models.two_tower import TwoTower

__all__ = [
    "AGGREGATORS",
    "MLP",
    "MODELS",
    "MOVIELENS_FORMATS",
    "RECIPES",
    "ClientUpdate",
    "DataError",
    "FederatedClient",
    "FederatedConfig",
    "FederatedServer",
    "FederatedTrainer",
    "Interactions",
    "ItemTable",
    "LeaveOneOutSplit",
    "LocalTrainingConfig",
    "LogisticCTR",
    "MatrixFactorization",
    "MovieLensFormat",
    "NeuMF",
    "Objective",
    "ParameterSlot",
    "RankingMetrics",
    "RatingSplit",
    "Recipe",
    "Recommendations",
    "Recommender",
    "RoundRecord",
    "RowUploadLayout",
    "ServerOptimizerConfig",
    "ServerStep",
    "SharedLayout",
    "SparseConfig",
    "TrainingHistory",
    "TwoTower",
    "UploadLayout",
    "UserStates",
    "bce_loss",
    "bpr_loss",
    "detect_format",
    "evaluate_ranking",
    "evaluate_ratings",
    "flatten_shared",
    "hit_ratio_at_k",
    "leave_one_out_split",
    "load_movielens",
    "load_shared",
    "make_aggregator",
    "make_dp_aggregator",
    "make_model",
    "ndcg_at_k",
    "popularity_ranking",
    "rating_split",
    "recipe_for",
    "recommend_for_client",
    "record_feedback",
    "rmse",
    "roc_auc",
    "sampled_auc",
    "squared_error_loss",
    "synthetic_interactions",
    "synthetic_movielens",
    "top_k_items",
    "train_centralized",
    "validation_split",
]
