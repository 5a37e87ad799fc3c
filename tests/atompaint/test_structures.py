"""Loading structures into atom tables: formats, filtering options, and clear errors for bad files."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import gemmi
import numpy as np
import pytest

from atompaint.structures import AtomTable, StructureError, load, structure_name

DATA = Path(__file__).parent / "data"
PDB_FILES = sorted(DATA.glob("*.pdb.gz"))


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
        (b"\x83\xa7version\xa50.3.0", "x.bcif", "binary CIF"),
        (b"ATOM", "notes.txt", "unrecognised structure format"),
    ],
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
        load(mixed_pdb, altloc="best")
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
