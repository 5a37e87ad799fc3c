"""The matrix-approximation experiment: how well does a structured layer fit a dense matrix, for
its parameter count, compared with the best low-rank matrix of the same size?"""

from structlayers.approx.experiment import ApproxConfig, ApproxResult, ApproxRow, build_layer, run_approx
from structlayers.approx.fit import FitResult, fit_layer, gaussian_target, svd_error

__all__ = [
    "ApproxConfig",
    "ApproxResult",
    "ApproxRow",
    "FitResult",
    "build_layer",
    "fit_layer",
    "gaussian_target",
    "run_approx",
    "svd_error",
]
