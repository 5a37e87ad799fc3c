"""Context beyond one chain: crystal symmetry mates, biological assemblies, the non-LOI blocklist, and
the all-dense construction they make possible."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atompaint.origins import AtomDensity, OriginIndex, OriginParams, build_index, find_structures
from atompaint.structures import NON_LOI_RESIDUES, AtomTable, StructureError, is_non_loi, load
from atompaint.structures.symmetry import add_symmetry_mates
from atompaint.tasks.neighbor_loc import ConstructionError, NeighborLocConfig, NeighborLocDataset
from atompaint.voxelize import ImageParams


def pdb_atom(serial: int, name: str, resname: str, resid: int, xyz, element: str, het: bool = False) -> str:
    record = "HETATM" if het else "ATOM  "
    return (f"{record}{serial:5d} {name:<4s} {resname:>3s} A{resid:4d}    "
            f"{xyz[0]:8.3f}{xyz[1]:8.3f}{xyz[2]:8.3f}{1.0:6.2f}{10.0:6.2f}          {element:>2s}\n")


def cryst1(a: float, b: float, c: float, alpha: float, beta: float, gamma: float, group: str) -> str:
    return f"CRYST1{a:9.3f}{b:9.3f}{c:9.3f}{alpha:7.2f}{beta:7.2f}{gamma:7.2f} {group:<11s}   1\n"


#: A monoclinic cell (P 1 2 1: x,y,z and -x,y,-z); the zinc sits on the two-fold axis (x = z = 0).
MONOCLINIC = (30.0, 35.0, 40.0, 90.0, 100.0, 90.0, "P 1 2 1")
PEPTIDE = [("N", (4.0, 3.0, 5.0), "N"), ("CA", (5.2, 3.5, 5.6), "C"), ("C", (6.1, 2.4, 6.2), "C"),
           ("O", (6.0, 1.2, 5.9), "O")]


@pytest.fixture(scope="module")
def crystal_pdb(tmp_path_factory) -> Path:
    lines = [cryst1(*MONOCLINIC)]
    lines += [pdb_atom(i + 1, name, "GLY", 1, xyz, el) for i, (name, xyz, el) in enumerate(PEPTIDE)]
    lines.append(pdb_atom(5, "ZN", "ZN", 101, (0.0, 7.0, 0.0), "ZN", het=True))
    lines.append(pdb_atom(6, "C1", "GOL", 102, (8.0, 3.0, 5.0), "C", het=True))
    lines.append("END\n")
    path = tmp_path_factory.mktemp("crystal") / "mono.pdb"
    path.write_text("".join(lines))
    return path


ASSEMBLY_CIF = """data_DIMR
_cell.length_a 1.000
_cell.length_b 1.000
_cell.length_c 1.000
_cell.angle_alpha 90
_cell.angle_beta 90
_cell.angle_gamma 90
_entity.id 1
_entity.type polymer
loop_
_atom_site.group_PDB
_atom_site.id
_atom_site.type_symbol
_atom_site.label_atom_id
_atom_site.label_alt_id
_atom_site.label_comp_id
_atom_site.label_asym_id
_atom_site.label_entity_id
_atom_site.label_seq_id
_atom_site.pdbx_PDB_ins_code
_atom_site.Cartn_x
_atom_site.Cartn_y
_atom_site.Cartn_z
_atom_site.occupancy
_atom_site.B_iso_or_equiv
_atom_site.auth_seq_id
_atom_site.auth_asym_id
_atom_site.pdbx_PDB_model_num
ATOM 1 N N . GLY A 1 1 ? 4.000 3.000 5.000 1.00 10.00 1 A 1
ATOM 2 C CA . GLY A 1 1 ? 5.200 3.500 5.600 1.00 10.00 1 A 1
ATOM 3 C C . GLY A 1 1 ? 6.100 2.400 6.200 1.00 10.00 1 A 1
ATOM 4 O O . GLY A 1 1 ? 6.000 1.200 5.900 1.00 10.00 1 A 1
#
loop_
_pdbx_struct_assembly.id
_pdbx_struct_assembly.details
_pdbx_struct_assembly.oligomeric_count
_pdbx_struct_assembly.method_details
_pdbx_struct_assembly.oligomeric_details
1 author_defined_assembly 2 ? dimeric
#
loop_
_pdbx_struct_assembly_gen.assembly_id
_pdbx_struct_assembly_gen.oper_expression
_pdbx_struct_assembly_gen.asym_id_list
1 1,2 A
#
loop_
_pdbx_struct_oper_list.id
_pdbx_struct_oper_list.type
_pdbx_struct_oper_list.matrix[1][1]
_pdbx_struct_oper_list.matrix[1][2]
_pdbx_struct_oper_list.matrix[1][3]
_pdbx_struct_oper_list.vector[1]
_pdbx_struct_oper_list.matrix[2][1]
_pdbx_struct_oper_list.matrix[2][2]
_pdbx_struct_oper_list.matrix[2][3]
_pdbx_struct_oper_list.vector[2]
_pdbx_struct_oper_list.matrix[3][1]
_pdbx_struct_oper_list.matrix[3][2]
_pdbx_struct_oper_list.matrix[3][3]
_pdbx_struct_oper_list.vector[3]
1 'identity operation' 1 0 0 0 0 1 0 0 0 0 1 0
2 'crystal symmetry operation' -1 0 0 20.0 0 -1 0 0.0 0 0 1 0
"""


def monoclinic_mates(asu: np.ndarray, radius: float) -> np.ndarray:
    """Brute force: every image of the file's atoms under P 1 2 1 and lattice translations up to 3
    cells, within ``radius`` of a file atom and not on top of one (special positions)."""
    a, b, c, _, beta, _, _ = MONOCLINIC
    beta = np.radians(beta)
    orth = np.array([[a, 0, c * np.cos(beta)], [0, b, 0], [0, 0, c * np.sin(beta)]])
    frac = asu @ np.linalg.inv(orth).T
    found = []
    for rot in (np.eye(3), np.diag([-1.0, 1.0, -1.0])):
        for shift in itertools.product(range(-3, 4), repeat=3):
            if np.array_equal(rot, np.eye(3)) and not any(shift):
                continue
            cart = (frac @ rot.T + shift) @ orth.T
            d = np.linalg.norm(cart[:, None] - asu[None], axis=2).min(axis=1)
            found.extend(cart[(d <= radius) & (d > 0.1)])
    return np.array(found).reshape(-1, 3)


def sorted_rows(x: np.ndarray) -> np.ndarray:
    x = np.round(np.asarray(x, dtype=np.float64), 2)
    return x[np.lexsort(x.T[::-1])]


@settings(max_examples=10, deadline=None)
@given(radius=st.floats(8.0, 30.0))
def test_crystal_mates_are_every_symmetry_image_within_the_radius(radius: float, crystal_pdb: Path) -> None:
    own = load(crystal_pdb)
    atoms = load(crystal_pdb, context="crystal", context_radius_A=radius)
    assert np.array_equal(atoms.coords[: len(own)], own.coords) and not atoms.symmetry_copy[: len(own)].any()
    mates = atoms.coords[len(own):]
    np.testing.assert_allclose(sorted_rows(mates), sorted_rows(monoclinic_mates(own.coords.astype(float), radius)),
                               atol=0.02)
    assert (atoms.symmetry_copy[len(own):] > 0).all()
    zinc = own.coords[own.element == "ZN"][0]
    assert np.linalg.norm(atoms.coords[atoms.element == "ZN"] - zinc, axis=1).min() == 0  # not doubled
    assert (np.linalg.norm(atoms.coords[atoms.symmetry_copy > 0][:, None] - own.coords[None], axis=2) > 0.1).all()


def test_crystal_context_makes_a_lattice_dense_in_every_direction(tmp_path: Path) -> None:
    """One 30-atom cluster in a P 1 cube of side D: with its mates every neighbour centre (and every
    neighbour of those) is dense, so all-dense accepts the first draw; the bare file allows none."""
    rng = np.random.default_rng(0)
    lines = [cryst1(16.4, 16.4, 16.4, 90, 90, 90, "P 1")]
    lines += [pdb_atom(i + 1, "CA", "ALA", i + 1, 8.2 + 0.3 * rng.normal(size=3), "C") for i in range(30)]
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "lattice.pdb").write_text("".join(lines) + "END\n")
    image = ImageParams(length_voxels=9, resolution_A=1.6)  # 14.4 A + 2 A padding = 16.4 A
    config = NeighborLocConfig(image=image, construction="all-dense", random_orientation=False, b_max_draws=5)
    for context, dense in (("crystal", True), ("file", False)):
        db = tmp_path / f"{context}.db"
        build_index(find_structures(tmp_path / "s"), db, OriginParams(context=context))
        assert OriginIndex(db).params.context == context
        ds = NeighborLocDataset(db, config, length=3)
        if dense:
            ex = ds.example(0)
            assert ex.b_draws == 1 and ex.mask.all() and not ex.b_fallback
            assert float(ds[0].view_b.sum()) > 0
        else:
            with pytest.raises(ConstructionError, match="most dense directions seen was 0 of 6"):
                ds.example(0)


def test_assembly_context_builds_the_first_assembly(tmp_path: Path) -> None:
    path = tmp_path / "dimer.cif"
    path.write_text(ASSEMBLY_CIF)
    own = load(path)
    both = load(path, context="assembly")
    assert len(both) == 2 * len(own) and len(set(both.chain.tolist())) == 2
    flipped = own.coords.astype(float) * [-1, -1, 1] + [20.0, 0, 0]
    np.testing.assert_allclose(sorted_rows(both.coords), sorted_rows(np.concatenate([own.coords, flipped])),
                               atol=1e-3)
    assert not both.symmetry_copy.any()  # the assembly is the structure: all of it may hold origins


def test_a_context_the_file_lacks_is_an_error(crystal_pdb: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare.pdb"
    bare.write_text("".join(line for line in crystal_pdb.read_text().splitlines(keepends=True)
                            if not line.startswith("CRYST1")))
    with pytest.raises(StructureError, match="no crystal cell and space group"):
        load(bare, context="crystal")
    with pytest.raises(StructureError, match="no biological assembly"):
        load(crystal_pdb, context="assembly")
    with pytest.raises(ValueError, match="context must be one of"):
        load(crystal_pdb, context="lattice")
    with pytest.raises(ValueError, match="radius_A must be positive"):
        add_symmetry_mates(load(crystal_pdb), np.eye(3) * 30, [np.eye(4)], 0.0)


def test_non_loi_residues_neither_count_nor_become_origins(crystal_pdb: Path) -> None:
    atoms = load(crystal_pdb)
    flagged = is_non_loi(atoms)
    assert atoms.residue_name[flagged].tolist() == ["ZN", "GOL"]
    assert {"GOL", "SO4", "ACT", "PO4", "DMS", "BME", "UNX", "EDO"} <= NON_LOI_RESIDUES
    params = OriginParams(min_atoms=0)
    assert len(AtomDensity(atoms, params)) == len(atoms) - 2
    kept = AtomDensity(atoms, OriginParams(min_atoms=0, drop_non_loi=False))
    assert len(kept) == len(atoms) and len(kept.origins()[0]) == len(atoms)
    assert AtomDensity(atoms, params).count(np.array([8.0, 3.0, 5.0])) < kept.count(np.array([8.0, 3.0, 5.0]))
    capped = AtomTable.from_arrays(np.zeros((2, 3)), ["C", "C"], residue_name=["ACE", "ACE"],
                                   entity_type=["polymer", "non-polymer"])
    assert is_non_loi(capped).tolist() == [False, True]  # a cap built into the chain stays


def test_index_records_the_blocklist_setting_and_refuses_another(crystal_pdb: Path, tmp_path: Path) -> None:
    """(The DataModule compares ``OriginIndex.params`` with ``data.origins``: test_dataset.py.)"""
    db = tmp_path / "origins.db"
    build_index([crystal_pdb], db, OriginParams(min_atoms=1))
    assert OriginIndex(db).params == OriginParams(min_atoms=1)
    assert OriginIndex(db).params != OriginParams(min_atoms=1, drop_non_loi=False)
    with pytest.raises(ValueError, match="origin_params"):
        build_index([crystal_pdb], db, OriginParams(min_atoms=1, drop_non_loi=False))


def test_indexes_written_before_the_blocklist_kept_the_additives() -> None:
    old = {"radius_A": 5.0, "min_atoms": 25.0, "occupancy_weighted": True, "elements": ["C"]}
    params = OriginParams.from_dict(old)
    assert not params.drop_non_loi and params.elements == ("C",) and params.context == "file"
