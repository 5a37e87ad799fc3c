"""The wwPDB "non-LOI" blocklist: residues that are not ligands of interest (crystallization
additives, buffers, cryoprotectants, ions, unknown atoms).

Upstream atompaint/macromol_gym start their list of "uninteresting" ligands from this one and do not
count such residues when they measure density (``kalekundert/macromolecular_inpainting``,
``notebook/prepare_dataset/identity_uninteresting_ligands``).  The names are the hetero groups of
``non-LOI-blocklist.tsv`` in ``rcsb/PDB_ligand_quality_composite_score`` (commit 8e7ff87), by its
type column; its two polymer entries (``N`` and ``UNK``, unknown nucleotide and amino acid) are left
out: they are residues of a chain, not additives.
"""

from __future__ import annotations

import numpy as np

from .atoms import AtomTable

NON_LOI_RESIDUES: frozenset[str] = frozenset({
    # HETAI: ions and salts (SO4, PO4, ACT, metal ions, ...)
    "SO4", "ZN", "MG", "CL", "CA", "NA", "PO4", "ACT", "MN", "K", "NI", "FE", "CU", "CD", "IOD", "FE2", "CO",
    "NO3", "HG", "FLC", "BR", "SCN", "CO3", "CAC", "BCT", "NH4", "CU1", "BA", "SR", "OH", "ALF", "NO2", "CS",
    "PT", "MLT", "OXL", "SO3", "VO4", "YB", "LI", "F", "RB", "OAA", "WO4", "PB", "SM", "PR", "YT3", "IUM", "RU",
    "TB", "PO3", "EMC", "3CO", "PD", "Y1", "OS", "AR", "LU", "IR", "EU", "EU3", "CR", "IR3", "2PO", "AUC",
    "LCP", "GA", "RE", "RH3", "3NI", "SE4", "PT4", "PBM", "AL", "D8U", "ER3", "RHD", "VN3", "RH", "SB", "TH",
    "4TI", "V", "BS3", "PTN", "ND4", "AM", "0BE", "TCN", "CF", "LCO", "CUL", "ZCM", "DY", "SFL", "PDV", "IN",
    "OS4", "4PU", "TA0", "YB2", "ZR",
    # HETAC: ion complexes
    "NCO", "IRI",
    # HETAIN: cryoprotectants, precipitants, buffers, solvents, reducing agents, PEG fragments, unknown
    # atoms (GOL, EDO, PEG, DMS, BME, UNX, ...)
    "GOL", "EDO", "PEG", "DMS", "ACE", "MPD", "MES", "TRS", "PG4", "PGE", "NH2", "FMT", "SF4", "EPE", "CIT",
    "BME", "ACY", "IMD", "1PE", "MLI", "FES", "UNX", "IPA", "MRD", "TLA", "UNL", "P6G", "POP", "F3S", "BTB",
    "EOH", "DTT", "NHE", "PYR", "BEF", "DIO", "MLA", "PGO", "2PE", "XE", "B3P", "PE4", "TAR", "PPV", "TAM",
    "PG0", "O", "CUA", "0QE", "P33", "AU", "AF3", "AG", "ARS", "BO3", "ICS", "CF0", "TBR", "AU3", "TAS", "BO4",
    "2T8", "AST", "ART", "BF2", "6BP", "D6N", "BF4", "ICE", "8AR", "0KA", "RMO", "HG2", "82N", "ICH", "ICZ",
    "ICG", "8P8", "NOB", "202", "1PG", "15P", "12P", "PG6", "PE5", "PE8", "7PE", "PE3", "PG5", "ETE", "XPE",
    "PEU", "P15", "7PG", "P4K", "33O", "9FO",
    # HETAS: solvent (water; already dropped as water)
    "HOH", "DOD",
})


def is_non_loi(atoms: AtomTable) -> np.ndarray:
    """Bool ``(N,)``: atoms of non-polymer residues named in :data:`NON_LOI_RESIDUES` (a residue of a
    polymer chain, e.g. an ``ACE`` cap built into the chain, is kept whatever its name)."""
    names = np.char.upper(np.char.strip(atoms.residue_name.astype(str)))
    return np.isin(names, sorted(NON_LOI_RESIDUES)) & (atoms.entity_type != "polymer")
