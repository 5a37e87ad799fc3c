"""Fixed (non-learned) transforms the layers are built from: DCT/DFT and shuffles."""

from structlayers.transforms.dct import DCT, dct, dct_flops, dct_matrix, idct
from structlayers.transforms.shuffle import SHUFFLES, Permutation, make_permutation

__all__ = [
    "DCT",
    "SHUFFLES",
    "Permutation",
    "dct",
    "dct_flops",
    "dct_matrix",
    "idct",
    "make_permutation",
]
