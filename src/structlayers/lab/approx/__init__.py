"""The matrix-approximation experiment: how well does a structured layer fit a matrix, for its
parameter count, against the best low-rank matrix and random features of the same count, and
against the other structured families at equal parameters and measured time?"""

from structlayers.lab.approx.baselines import random_features_error, svd_error, svd_rank_for_budget
from structlayers.lab.approx.experiment import ApproxConfig, ApproxResult, ApproxRow, ApproxRun, build_layer, run_approx
from structlayers.lab.approx.targets import gaussian_target, make_target

__all__ = [
    "ApproxConfig",
    "ApproxResult",
    "ApproxRow",
    "ApproxRun",
    "build_layer",
    "gaussian_target",
    "make_target",
    "random_features_error",
    "run_approx",
    "svd_error",
    "svd_rank_for_budget",
]
