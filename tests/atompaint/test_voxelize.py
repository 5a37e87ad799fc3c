"""Voxelization: exact overlap volumes, equivalence with macromol_voxelize, conservation, errors, CLI."""

from __future__ import annotations

from pathlib import Path

import macromol_voxelize as mmvox
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from atompaint.cli import main as cli_main
from atompaint.structures import AtomTable, load
from atompaint.voxelize import (
    ImageParams,
    PreparedAtoms,
    kernel,
    octant_volume,
    random_rotation,
    rasterize,
    sphere_box_overlap,
    voxelize,
)

DATA = Path(__file__).parent / "data"
CHANNELS = [["C"], ["N"], ["O"], ["S", "SE"], ["*"]]


def _reference_image(atoms: AtomTable, center, radius, fill, length=21, resolution=0.75, rotation=None):
    """The macromol_voxelize image of the same atoms (rotated about the centre like ours)."""
    coords = atoms.coords.astype(np.float64)
    if rotation is not None:
        coords = (coords - center) @ rotation.T + center
    df = pl.DataFrame(
        {
            "x": coords[:, 0],
            "y": coords[:, 1],
            "z": coords[:, 2],
            "element": atoms.element.tolist(),
            "occupancy": atoms.occupancy.astype(np.float64),
        }
    )
    if isinstance(radius, dict):
        radius_of = pl.col("element").replace_strict(radius, default=radius["*"], return_dtype=pl.Float64)
        df = df.with_columns(radius_A=radius_of)
    else:
        df = mmvox.set_atom_radius_A(df, radius)
    df = mmvox.set_atom_channels_by_element(df, CHANNELS)
    algorithm = {"overlap_A3": mmvox.FillAlgorithm.OverlapA3, "fraction_atom": mmvox.FillAlgorithm.FractionAtom}[fill]
    grid = mmvox.Grid(length_voxels=length, resolution_A=resolution, center_A=np.asarray(center, dtype=np.float64))
    params = mmvox.ImageParams(channels=len(CHANNELS), grid=grid, fill_algorithm=algorithm)
    image, _ = mmvox.image_from_atoms(df, params)
    return image


@pytest.mark.parametrize("name", ["2xdgA", "2xcjA", "2cviA"])
@pytest.mark.parametrize("fill", ["overlap_A3", "fraction_atom"])
def test_matches_macromol_voxelize_on_real_structures(name: str, fill: str) -> None:
    atoms = load(DATA / f"{name}.pdb.gz", drop_hydrogens=True)
    rng = np.random.default_rng(len(name) + len(fill))
    for trial in range(4):
        center = atoms.coords[rng.integers(len(atoms))].astype(np.float64) + rng.normal(size=3)
        rotation = random_rotation(rng) if trial % 2 else None
        ours = voxelize(atoms, center, channels=CHANNELS, radius_A=0.5, fill=fill, rotation=rotation)
        ref = _reference_image(atoms, center, 0.5, fill, rotation=rotation)
        assert ours.shape == ref.shape == (5, 21, 21, 21) and ours.dtype == np.float32
        assert ref.sum() > 1
        # float32 output of values up to one voxel volume (0.42 A^3): rounding alone is < 3e-8.
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_matches_macromol_voxelize_with_per_element_radii_and_other_grid() -> None:
    atoms = load(DATA / "2xdgA.pdb.gz", drop_hydrogens=True)
    radius = {"C": 0.8, "N": 0.7, "O": 0.65, "S": 1.0, "*": 0.9}
    center = atoms.coords.mean(axis=0).astype(np.float64)
    ours = voxelize(atoms, center, length_voxels=16, resolution_A=1.0, channels=CHANNELS, radius_A=radius)
    ref = _reference_image(atoms, center, radius, "overlap_A3", length=16, resolution=1.0)
    np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)


def test_octant_and_box_volumes_match_numerical_integration() -> None:
    for a, b, c in [(0.2, 0.3, 0.1), (0.0, 0.7, 0.2)]:
        numeric, _ = integrate.tplquad(
            lambda z, y, x: 1.0,
            a,
            1,
            lambda x, b=b: b,
            lambda x: np.sqrt(max(1 - x * x, 0)),
            lambda x, y, c=c: c,
            lambda x, y, c=c: max(np.sqrt(max(1 - x * x - y * y, 0)), c),
            epsabs=1e-9,
        )
        assert octant_volume(a, b, c, 1.0) == pytest.approx(numeric, abs=1e-7)
    assert octant_volume(0, 0, 0, 2.0) * 8 == pytest.approx(4 / 3 * np.pi * 8)
    cap = np.pi * 0.5**2 * (2 * 1 + 0.5) / 3  # cap of height 0.5 of the unit sphere
    assert sphere_box_overlap([0, 0, 0], 1.0, [-5, -5, 0.5], [5, 5, 5]) == pytest.approx(cap)
    assert sphere_box_overlap([0, 0, 0], 1.0, [2, 2, 2], [3, 3, 3]) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.tuples(*[st.floats(-1, 1)] * 3), min_size=1, max_size=6),
    radius=st.floats(0.2, 1.6),
    resolution=st.floats(0.4, 1.2),
    occupancy=st.floats(0.1, 1.0),
    fill=st.sampled_from(["overlap_A3", "fraction_atom", "fraction_voxel"]),
)
def test_total_overlap_is_conserved_for_atoms_inside_the_image(offsets, radius, resolution, occupancy, fill) -> None:
    params = ImageParams(length_voxels=11, resolution_A=resolution, channels=(("*",),), radius_A=radius, fill=fill)
    room = params.length_A / 2 - radius  # atom centres at most this far from the centre stay inside
    if room <= 0:
        return
    rel = np.array(offsets) * room * 0.999
    image = rasterize(rel, np.full(len(rel), radius), np.full(len(rel), occupancy), np.zeros(len(rel), int), params)
    volume = 4 / 3 * np.pi * radius**3
    per_atom = {"overlap_A3": volume, "fraction_atom": 1.0, "fraction_voxel": volume / resolution**3}[fill]
    assert image.min() >= 0
    assert float(image.astype(np.float64).sum()) == pytest.approx(len(rel) * occupancy * per_atom, rel=1e-5)


def test_spatial_index_drops_no_atom_that_touches_the_image() -> None:
    chain = load(DATA / "2cviA.pdb.gz", drop_hydrogens=True)
    far_copy = AtomTable(**{**chain.columns(), "coords": chain.coords + np.float32(80.0)})
    atoms = AtomTable.concatenate([chain, far_copy])
    params = ImageParams()
    prepared = PreparedAtoms(atoms, params)
    rng = np.random.default_rng(1)
    for _ in range(3):
        center = chain.coords[rng.integers(len(chain))].astype(np.float64)
        rotation = random_rotation(rng)
        everything = rasterize(
            (prepared.coords - center) @ rotation.T, prepared.radius, prepared.occupancy, prepared.channel_mask, params
        )
        assert len(prepared.candidates(center)) < len(prepared) / 2
        np.testing.assert_allclose(prepared.image(center, rotation), everything, atol=1e-6)


def test_batched_images_equal_single_images_and_rotation_permutes_axes() -> None:
    atoms = load(DATA / "2xdgA.pdb.gz", drop_hydrogens=True)
    prepared = PreparedAtoms(atoms, ImageParams(length_voxels=15))
    centers = atoms.coords[:5].astype(np.float64)
    rotations = np.stack([random_rotation(np.random.default_rng(i)) for i in range(5)])
    batch = prepared.images(centers, rotations)
    for i in range(5):
        np.testing.assert_array_equal(batch[i], prepared.image(centers[i], rotations[i]))
    quarter_turn_z = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # x -> y, y -> -x
    plain = prepared.image(centers[0])
    turned = prepared.image(centers[0], quarter_turn_z)
    np.testing.assert_allclose(turned, np.rot90(plain, 1, axes=(1, 2)), atol=1e-6)


needs_numba = pytest.mark.skipif(not kernel.AVAILABLE, reason="numba is not installed")


@needs_numba
@pytest.mark.parametrize(
    "params",
    [
        ImageParams(),
        ImageParams(
            length_voxels=12,
            resolution_A=0.6,
            channels=(("C",), ("C", "N"), ("*",)),  # carbons in two channels
            radius_A={"C": 0.8, "N": 0.7, "*": 1.1},
            fill="fraction_atom",
        ),
    ],
)
def test_numba_and_numpy_backends_agree(params: ImageParams) -> None:
    atoms = load(DATA / "2xcjA.pdb.gz", drop_hydrogens=True)
    rng = np.random.default_rng(3)
    centers = atoms.coords[rng.integers(len(atoms), size=4)].astype(np.float64) + rng.normal(size=(4, 3))
    rotations = np.stack([random_rotation(rng) for _ in range(4)])
    fast = PreparedAtoms(atoms, params, backend="numba").images(centers, rotations)
    slow = PreparedAtoms(atoms, params, backend="numpy").images(centers, rotations)
    assert fast.sum() > 1
    np.testing.assert_allclose(fast, slow, atol=1e-6, rtol=0)
    auto = PreparedAtoms(atoms, params).images(centers[:1])
    np.testing.assert_array_equal(auto, PreparedAtoms(atoms, params, backend="numba").images(centers[:1]))


def test_kernel_octant_matches_numpy_octant_volume() -> None:
    rng = np.random.default_rng(0)
    points = np.abs(rng.normal(scale=0.5, size=(300, 3)))
    points[::3, 0] = 0.0  # offsets on the axes and planes: the special cases of the closed form
    points[::5, 1:] = 0.0
    points[7] = 0.0
    radius = 1.0
    points = points[(points**2).sum(axis=1) < radius**2]
    expected = octant_volume(points[:, 0], points[:, 1], points[:, 2], radius)
    got = np.array([kernel._octant(a, b, c, radius) for a, b, c in points])
    np.testing.assert_allclose(got, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("backend", ["numpy", pytest.param("numba", marks=needs_numba)])
def test_atoms_in_several_channels_fill_each_of_them(backend: str) -> None:
    atoms = AtomTable.from_arrays([[0.3, 0, 0], [-0.6, 0.2, 0.1], [0, 1.0, 0]], ["C", "N", "O"])
    params = ImageParams(length_voxels=7, channels=(("C",), ("N",), ("C", "N")))
    image = PreparedAtoms(atoms, params, backend=backend).image([0.0, 0.0, 0.0])
    assert image[0].sum() > 0 and image[1].sum() > 0
    np.testing.assert_allclose(image[2], image[0] + image[1], atol=1e-7)


def test_unknown_backend_raises() -> None:
    with pytest.raises(ValueError, match="backend"):
        rasterize(np.zeros((1, 3)), np.ones(1), np.ones(1), np.zeros(1, int), ImageParams(), backend="cuda")


def test_without_numba_the_numpy_path_is_used(monkeypatch) -> None:
    monkeypatch.setattr(kernel, "AVAILABLE", False)
    monkeypatch.setattr(kernel, "rasterize_into", None)  # would fail if called
    atoms = AtomTable.from_arrays([[0.3, 0, 0]], ["C"])
    image = voxelize(atoms, [0.0, 0.0, 0.0], length_voxels=5)
    assert image.sum() == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=1e-5)
    with pytest.raises(ValueError, match="needs the numba package"):
        rasterize(np.zeros((1, 3)), np.ones(1), np.ones(1), np.zeros(1, int), ImageParams(), backend="numba")


def test_single_atom_sits_in_the_expected_voxels() -> None:
    atom = AtomTable.from_arrays([[10.0, 20.0, 30.0]], ["N"])
    image = voxelize(atom, [10.0, 20.0, 30.0], length_voxels=5, resolution_A=1.0, radius_A=0.4)
    assert image.shape == (5, 5, 5, 5)
    assert image[1, 2, 2, 2] == pytest.approx(4 / 3 * np.pi * 0.4**3, rel=1e-6)  # nitrogen channel, centre voxel
    assert image.sum() == pytest.approx(image[1, 2, 2, 2])
    off = voxelize(atom, [10.0, 20.0, 30.0 - 1.0], length_voxels=5, resolution_A=1.0, radius_A=0.4)
    assert off[1, 2, 2, 3] == pytest.approx(image[1, 2, 2, 2], rel=1e-6)  # one voxel along +z


def test_radius_map_needs_only_the_imaged_elements() -> None:
    """A per-element radius map must cover the elements that are imaged; an element in no channel
    (here zinc) needs no radius.  An imaged element without one is a clear error."""
    atoms = AtomTable.from_arrays([[0, 0, 0], [1, 0, 0], [0, 1, 0]], ["C", "N", "ZN"])
    image = voxelize(atoms, [0, 0, 0], channels=[["C"], ["N"]], radius_A={"C": 0.7, "N": 0.6}, length_voxels=7)
    assert image[0].sum() == pytest.approx(4 / 3 * np.pi * 0.7**3, rel=1e-5)
    assert image[1].sum() == pytest.approx(4 / 3 * np.pi * 0.6**3, rel=1e-5)
    with pytest.raises(ValueError, match=r"no radius for element\(s\) \['ZN'\]"):
        voxelize(atoms, [0, 0, 0], channels=[["C"], ["N"], ["*"]], radius_A={"C": 0.7, "N": 0.6})


def test_prepared_atoms_refuse_conflicting_image_parameters() -> None:
    """``voxelize(PreparedAtoms, ...)`` cannot change the image the atoms were prepared for: a keyword
    that contradicts them is an error naming it; one that repeats them is accepted."""
    atoms = AtomTable.from_arrays([[0, 0, 0], [1, 0, 0]], ["C", "N"])
    params = ImageParams(length_voxels=9, resolution_A=1.0, radius_A={"C": 0.7, "*": 0.5})
    prepared = PreparedAtoms(atoms, params)
    expected = prepared.image(np.zeros(3))
    with pytest.raises(ValueError, match=r"length_voxels=5 \(built with 9\)"):
        voxelize(prepared, [0, 0, 0], length_voxels=5)
    with pytest.raises(ValueError, match="fill="):
        voxelize(prepared, [0, 0, 0], fill="fraction_atom", resolution_A=1.0)
    with pytest.raises(ValueError, match="differ"):
        voxelize(prepared, [0, 0, 0], ImageParams())
    np.testing.assert_array_equal(voxelize(prepared, [0, 0, 0], length_voxels=9, resolution_A=1.0), expected)
    np.testing.assert_array_equal(voxelize(prepared, [0, 0, 0], radius_A={"*": 0.5, "c": 0.7}), expected)
    np.testing.assert_array_equal(voxelize(prepared, [0, 0, 0], params), expected)


def test_elements_in_no_channel_are_left_out() -> None:
    atoms = AtomTable.from_arrays([[0, 0, 0], [1, 0, 0]], ["C", "ZN"])
    only_carbon = voxelize(atoms, [0, 0, 0], channels=[["C"]], length_voxels=7)
    star = voxelize(atoms, [0, 0, 0], channels=[["C"], ["*"]], length_voxels=7)
    assert only_carbon.shape[0] == 1
    np.testing.assert_allclose(star[0], only_carbon[0])
    assert star[1].sum() == pytest.approx(4 / 3 * np.pi * 0.5**3, rel=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"length_voxels": 0}, "length_voxels"),
        ({"resolution_A": -1.0}, "resolution_A"),
        ({"channels": ["C", "N"]}, "list of elements"),
        ({"channels": []}, "channels"),
        ({"radius_A": 0.0}, "radii must be positive"),
        ({"fill": "gaussian"}, "unknown fill"),
        ({"rotation": np.eye(3) * 2}, "rotation"),
        ({"rotation": np.diag([1.0, 1.0, -1.0])}, "proper rotation"),
        ({"radius_A": {"C": 0.5}}, "no radius for element"),
    ],
)
def test_bad_parameters_raise_clear_errors(kwargs, message) -> None:
    atoms = AtomTable.from_arrays([[0, 0, 0], [1, 0, 0]], ["C", "N"])
    with pytest.raises(ValueError, match=message):
        voxelize(atoms, [0, 0, 0], **kwargs)


def test_bad_center_raises() -> None:
    atoms = AtomTable.from_arrays([[0, 0, 0]], ["C"])
    for center in ([0, 0], [0, np.nan, 0]):
        with pytest.raises(ValueError, match="center"):
            voxelize(atoms, center)


def test_cli_writes_image_and_slices(tmp_path: Path, capsys) -> None:
    out, png = tmp_path / "img.npz", tmp_path / "slices.png"
    structure = DATA / "2xdgA.pdb.gz"
    center = load(structure).coords[10]
    arg = ",".join(f"{v:.3f}" for v in center)
    args = ["voxelize", str(structure), "--center", arg, "--rotate", "--length", "9", "--out", str(out)]
    assert cli_main([*args, "--plot", str(png)]) == 0
    saved = np.load(out)
    assert saved["image"].shape == (5, 9, 9, 9) and saved["image"].sum() > 1
    atoms = load(structure, drop_hydrogens=True, altloc="first")
    expected = voxelize(atoms, saved["center_A"], length_voxels=9, rotation=saved["rotation"])
    np.testing.assert_allclose(saved["image"], expected)
    assert png.stat().st_size > 1000
    assert cli_main(["voxelize", str(structure), "--center", "1,2", "--out", str(out)]) == 2
    assert "--center" in capsys.readouterr().err


def test_cli_deprecated_png_still_draws_and_warns(tmp_path: Path, capsys) -> None:
    png = tmp_path / "old.png"
    args = ["voxelize", str(DATA / "2xdgA.pdb.gz"), "--length", "5", "--out", str(tmp_path / "img.npz")]
    with pytest.warns(FutureWarning, match="--png"):
        assert cli_main([*args, "--png", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert "--png is deprecated; use --plot" in capsys.readouterr().err


def test_cli_image_defaults_come_from_image_params(tmp_path: Path) -> None:
    out = tmp_path / "img.npz"
    assert cli_main(["voxelize", str(DATA / "2xdgA.pdb.gz"), "--out", str(out)]) == 0
    saved = np.load(out)
    default = ImageParams()
    assert saved["image"].shape == default.shape
    assert float(saved["resolution_A"]) == default.resolution_A
    assert [tuple(c.split(",")) for c in saved["channels"]] == list(default.channels)
