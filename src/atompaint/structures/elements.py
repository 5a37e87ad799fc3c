"""Elements of atoms in PDB files that lack the element column (molecular-dynamics output), water
residue names of the common water models, and virtual sites.

Simulation packages (GROMACS, CHARMM, NAMD, Amber, OpenMM) often write PDB files with an empty
element column (columns 77-78) and atom names aligned their own way.  A reader that falls back to
the PDB convention -- a two-letter element in columns 13-14, a one-letter element in column 14 --
then reads a left-justified ``CA`` as calcium, ``HG1`` as mercury and ``CD`` as cadmium, and gives
the TIP4P charge site ``MW`` no element at all.

:func:`fill_pdb_elements` infers the element of each such atom from its name *and its residue*:

* in a water residue (:data:`WATER_RESIDUES`) names starting with O are oxygen, with H hydrogen
  (D deuterium); anything else is a virtual site;
* names of virtual sites (:data:`VIRTUAL_SITE`: ``MW``, ``EP1``, ``LP2``, ``DUM``, ...) are marked
  ``X`` so that the loader drops them;
* in an amino-acid or nucleotide residue (force-field variants such as HSD, HIE, CYX, NALA, ADE
  included) every element is one letter: the first letter of the name (``1HD1`` -> H, ``CD`` -> C),
  with selenium for ``SE`` of selenomethionine;
* a residue of one atom is an ion: its residue name (:data:`ION_RESIDUES`: POT -> K, SOD -> Na,
  CLA -> Cl, ...) or its atom name as a two- or one-letter element (``NA``, ``CL``, ``ZN``, ``K``);
* in any other residue (ligands, lipids) the first letter when it is one of C, H, N, O, S, P;
  ``CL``/``BR`` prefixes and mixed-case names (``Cl1``, ``Fe``) as halogens/metals; otherwise the
  longest element symbol the name starts with (``FE`` in HEM, ``F3``).

Names for which no rule gives an element (``XYZ``, ``123``) are reported, not guessed.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

#: Residue names of water, crystallographic and of the usual MD water models.  Names longer than three
#: characters are listed with their three-character truncation too (readers keep columns 18-20 only).
WATER_RESIDUES = frozenset(
    {
        "HOH", "WAT", "H2O", "DOD", "D2O", "HOD", "SOL", "SOLV", "TIP", "TIP2", "TIP3", "TIP4", "TIP5",
        "TP3", "TP4", "TP5", "T3P", "T4P", "T5P", "T4E", "TP3M", "SPC", "SPCE", "SPE", "OPC", "OPC3",
        "SWM", "SWM4", "SWM6", "WTR",
    }
)

#: Single-atom residue names of ions that are not their element symbol (CHARMM, Amber, GROMACS).
ION_RESIDUES = {
    "POT": "K", "SOD": "NA", "CLA": "CL", "CAL": "CA", "CES": "CS", "LIT": "LI", "RUB": "RB", "BAR": "BA",
    "ZN2": "ZN", "MG2": "MG", "CA2": "CA", "FE2": "FE", "FE3": "FE", "CU1": "CU", "CU2": "CU", "MN2": "MN",
    "CO2": "CO", "NI2": "NI", "CD2": "CD", "IOD": "I", "BRO": "BR", "FLU": "F",
}

#: Atom names of virtual sites: TIP4P/OPC charge sites (MW, EPW, M), TIP5P lone pairs (LP1, EP2),
#: GROMACS methyl/amine construction sites (MCH3, MNH3),
#: halogen lone pairs (LP*) and dummy atoms (DUM*).  Their element column is empty and they carry
#: no electron density, so they are never imaged.
VIRTUAL_SITE = re.compile(r"^(MW\d*|M|EP[A-Z0-9]*|LP[A-Z0-9]*|VS\d*|DUM[A-Z0-9]*|MCH\d*|MNH\d*)$")

# Amino acids and nucleotides by their force-field names, beyond gemmi's table (which knows the PDB's
# chemical components): protonation variants, terminal variants (Amber's NALA/CALA), CHARMM's nucleotides.
_AMINO = (
    "ALA ARG ASN ASP CYS GLN GLU GLY HIS ILE LEU LYS MET PHE PRO SER THR TRP TYR VAL "
    "HSD HSE HSP HID HIE HIP HIN HISA HISB HISD HISE HISH CYX CYM CYN CYS2 CYSH ASH ASPH GLH GLUH "
    "LYN LSN LYSH ARGN TYM MSE SEC PYL ACE NME NMA NH2 NHE"
).split()
_NUCLEIC = "A C G U T DA DC DG DT DU RA RC RG RU ADE CYT GUA URA THY DA5 DA3 DC5 DC3 DG5 DG3 DT5 DT3".split()
POLYMER_RESIDUES = frozenset(
    _AMINO
    + [f"{end}{name}" for end in "NC" for name in _AMINO[:20] + ["HID", "HIE", "HIP", "CYX", "HSD", "HSE"]]
    + [f"{name}{end}" for name in ("A", "C", "G", "U", "RA", "RC", "RG", "RU") for end in "53"]
    + _NUCLEIC
)

_ORGANIC = frozenset("CHNOSP")


@functools.lru_cache(maxsize=512)
def is_element(symbol: str) -> bool:
    """Whether ``symbol`` (any case) names a chemical element (D counts, for deuterium)."""
    import gemmi

    symbol = symbol.strip()
    return 0 < len(symbol) <= 2 and symbol.isalpha() and gemmi.Element(symbol).atomic_number > 0


@functools.lru_cache(maxsize=1024)
def is_water_residue(name: str) -> bool:
    return name.strip().upper() in WATER_RESIDUES


def is_virtual_site(atom_name: str) -> bool:
    return VIRTUAL_SITE.match(atom_name.strip().upper()) is not None


def _is_polymer_residue(name: str) -> bool:
    import gemmi

    if name in POLYMER_RESIDUES or name[:3] in POLYMER_RESIDUES and len(name) == 4 and name[3].isdigit():
        return True
    info = gemmi.find_tabulated_residue(name)
    return info is not None and (info.is_amino_acid() or info.is_nucleic_acid())


#: Marks an atom as a virtual site (the loader drops element-``X`` atoms with such names).
VIRTUAL = "X"


@functools.lru_cache(maxsize=8192)
def infer_element(atom_name: str, residue_name: str, residue_atoms: int = 2) -> str | None:
    """The element (upper case) of an atom named ``atom_name`` in residue ``residue_name`` of
    ``residue_atoms`` atoms, :data:`VIRTUAL` for a virtual site, ``None`` when no rule applies."""
    name = atom_name.strip().lstrip("0123456789")
    letters = re.match(r"[A-Za-z]*", name).group()
    upper, residue = letters.upper(), residue_name.strip().upper()
    if not upper:
        return None
    if is_water_residue(residue):
        return upper[0] if upper[0] in "OHD" and not is_virtual_site(upper) else VIRTUAL
    if is_virtual_site(name.upper()):
        return VIRTUAL
    if _is_polymer_residue(residue):
        if upper == "SE" and residue in ("MSE", "SEC"):
            return "SE"
        if upper[0] in _ORGANIC or upper[0] == "D":
            return upper[0]
    elif residue_atoms == 1:
        if residue in ION_RESIDUES:
            return ION_RESIDUES[residue]
        for symbol in (upper[:2], upper[:1]):
            if is_element(symbol):
                return symbol
        return None
    if len(letters) >= 2 and letters[0].isupper() and letters[1].islower() and is_element(letters[:2]):
        return letters[:2].upper()
    if upper[:2] in ("CL", "BR"):
        return upper[:2]
    if upper[0] in _ORGANIC:
        return upper[0]
    for symbol in (upper[:2], upper[:1]):
        if is_element(symbol):
            return symbol
    return None


@functools.lru_cache(maxsize=8192)
def convention_element(name_field: str) -> str:
    """The element the PDB naming convention puts in an atom-name field (columns 13-16): a
    one-letter element in column 14 when column 13 is blank or a digit, else two letters."""
    field = name_field.ljust(4)
    return field[1].upper() if field[0] in " 0123456789" else field[:2].strip().upper()


@dataclass
class ElementInference:
    """What :func:`fill_pdb_elements` did to a file."""

    atoms: int = 0  # atom records in the file
    inferred: Counter = field(default_factory=Counter)  # element -> atoms whose element was inferred
    #: (atom name field, residue, inferred element) of atoms whose inferred element differs from the
    #: naming convention's reading -- what a convention-following reader would have got wrong.
    differs: list[tuple[str, str, str]] = field(default_factory=list)
    virtual: Counter = field(default_factory=Counter)  # atom name -> virtual sites marked
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (atom name, residue name), no rule
    water_names: set[str] = field(default_factory=set)  # water residue names met (beyond HOH/DOD)

    @property
    def guessed(self) -> bool:
        """Whether the inference mattered: it overrode the naming convention or found virtual sites."""
        return bool(self.differs or self.virtual)

    def describe(self) -> str:
        missing = sum(self.inferred.values()) + sum(self.virtual.values()) + len(self.unknown)
        counts = ", ".join(f"{e} {n}" for e, n in sorted(self.inferred.items(), key=lambda kv: (-kv[1], kv[0])))
        parts = [f"{missing} of {self.atoms} atoms have no element column; elements inferred from atom and residue "
                 f"names ({counts})"]
        if self.differs:
            shown = "; ".join(
                f"{name.strip()!r} in {res} is {el}, not {convention_element(name) or '?'}"
                for name, res, el in list(dict.fromkeys(self.differs))[:3]
            )
            parts.append(f"{len(self.differs)} differ from the PDB naming convention ({shown})")
        if self.virtual:
            names = ", ".join(f"{k} {n}" for k, n in sorted(self.virtual.items()))
            parts.append(f"{sum(self.virtual.values())} virtual sites dropped ({names})")
        if self.water_names:
            parts.append(f"water residues: {', '.join(sorted(self.water_names))}")
        return "; ".join(parts)


_ATOM_RECORDS = ("ATOM  ", "HETATM")


def fill_pdb_elements(text: str) -> tuple[str, ElementInference]:
    """``text`` (a PDB file) with the element column filled in wherever it is empty, and a report.

    Residues are runs of consecutive atom records with the same residue name (columns 18-21: four
    characters, as MD programs write ``TIP3``), chain, number and insertion code.  Virtual sites get
    element ``X``; atoms without a rule keep an empty column and are listed in ``report.unknown``.
    """
    lines = text.splitlines(keepends=True)
    atom_rows = [i for i, line in enumerate(lines) if line.startswith(_ATOM_RECORDS)]
    report = ElementInference(atoms=len(atom_rows))
    blank = [k for k, i in enumerate(atom_rows) if not lines[i][76:78].strip()]
    if not blank:
        return text, report

    # Residues: runs of consecutive atom records with the same residue key; the size of each atom's run.
    sizes = [len(list(run)) for _, run in itertools.groupby(lines[i][17:27] for i in atom_rows)]
    residue_size = np.repeat(sizes, sizes).tolist()
    for k in blank:
        i = atom_rows[k]
        line = lines[i]
        residue, name = line[17:21].strip(), line[12:16]
        if is_water_residue(residue) and residue not in ("HOH", "DOD"):
            report.water_names.add(residue)
        element = infer_element(name, residue, residue_size[k])
        if element is None:
            report.unknown.append((name.strip(), residue))
            continue
        if element == VIRTUAL:
            report.virtual[name.strip()] += 1
        else:
            report.inferred[element] += 1
            if element != convention_element(name):
                report.differs.append((name, residue, element))
        body, newline = (line[:-1], "\n") if line.endswith("\n") else (line, "")
        body = body.rstrip("\r")
        lines[i] = f"{body[:76].ljust(76)}{element:>2}{body[78:]}{newline}"
    return "".join(lines), report
