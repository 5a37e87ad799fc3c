"""Built-in layer plugins, one per module; importing this package registers them."""

from structlayers.layers.acdc import ACDC
from structlayers.layers.afdf import AFDF
from structlayers.layers.blockdiag import BlockDiagonal
from structlayers.layers.butterfly import Butterfly
from structlayers.layers.circulant import Circulant
from structlayers.layers.dense import Dense
from structlayers.layers.kronecker import Kronecker
from structlayers.layers.lowrank import LowRank
from structlayers.layers.lowrank_diag import LowRankDiag
from structlayers.layers.monarch import Monarch
from structlayers.layers.stack import Stack
from structlayers.layers.toeplitz import Toeplitz

__all__ = ["ACDC", "AFDF", "BlockDiagonal", "Butterfly", "Circulant", "Dense", "Kronecker", "LowRank", "LowRankDiag",
           "Monarch", "Stack", "Toeplitz"]
