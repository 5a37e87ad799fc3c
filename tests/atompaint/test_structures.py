"""Loading structures into atom tables: formats, filtering options, and clear errors for bad files."""

from __future__ import annotations

import gzip
import shutil
import sys
from pathlib import Path

import gemmi
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atompaint.structures import AtomTable, StructureError, StructureWarning, infer_element, load, structure_name

pytestmark = pytest.mark.filterwarnings("ignore::atompaint.structures.StructureWarning")

DATA = Path(__file__).parent / "data"
PDB_FILES = [DATA / f"{name}.pdb.gz" for name in ("2cviA", "2xcjA", "2xdgA")]  # crystallographic chains


def _pdb_line(serial, name, resname, chain, resnum, xyz, element, record="ATOM", altloc=" ", occ=1.0):
    x, y, z = xyz
    name = f" {name:<3}" if len(name) < 4 else name  # PDB convention: 1-letter elements start in column 14
    return (
        f"{record:<6}{serial:>5} {name}{altloc}{resname:>3} {chain}{resnum:>4}    "
        f"{x:8.3f}{y:8.3f}{z:8.3f}{occ:6.2f}{20.0:6.2f}          {element:>2}\n"
    )


@pytest.fixture
def mixed_pdb(tmp_path: Path) -> Path:
    """A hand-written PDB with a hydrogen, an alternate location, a ligand and a water."""
    lines = [
        _pdb_line(1, "N", "ALA", "A", 1, (0, 0, 0), "N"),
        _pdb_line(2, "CA", "ALA", "A", 1, (1.5, 0, 0), "C"),
        _pdb_line(3, "H", "ALA", "A", 1, (-0.9, 0.3, 0), "H"),
        _pdb_line(4, "CB", "ALA", "A", 1, (2.0, 1.4, 0), "C", altloc="A", occ=0.6),
        _pdb_line(5, "CB", "ALA", "A", 1, (2.0, -1.4, 0), "C", altloc="B", occ=0.4),
        _pdb_line(6, "SE", "SE", "B", 101, (5, 5, 5), "SE", record="HETATM"),
        _pdb_line(7, "O", "HOH", "C", 201, (8, 8, 8), "O", record="HETATM"),
        "END\n",
    ]
    path = tmp_path / "mixed.pdb"
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize("path", PDB_FILES, ids=lambda p: p.name)
def test_load_gzipped_pdb_matches_gemmi(path: Path) -> None:
    atoms = load(path)
    st = gemmi.read_structure(str(path))
    ref = np.array([a.pos.tolist() for r in st[0][0] for a in r])
    assert len(atoms) == st[0].count_atom_sites() == len(ref)
    np.testing.assert_allclose(atoms.coords, ref, atol=1e-3)
    assert atoms.coords.dtype == np.float32
    assert set(atoms.element) <= {"C", "N", "O", "S", "SE", "H"}
    assert atoms.name == structure_name(path) == path.name.split(".")[0]
    assert (atoms.entity_type == "polymer").mean() > 0.9


def test_plain_pdb_and_mmcif_give_the_same_atoms(tmp_path: Path) -> None:
    plain = tmp_path / "2xcjA.pdb"
    with gzip.open(DATA / "2xcjA.pdb.gz", "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst)
    from_gz = load(DATA / "2xcjA.pdb.gz")
    from_plain = load(plain)
    from_cif = load(DATA / "2xcjA.cif.gz")
    for other in (from_plain, from_cif):
        assert len(other) == len(from_gz)
        np.testing.assert_array_equal(other.coords, from_gz.coords)
        np.testing.assert_array_equal(other.element, from_gz.element)
        np.testing.assert_array_equal(other.residue_id, from_gz.residue_id)
        np.testing.assert_array_equal(other.chain, from_gz.chain)


def test_filter_options(mixed_pdb: Path) -> None:
    everything = load(mixed_pdb)
    assert len(everything) == 7
    assert set(everything.entity_type) >= {"polymer", "water"}
    assert everything.is_hetero.tolist() == [False] * 5 + [True, True]
    assert sorted(everything.altloc.tolist()) == ["", "", "", "", "", "A", "B"]
    np.testing.assert_allclose(everything.occupancy[3:5], [0.6, 0.4])

    assert "H" not in load(mixed_pdb, drop_hydrogens=True).element
    assert not load(mixed_pdb, drop_waters=True).is_water.any()
    first = load(mixed_pdb, altloc="first")
    assert (first.atom_name == "CB").sum() == 1
    np.testing.assert_allclose(first.coords[first.atom_name == "CB"][0], [2.0, 1.4, 0.0])
    assert len(load(mixed_pdb, drop_hydrogens=True, drop_waters=True, altloc="first")) == 4


def test_missing_element_column_is_inferred(tmp_path: Path) -> None:
    text = _pdb_line(1, "CG", "HIS", "A", 1, (0, 0, 0), "") + _pdb_line(2, "ND1", "HIS", "A", 1, (1, 0, 0), "")
    path = tmp_path / "noelem.pdb"
    path.write_text(text)
    assert load(path).element.tolist() == ["C", "N"]


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"", "empty.pdb", "no atoms"),
        (b"garbage that is not a structure\n", "bad.cif", "cannot parse"),
        (b"", "empty.cif", "empty file"),
        (b"  \n\n", "blank.cif.gz", "corrupt or truncated gzip"),
        (gzip.compress(b"", mtime=0), "empty.pdb.gz", "empty file"),
        (b"data_x\nloop_\n_atom_site.id\n1\n", "partial.cif", "no models"),
        (b"\x83\xa7version\xa50.3.0", "x.bcif", "cannot parse"),
        (b"ATOM", "notes.txt", "unrecognised structure format"),
    ],
    ids=lambda value: value if isinstance(value, str) and "." in value else None,
)
def test_bad_files_raise_errors_naming_the_file(tmp_path: Path, content: bytes, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(StructureError, match=message) as info:
        load(path)
    assert str(path) in str(info.value)


def test_only_hydrogens_left_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "h.pdb"
    path.write_text(_pdb_line(1, "H1", "HOH", "A", 1, (0, 0, 0), "H"))
    with pytest.raises(StructureError, match="no atoms after filtering"):
        load(path, drop_hydrogens=True)


def test_missing_file_and_bad_options(tmp_path: Path, mixed_pdb: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pdb"):
        load(tmp_path / "nope.pdb")
    with pytest.raises(ValueError, match="altloc"):
        load(mixed_pdb, altloc="best")  # type: ignore[arg-type]
    with pytest.raises(StructureError, match="model 3"):
        load(mixed_pdb, model=3)


def test_atom_table_helpers() -> None:
    table = AtomTable.from_arrays(np.arange(12).reshape(4, 3), ["c", "n", "o", "se"], name="gen")
    assert table.element.tolist() == ["C", "N", "O", "SE"]
    sub = table.select(table.element != "N")
    assert len(sub) == 3 and sub.name == "gen"
    both = AtomTable.concatenate([table, sub])
    assert len(both) == 7
    df = both.to_dataframe()
    assert list(df.columns[:3]) == ["x", "y", "z"] and len(df) == 7
    with pytest.raises(ValueError, match="rows"):
        AtomTable(**{**table.columns(), "element": table.element[:2]})


# --- gzip integrity ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(0.0, 1.0, exclude_max=True))
def test_a_truncated_gzip_is_an_error_not_a_partial_structure(tmp_path: Path, cut: float) -> None:
    data = (DATA / "2xcjA.pdb.gz").read_bytes()
    path = tmp_path / "cut.pdb.gz"
    path.write_bytes(data[: int(cut * len(data))])
    with pytest.raises(StructureError, match="cut.pdb.gz") as info:
        load(path)
    assert "truncated" in str(info.value) or "empty" in str(info.value)


def test_a_corrupt_gzip_fails_its_crc(tmp_path: Path) -> None:
    data = bytearray((DATA / "2xcjA.pdb.gz").read_bytes())
    data[-8] ^= 0xFF  # the stored CRC-32 of the uncompressed data
    path = tmp_path / "crc.pdb.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(StructureError, match=r"crc.pdb.gz: corrupt or truncated gzip.*CRC"):
        load(path)


# --- MD-style PDB files (real files; provenance in data/README.md) -------------------------------------


def _gemmi_elements(path: Path) -> list[str]:
    st = gemmi.read_structure(str(path))
    return [a.element.name.upper() for r in st[0][0] for a in r]


def test_charmm_pdb_without_element_column() -> None:
    path = DATA / "adk_open_10res.pdb"
    assert {"CA", "HG", "CD", "X"} <= set(_gemmi_elements(path))  # what the naming convention reads
    with pytest.warns(StructureWarning, match=r"157 of 157 atoms have no element column.*differ from the PDB naming"):
        atoms = load(path)
    assert len(atoms) == 157
    assert set(atoms.element) == {"C", "H", "N", "O", "S"}
    heavy_first_letter = np.array([n.lstrip("0123456789")[0] for n in atoms.atom_name])
    np.testing.assert_array_equal(atoms.element, heavy_first_letter)  # in amino acids: one-letter elements
    assert atoms.element[atoms.atom_name == "SD"].tolist() == ["S"]
    assert (atoms.element[atoms.atom_name == "CA"] == "C").all() and (atoms.atom_name == "CA").sum() == 10
    assert len(load(path, drop_hydrogens=True)) == 157 - 86


def test_gromacs_tip4p_waters_virtual_sites_and_ions() -> None:
    path = DATA / "cobrotoxin_tip4p_cut.pdb.gz"
    with pytest.warns(StructureWarning, match=r"60 virtual sites dropped \(MW 60\).*water residues: SOL"):
        atoms = load(path)
    assert "MW" not in atoms.atom_name and "X" not in atoms.element
    sol = atoms.residue_name == "SOL"
    assert sol.sum() == 60 * 3 and atoms.is_water[sol].all() and not atoms.is_water[~sol].any()
    assert sorted(set(atoms.element[sol])) == ["H", "O"]
    # The same atoms, written by MDAnalysis from the GROMACS topology with an element column.
    reference = load(DATA / "cobrotoxin_dry_neutral_0.pdb.gz")
    dry = load(path, drop_waters=True)
    assert len(dry) == len(reference) == 937
    np.testing.assert_array_equal(dry.atom_name, reference.atom_name)
    np.testing.assert_array_equal(dry.element, reference.element)  # NA and CL ions included
    assert set(dry.element[dry.residue_name == "NA"]) == {"NA"} and set(dry.element[dry.residue_name == "CL"]) == {"CL"}
    assert not load(path, drop_waters=True, drop_hydrogens=True).is_hydrogen.any()


def test_charmm_tip3_waters_nucleotides_and_potassium() -> None:
    path = DATA / "1k5i_c36_tip3_cut.pdb.gz"
    with pytest.warns(StructureWarning, match="water residues: TIP3"):
        atoms = load(path)
    assert atoms.is_water.sum() == 60 * 3 and set(atoms.residue_name[atoms.is_water]) == {"TIP"}
    assert set(atoms.element[atoms.residue_name == "POT"]) == {"K"}
    rna = np.isin(atoms.residue_name, ["ADE", "GUA", "CYT", "URA"])
    assert set(atoms.element[rna]) == {"C", "H", "N", "O", "P"}
    assert (atoms.element[np.char.startswith(atoms.atom_name, "H")] == "H").all()  # H5'', H2'' ...
    dry = load(path, drop_waters=True, drop_hydrogens=True)
    assert not dry.is_water.any() and set(dry.element) == {"C", "N", "O", "P", "K"}


@pytest.mark.parametrize(
    ("name", "residue", "atoms", "element"),
    [
        ("OW", "SOL", 4, "O"), ("HW1", "SOL", 4, "H"), ("MW", "SOL", 4, "X"), ("OH2", "TIP3", 3, "O"),
        ("EPW", "WAT", 4, "X"), ("O", "HOH", 1, "O"), ("D1", "DOD", 3, "D"),
        ("CA", "LEU", 19, "C"), ("HG", "LEU", 19, "H"), ("CD", "ILE", 19, "C"), ("1HD1", "LEU", 19, "H"),
        ("CA", "ALA", 1, "C"),  # a C-alpha trace is carbon
        ("HE2", "HSD", 17, "H"), ("SE", "MSE", 17, "SE"), ("P", "GUA", 33, "P"),
        ("CA", "CA", 1, "CA"), ("POT", "POT", 1, "K"), ("SOD", "SOD", 1, "NA"), ("CLA", "CLA", 1, "CL"),
        ("NA", "NA+", 1, "NA"), ("K", "K", 1, "K"), ("ZN", "ZN", 1, "ZN"),
        ("FE", "HEM", 73, "FE"), ("CL1", "LIG", 20, "CL"), ("Br", "LIG", 20, "BR"), ("C12", "POPC", 134, "C"),
        ("LP1", "LIG", 20, "X"), ("F3", "LIG", 20, "F"),
        ("XX1", "LIG", 20, None), ("123", "LIG", 20, None), ("QQ", "QQ", 1, None),
    ],
)
def test_infer_element(name: str, residue: str, atoms: int, element: str | None) -> None:
    assert infer_element(name, residue, atoms) == element


def test_an_element_that_cannot_be_told_is_an_error(tmp_path: Path) -> None:
    text = _pdb_line(1, "C1", "LIG", "A", 1, (0, 0, 0), "") + _pdb_line(2, "XX1", "LIG", "A", 1, (1, 0, 0), "")
    path = tmp_path / "lig.pdb"
    path.write_text(text)
    with pytest.raises(StructureError, match=r"lig.pdb: cannot tell the element of 1 atom.*'XX1' in LIG"):
        load(path)


def test_crystallographic_files_with_partial_element_columns_do_not_warn(recwarn: pytest.WarningsRecorder) -> None:
    atoms = load(DATA / "2xcjA.pdb.gz")  # 250 side-chain atoms lack the column; the convention reads them right
    assert not [w for w in recwarn if issubclass(w.category, StructureWarning)]
    np.testing.assert_array_equal(atoms.element, load(DATA / "2xcjA.cif.gz").element)


# --- alternate locations (5PTI: GLU 7 at 0.7/0.3, MET 52 at 0.65/0.35) -------------------------------------


def test_altloc_modes_on_a_crystal_structure() -> None:
    path = DATA / "5PTI.cif.gz"
    everything = load(path, altloc="all")
    split = everything.altloc != ""
    assert split.sum() == 34
    np.testing.assert_allclose(np.unique(everything.occupancy[split]), [0.3, 0.35, 0.65, 0.7], atol=1e-6)
    for mode in ("first", "highest"):
        one = load(path, altloc=mode)
        assert len(one) == len(everything) - 17
        kept = one.altloc != ""
        assert set(one.altloc[kept]) == {"A"}  # A is both the first and the most occupied conformer
        np.testing.assert_allclose(one.occupancy[kept], 1.0)  # renormalised: 0.7 + 0.3
        np.testing.assert_array_equal(one.coords[kept], everything.coords[everything.altloc == "A"])
        # the total occupancy, i.e. the density an image integrates, is that of "all"
        assert one.occupancy.sum() == pytest.approx(everything.occupancy.sum(), rel=1e-6)


def test_altloc_highest_picks_one_conformer_per_residue(tmp_path: Path) -> None:
    lines = [
        _pdb_line(1, "CA", "SER", "A", 1, (0, 0, 0), "C"),
        _pdb_line(2, "CB", "SER", "A", 1, (1, 0, 0), "C", altloc="A", occ=0.3),
        _pdb_line(3, "OG", "SER", "A", 1, (2, 0, 0), "O", altloc="A", occ=0.3),
        _pdb_line(4, "CB", "SER", "A", 1, (1, 1, 0), "C", altloc="B", occ=0.7),
        _pdb_line(5, "OG", "SER", "A", 1, (2, 1, 0), "O", altloc="B", occ=0.7),
        _pdb_line(6, "O", "HOH", "A", 2, (9, 9, 9), "O", record="HETATM", altloc="A", occ=0.5),  # no alternative
    ]
    path = tmp_path / "alt.pdb"
    path.write_text("".join(lines))
    first, highest = load(path, altloc="first"), load(path, altloc="highest")
    assert first.altloc.tolist() == ["", "A", "A", "A"] and highest.altloc.tolist() == ["", "B", "B", "A"]
    np.testing.assert_allclose(highest.occupancy, [1, 1, 1, 0.5])  # a lone partial atom keeps its occupancy
    np.testing.assert_allclose(first.occupancy, highest.occupancy)
    np.testing.assert_allclose(load(path).occupancy, [1, 0.3, 0.3, 0.7, 0.7, 0.5])


# --- BinaryCIF ------------------------------------------------------------------------------------------


def test_binary_cif_reads_like_mmcif(tmp_path: Path) -> None:
    pytest.importorskip("biotite")
    reference = load(DATA / "5PTI.cif.gz")
    plain = tmp_path / "5PTI.bcif"
    plain.write_bytes(gzip.decompress((DATA / "5PTI.bcif.gz").read_bytes()))
    for path in (DATA / "5PTI.bcif.gz", plain):
        atoms = load(path)
        assert atoms.name == "5PTI"
        for key, column in reference.columns().items():
            np.testing.assert_array_equal(atoms.columns()[key], column, err_msg=key)


def test_binary_cif_without_biotite_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "biotite.structure.io.pdbx", None)
    with pytest.raises(StructureError, match="5PTI.bcif.gz: reading BinaryCIF needs the biotite package"):
        load(DATA / "5PTI.bcif.gz")
