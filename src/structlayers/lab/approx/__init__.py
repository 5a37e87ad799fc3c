"""The matrix-approximation experiment: how well does a structured layer fit a dense matrix, for
its parameter count, compared with the best low-rank matrix of the same size?"""

from structlayers.lab.approx.experiment import ApproxConfig, ApproxResult, ApproxRow, build_layer, run_approx
from structlayers.lab.approx.targets import gaussian_target, svd_error

__all__ = [
    "ApproxConfig",
    "ApproxResult",
    "ApproxRow",
    "build_layer",
    "gaussian_target",
    "run_approx",
    "svd_error",
]
