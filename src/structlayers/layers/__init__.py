"""Built-in layer plugins, one per module; importing this package registers them."""

from structlayers.layers.acdc import ACDC
from structlayers.layers.afdf import AFDF
from structlayers.layers.blockdiag import BlockDiagonal
from structlayers.layers.dense import Dense, LowRank
from structlayers.layers.stack import Stack

__all__ = ["ACDC", "AFDF", "BlockDiagonal", "Dense", "LowRank", "Stack"]
