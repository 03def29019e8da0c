"""Tests of rhoprop.io: reading real VASP files, cube and XSF, writers, compression, corrupt input."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import shutil
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.io.cube import write_cube as ase_write_cube
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.vasp.outputs import Chgcar
from typer.testing import CliRunner

from rhoprop.cli import app
from rhoprop.errors import DensityFormatError, SpeciesRequiredError
from rhoprop.io import Density, _files, detect_format, read_density, write_chgcar, write_cube
from rhoprop.io.cube import BOHR3_PER_ANG3

SPIN = "CHGCAR.LiCoO2_spin.gz"
VASP4 = "CHGCAR.vasp4_8atom_nospecies.gz"
VASP5_POSCAR_FOR_VASP4 = """graphite-like C8, species for the VASP 4 fixture
1.0
     2.467220    0.000003    0.000000
     0.000005    4.267452   -0.000001
     0.000000   -0.000001    7.130494
   C
   8
Direct
  0.000405  0.000000  0.500000
  0.000400 -0.000005  0.000000
  0.500366  0.166537  0.500000
  0.500365  0.500011  0.500000
  0.500366  0.499995  0.000000
  0.000396  0.333464  0.000000
  0.500363  0.833464  0.000000
  0.000396  0.666536  0.500000
"""


@pytest.fixture(scope="module")
def spin_lines(fixtures_dir: Path) -> list[str]:
    """Lines of the decompressed spin-polarized LiCoO2 CHGCAR."""
    return gzip.decompress((fixtures_dir / SPIN).read_bytes()).decode().split("\n")


@pytest.fixture(scope="module")
def vasp4_lines(fixtures_dir: Path) -> list[str]:
    """Lines of the decompressed VASP 4 CHGCAR."""
    return gzip.decompress((fixtures_dir / VASP4).read_bytes()).decode().split("\n")


@pytest.fixture(scope="module")
def spin_density(fixtures_dir: Path) -> Density:
    """The LiCoO2 spin density, read once."""
    return read_density(fixtures_dir / SPIN)


@pytest.fixture(scope="module")
def small_density(spin_density: Density) -> Density:
    """A coarse (14x8x15) copy of the LiCoO2 density with a non-collinear magnetization field."""
    total = np.ascontiguousarray(spin_density.total[::4, ::4, ::4])
    x = np.linspace(0, 2 * np.pi, total.size).reshape(total.shape)
    spin = np.stack([0.01 * np.sin(x), 0.02 * np.cos(x), 0.005 * np.sin(2 * x)])
    return Density(total=total, structure=spin_density.structure, spin=spin, source="coarse LiCoO2")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines))
    return path


def _grid_line(lines: list[str]) -> int:
    """Index of the first grid line (nx ny nz) of a VASP file."""
    return (
        lines.index("", 1) + 1
        if "" in lines[1:]
        else next(i for i, x in enumerate(lines) if not x.strip()) + 1
    )


# --- real VASP files -----------------------------------------------------------------------------


def test_spin_chgcar_fixture_has_48_electrons_and_a_magnetization_block(
    spin_density: Density,
) -> None:
    d = spin_density
    assert d.shape == (56, 32, 60)
    assert d.electron_count() == pytest.approx(48.0, abs=1e-3)
    assert d.spin is not None and d.spin.shape == d.shape and not d.is_noncollinear
    assert d.structure.composition.reduced_formula == "LiCoO2"
    assert len(d.structure) == 8
    assert (d.fmt, d.code) == ("chgcar", "vasp")
    assert d.meta["augmentation"] is True
    assert d.meta["vasp_format"] == 5 and d.meta["compression"] == "gzip"


def test_chgcar_values_are_pymatgen_grid_divided_by_volume(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    plain = tmp_path / "CHGCAR"
    plain.write_bytes(gzip.decompress((fixtures_dir / SPIN).read_bytes()))
    reference = Chgcar.from_file(str(plain))
    density = read_density(plain)
    volume = reference.structure.volume
    np.testing.assert_allclose(density.total, reference.data["total"] / volume, rtol=1e-14)
    np.testing.assert_allclose(
        density.spin, reference.data["diff"] / volume, rtol=1e-14, atol=1e-300
    )
    assert density.total.min() > 0 and density.total.max() < 100  # e/Å³, not ρ·V


def test_vasp4_file_is_refused_without_species(fixtures_dir: Path) -> None:
    with pytest.raises(SpeciesRequiredError) as info:
        read_density(fixtures_dir / VASP4)
    message = str(info.value)
    assert (
        VASP4 in message and "[8]" in message and "--species" in message and "species=" in message
    )


def test_vasp4_file_reads_32_electrons_once_species_are_given(fixtures_dir: Path) -> None:
    density = read_density(fixtures_dir / VASP4, species=["C"])
    assert density.shape == (32, 60, 90)
    assert density.electron_count() == pytest.approx(32.0, abs=1e-3)
    assert density.structure.composition.formula == "C8"
    assert density.spin is None
    assert density.meta["vasp_format"] == 4 and density.meta["species_source"] == "argument"
    as_text = read_density(fixtures_dir / VASP4, species="C")
    np.testing.assert_array_equal(as_text.total, density.total)


def test_vasp4_species_count_must_match_the_atom_groups(fixtures_dir: Path) -> None:
    with pytest.raises(DensityFormatError, match="1 species group"):
        read_density(fixtures_dir / VASP4, species=["C", "O"])
    with pytest.raises(DensityFormatError, match="not element symbols"):
        read_density(fixtures_dir / VASP4, species=["Carbon"])


def test_vasp4_species_are_taken_from_a_poscar_beside_the_file(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(fixtures_dir / VASP4, tmp_path / VASP4)
    (tmp_path / "POSCAR").write_text(VASP5_POSCAR_FOR_VASP4)
    density = read_density(tmp_path / VASP4)
    assert density.structure.composition.formula == "C8"
    assert density.meta["species_source"] == str(tmp_path / "POSCAR")
    assert density.electron_count() == pytest.approx(32.0, abs=1e-3)


def test_poscar_with_other_atom_counts_is_not_used_for_species(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(fixtures_dir / VASP4, tmp_path / VASP4)
    (tmp_path / "POSCAR").write_text(
        VASP5_POSCAR_FOR_VASP4.replace("   C\n   8\n", "   C  O\n   4  4\n")
    )
    with pytest.raises(SpeciesRequiredError, match=r"POSCAR: atom counts \[4, 4\] differ"):
        read_density(tmp_path / VASP4)


def test_vasp4_species_are_taken_from_an_outcar_beside_the_file(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(fixtures_dir / VASP4, tmp_path / "CHGCAR.gz")
    (tmp_path / "OUTCAR").write_text(
        " vasp.5.4.4 complex\n POTCAR:    PAW_PBE C 08Apr2002\n   TITEL  = PAW_PBE C 08Apr2002\n"
        "   VRHFIN =C: s2p2\n   ions per type =               8\n"
    )
    density = read_density(tmp_path / "CHGCAR.gz")
    assert density.structure.composition.formula == "C8"
    assert density.meta["species_source"].endswith("OUTCAR")


def test_files_that_name_their_species_keep_them_whatever_species_are_passed(
    fixtures_dir: Path, small_density: Density, tmp_path: Path
) -> None:
    vasp5 = read_density(
        fixtures_dir / SPIN, species=["C"]
    )  # a dataset-wide --species for VASP 4 files
    assert vasp5.structure.composition.reduced_formula == "LiCoO2"
    assert vasp5.meta["species_source"] == "file"
    cube = read_density(write_cube(small_density, tmp_path / "a.cube"), species="C")
    assert cube.structure.composition.reduced_formula == "LiCoO2"


# --- writers and round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["CHGCAR", "CHGCAR.gz"])
def test_chgcar_round_trip_keeps_values_spin_and_structure(
    spin_density: Density, tmp_path: Path, name: str
) -> None:
    path = write_chgcar(spin_density, tmp_path / name)
    back = read_density(path)
    # CHGCAR text holds 11 significant digits of rho*V; the lattice 6 decimals (as VASP writes it)
    np.testing.assert_allclose(back.total, spin_density.total, rtol=1e-10)
    np.testing.assert_allclose(
        back.spin, spin_density.spin, rtol=1e-10, atol=1e-12 * np.abs(spin_density.spin).max()
    )
    np.testing.assert_allclose(back.lattice.matrix, spin_density.lattice.matrix, atol=1e-6)
    np.testing.assert_allclose(
        back.structure.frac_coords, spin_density.structure.frac_coords, atol=1e-6
    )
    assert [str(s) for s in back.structure.species] == [
        str(s) for s in spin_density.structure.species
    ]
    assert back.meta["compression"] == ("gzip" if name.endswith(".gz") else None)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_chgcar_round_trip_of_a_structure_with_long_decimals_keeps_densities(
    tmp_path: Path,
) -> None:
    lattice = Lattice.from_parameters(
        3.123456789, 3.98765432, 5.55555555, 88.1234567, 91.7654321, 119.3333333
    )
    structure = Structure(lattice, ["Fe", "O"], [[0.1234567891, 0, 0], [0.5, 0.5, 0.5123456789]])
    rng = np.random.default_rng(1)
    density = Density(total=rng.uniform(0.01, 2.0, (6, 7, 8)), structure=structure)
    back = read_density(write_chgcar(density, tmp_path / "CHGCAR"))
    np.testing.assert_allclose(back.total, density.total, rtol=1e-10)
    np.testing.assert_allclose(back.lattice.matrix, lattice.matrix, atol=1e-6)
    assert back.electron_count() == pytest.approx(density.electron_count(), rel=1e-5)


def test_noncollinear_chgcar_round_trip_keeps_three_magnetization_components(
    small_density: Density, tmp_path: Path
) -> None:
    back = read_density(write_chgcar(small_density, tmp_path / "CHGCAR_soc"))
    assert back.is_noncollinear and back.spin.shape == (3, 14, 8, 15)
    np.testing.assert_allclose(back.total, small_density.total, rtol=1e-10)
    np.testing.assert_allclose(back.spin, small_density.spin, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(
        back.total_magnetization(), small_density.total_magnetization(), atol=1e-9
    )
    assert "non-collinear" in back.summary()["magnetization"]


def test_cube_round_trip_keeps_values_spin_and_structure(
    spin_density: Density, tmp_path: Path
) -> None:
    back = read_density(write_cube(spin_density, tmp_path / "LiCoO2.cube"))
    assert back.fmt == "cube"
    # cube values are written with 11 significant digits (e/Bohr^3), lengths in Bohr with 12 decimals
    np.testing.assert_allclose(back.total, spin_density.total, rtol=1e-10)
    np.testing.assert_allclose(
        back.spin, spin_density.spin, rtol=1e-10, atol=1e-12 * np.abs(spin_density.spin).max()
    )
    np.testing.assert_allclose(back.lattice.matrix, spin_density.lattice.matrix, atol=1e-9)
    np.testing.assert_allclose(
        back.structure.cart_coords, spin_density.structure.cart_coords, atol=1e-9
    )
    assert back.electron_count() == pytest.approx(48.0, abs=1e-3)


def test_noncollinear_cube_round_trip(small_density: Density, tmp_path: Path) -> None:
    back = read_density(write_cube(small_density, tmp_path / "soc.cube.gz"))
    assert back.meta["values_per_point"] == 4 and back.meta["compression"] == "gzip"
    np.testing.assert_allclose(back.spin, small_density.spin, rtol=1e-10, atol=1e-14)


def test_cube_written_by_ase_is_converted_from_bohr(spin_density: Density, tmp_path: Path) -> None:
    atoms = AseAtomsAdaptor.get_atoms(spin_density.structure)
    origin = np.array([0.3, -0.2, 0.1])
    with open(tmp_path / "ase.cube", "w") as fh:
        ase_write_cube(fh, atoms, data=spin_density.total / BOHR3_PER_ANG3, origin=origin)
    back = read_density(tmp_path / "ase.cube")
    np.testing.assert_allclose(back.total, spin_density.total, rtol=1e-5)  # ASE writes 6 digits
    np.testing.assert_allclose(back.lattice.matrix, spin_density.lattice.matrix, atol=1e-4)
    np.testing.assert_allclose(
        back.structure.cart_coords, spin_density.structure.cart_coords - origin, atol=1e-5
    )
    assert back.meta["origin"] == pytest.approx(origin.tolist(), abs=1e-5)


def test_xsf_written_by_ase_reads_the_full_grid(spin_density: Density, tmp_path: Path) -> None:
    atoms = AseAtomsAdaptor.get_atoms(spin_density.structure)
    ase.io.write(tmp_path / "ase.xsf", atoms, format="xsf", data=spin_density.total)
    back = read_density(tmp_path / "ase.xsf")
    assert back.shape == spin_density.shape and back.fmt == "xsf"
    np.testing.assert_allclose(back.total, spin_density.total, atol=1e-6)  # ASE writes 6 decimals
    np.testing.assert_allclose(back.lattice.matrix, spin_density.lattice.matrix, atol=1e-12)
    assert back.electron_count() == pytest.approx(48.0, abs=1e-3)


def _xsf_text(
    density: Density, grid: np.ndarray, span: np.ndarray, values: str | None = None
) -> str:
    out = io.StringIO()
    out.write("# periodic general grid\nCRYSTAL\nPRIMVEC\n")
    np.savetxt(out, density.lattice.matrix, fmt="%.12f")
    out.write(f"PRIMCOORD\n {len(density.structure)} 1\n")
    for site in density.structure:
        out.write(
            f" {site.specie.Z} {site.coords[0]:.12f} {site.coords[1]:.12f} {site.coords[2]:.12f}\n"
        )
    out.write("BEGIN_BLOCK_DATAGRID_3D\n density\n BEGIN_DATAGRID_3D_rho\n")
    out.write(" {} {} {}\n 0.0 0.0 0.0\n".format(*grid.shape))
    np.savetxt(out, span, fmt="%.12f")
    if values is None:
        np.savetxt(out, grid.transpose().reshape(-1, grid.shape[0]), fmt="%.12e")
    else:
        out.write(values)
    out.write(" END_DATAGRID_3D\nEND_BLOCK_DATAGRID_3D\n")
    return out.getvalue()


def test_xsf_general_grid_drops_the_repeated_periodic_plane(
    small_density: Density, tmp_path: Path
) -> None:
    grid = np.pad(small_density.total, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    path = tmp_path / "rho.xsf"
    path.write_text(_xsf_text(small_density, grid, small_density.lattice.matrix))
    back = read_density(path)
    assert back.shape == small_density.shape
    np.testing.assert_allclose(back.total, small_density.total, rtol=1e-11)
    assert back.meta["endpoint_max_abs_diff"] == 0.0


def test_xsf_grid_that_does_not_span_the_cell_is_refused(
    small_density: Density, tmp_path: Path
) -> None:
    grid = np.pad(small_density.total, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    path = tmp_path / "box.xsf"
    path.write_text(_xsf_text(small_density, grid, 0.5 * small_density.lattice.matrix))
    with pytest.raises(DensityFormatError, match="does not cover exactly one periodic cell"):
        read_density(path)


# --- compression and format detection --------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compress"),
    [
        ("CHGCAR.gz", lambda data: gzip.compress(data, compresslevel=1)),
        ("CHGCAR.bz2", lambda data: bz2.compress(data, compresslevel=1)),
        ("CHGCAR.xz", lambda data: lzma.compress(data, preset=0)),
    ],
)
def test_compressed_chgcar_reads_like_the_plain_file(
    spin_lines: list[str], spin_density: Density, tmp_path: Path, name: str, compress
) -> None:
    (tmp_path / name).write_bytes(compress("\n".join(spin_lines).encode()))
    density = read_density(tmp_path / name)
    np.testing.assert_array_equal(density.total, spin_density.total)
    np.testing.assert_array_equal(density.spin, spin_density.spin)


def test_format_and_compression_come_from_content_not_the_name(
    spin_lines: list[str], spin_density: Density, tmp_path: Path
) -> None:
    plain = _write(tmp_path / "foo.dat", spin_lines)
    assert read_density(plain).fmt == "chgcar"
    misnamed = tmp_path / "density.gz"  # plain text despite the suffix
    misnamed.write_text("\n".join(spin_lines))
    zipped = tmp_path / "density.cube"  # a gzipped CHGCAR despite the suffix
    zipped.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    for path in (misnamed, zipped):
        np.testing.assert_array_equal(read_density(path).total, spin_density.total)
    assert detect_format(plain.read_bytes()[:4096]) == "chgcar"
    titled = _write(tmp_path / "rho.xsf", ["CRYSTAL structure of LiCoO2", *spin_lines[1:]])
    assert (
        read_density(titled).fmt == "chgcar"
    )  # the structure of the header decides, not a keyword


def test_cube_and_xsf_are_detected_from_content(small_density: Density, tmp_path: Path) -> None:
    cube = write_cube(small_density, tmp_path / "a.cube")
    shutil.copy(cube, tmp_path / "a.txt")
    assert read_density(tmp_path / "a.txt").fmt == "cube"
    atoms = AseAtomsAdaptor.get_atoms(small_density.structure)
    ase.io.write(tmp_path / "b.dat", atoms, format="xsf", data=small_density.total)
    assert read_density(tmp_path / "b.dat").fmt == "xsf"


def test_forced_format_overrides_detection_and_unknown_names_are_rejected(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(DensityFormatError, match="cube"):
        read_density(fixtures_dir / SPIN, fmt="cube")
    with pytest.raises(DensityFormatError, match="unknown density format 'png'"):
        read_density(fixtures_dir / SPIN, fmt="png")
    assert read_density(fixtures_dir / SPIN, fmt="CHGCAR").fmt == "chgcar"


def test_vasp_potential_files_are_refused_unless_the_format_is_forced(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(fixtures_dir / SPIN, tmp_path / "LOCPOT.gz")
    with pytest.raises(DensityFormatError, match="LOCPOT .*not a charge density"):
        read_density(tmp_path / "LOCPOT.gz")
    assert read_density(tmp_path / "LOCPOT.gz", fmt="chgcar").shape == (56, 32, 60)


def test_compiled_and_fallback_number_parsers_agree() -> None:
    for text in (b" 1.5 -2E-3\n nan 4 5 6 7", b"1 2 ***** 4", b"1 2"):
        compiled_stream, fallback_stream = io.BytesIO(text), io.BytesIO(text)
        values, got = _files.parse_doubles(compiled_stream, 5)
        fallback = np.empty(5)
        assert _files.parse_doubles_numpy(fallback_stream, fallback, 5) == got
        np.testing.assert_array_equal(fallback[:got], values[:got])
        assert compiled_stream.read().strip() == fallback_stream.read().strip()


def test_token_count_is_the_same_however_the_stream_is_chunked() -> None:
    text = b"  56 32 60\n 0.1E+01\t-0.2E+01\n\naugmentation occupancies 1 2\n 1 2 \n"
    for cut in range(len(text) + 1):
        assert _files.count_tokens(iter([text[:cut], b"", text[cut:]])) == len(text.split())



@pytest.mark.parametrize("digest", ["xxh3_128", "sha256"])
def test_a_density_carries_the_requested_hash_of_the_exact_bytes_it_was_read_from(
    tmp_path: Path, fixtures_dir: Path, digest: str
) -> None:
    """A plain CHGCAR is hashed in its counting pass; compressed files and cubes in a pass of their
    own: either way the digest is that of the file's bytes as they are on disk."""
    import hashlib

    import xxhash

    def expected(path: Path) -> str:
        data = path.read_bytes()
        return hashlib.sha256(data).hexdigest() if digest == "sha256" else xxhash.xxh3_128_hexdigest(data)

    plain = tmp_path / "CHGCAR"
    plain.write_bytes(gzip.decompress((fixtures_dir / SPIN).read_bytes()))
    assert read_density(plain, digest=digest).meta[digest] == expected(plain)
    data = _files.open_source(plain)
    with data.open() as fh:
        fh.readline()
        start = fh.tell()
        n_tokens, hexdigest = _files.count_tokens_and_digest(fh, start, digest)
    assert hexdigest == expected(plain)
    assert n_tokens == len(plain.read_bytes()[start:].split())
    assert read_density(fixtures_dir / SPIN, digest=digest).meta[digest] == expected(fixtures_dir / SPIN)
    cube = write_cube(read_density(plain), tmp_path / "x.cube")
    assert read_density(cube, digest=digest).meta[digest] == expected(cube)
    assert digest not in read_density(plain).meta  # no hash asked, none computed


def test_an_unknown_content_hash_is_refused_with_the_supported_ones(fixtures_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown content hash 'md5'.*xxh3_128.*sha256"):
        read_density(fixtures_dir / SPIN, digest="md5")


# --- corrupt input ---------------------------------------------------------------------------------


def test_truncated_chgcar_names_file_counts_and_last_line(
    spin_lines: list[str], tmp_path: Path
) -> None:
    path = _write(tmp_path / "CHGCAR", spin_lines[:5000])
    with pytest.raises(DensityFormatError) as info:
        read_density(path)
    message = str(info.value)
    assert (
        str(path) in message
        and "expected 107520 values, got 24910" in message
        and "line 5000" in message
    )


def test_nan_in_chgcar_is_reported_with_its_line(spin_lines: list[str], tmp_path: Path) -> None:
    lines = list(spin_lines)
    lines[100] = " NaN" + lines[100][18:]
    with pytest.raises(DensityFormatError, match=r"line 101 .*NaN is not finite"):
        read_density(_write(tmp_path / "CHGCAR", lines))


def test_garbage_value_in_chgcar_is_reported_with_its_line(
    spin_lines: list[str], tmp_path: Path
) -> None:
    lines = list(spin_lines)
    lines[30000] = " ************" + lines[30000][18:]
    with pytest.raises(DensityFormatError, match=r"line 30001 .*'\*+' is not a number"):
        read_density(_write(tmp_path / "CHGCAR", lines))


def test_grid_line_larger_than_the_values_is_reported(
    spin_lines: list[str], tmp_path: Path
) -> None:
    lines = list(spin_lines)
    index = lines.index("   56   32   60")
    lines[index] = "   56   32   61"
    with pytest.raises(DensityFormatError, match="expected 109312 values, got 107520"):
        read_density(_write(tmp_path / "CHGCAR", lines))


@pytest.mark.parametrize("which", ["spin", "vasp4"])
def test_grid_line_smaller_than_the_values_is_reported(
    spin_lines: list[str], vasp4_lines: list[str], tmp_path: Path, which: str
) -> None:
    lines = list(spin_lines if which == "spin" else vasp4_lines)
    grid = "   56   32   60" if which == "spin" else "  32   60   90"
    lines[lines.index(grid)] = grid[:-2] + str(int(grid[-2:]) - 1)
    with pytest.raises(DensityFormatError, match="more values than its grid line says"):
        read_density(_write(tmp_path / "CHGCAR", lines), species=None if which == "spin" else ["C"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "is empty"),
        (b"   \n\n  \n", "blank"),
        (gzip.compress(b""), "empty after decompression"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00binary", "cannot tell the format"),
        (b"hello\nworld\n", "cannot tell the format"),
    ],
)
def test_empty_or_unrecognised_files_raise_density_format_error(
    tmp_path: Path, content: bytes, expected: str
) -> None:
    path = tmp_path / "CHGCAR"
    path.write_bytes(content)
    with pytest.raises(DensityFormatError, match=expected) as info:
        read_density(path)
    assert str(path) in str(info.value)


def test_missing_file_and_directory_raise_density_format_error(tmp_path: Path) -> None:
    with pytest.raises(DensityFormatError, match="does not exist"):
        read_density(tmp_path / "nope")
    with pytest.raises(DensityFormatError, match="is a directory"):
        read_density(tmp_path)


def test_truncated_or_corrupt_compressed_streams_are_reported(
    fixtures_dir: Path, tmp_path: Path
) -> None:
    data = (fixtures_dir / SPIN).read_bytes()
    truncated = tmp_path / "CHGCAR.gz"
    truncated.write_bytes(data[:300000])
    corrupt = tmp_path / "CHGCAR_corrupt.gz"
    corrupt.write_bytes(data[:2000] + b"\x00garbage" * 50 + data[2500:])
    for path in (truncated, corrupt):
        with pytest.raises(
            DensityFormatError, match="gzip-compressed but its compressed stream is corrupt"
        ):
            read_density(path)


def test_file_ending_inside_the_header_is_reported(spin_lines: list[str], tmp_path: Path) -> None:
    with pytest.raises(DensityFormatError, match="ends at line 12 inside the VASP header"):
        read_density(_write(tmp_path / "CHGCAR", spin_lines[:12]))


def test_corrupt_cube_files_are_reported_with_counts_and_lines(
    small_density: Density, tmp_path: Path
) -> None:
    lines = write_cube(small_density, tmp_path / "ok.cube").read_text().split("\n")
    n_values = 14 * 8 * 15 * 4
    with pytest.raises(
        DensityFormatError, match=f"expected {n_values} values .*got .*ends at line 300"
    ):
        read_density(_write(tmp_path / "short.cube", lines[:300]))
    nan = list(lines)
    nan[200] = " nan" + nan[200][17:]
    with pytest.raises(DensityFormatError, match=r"line 201 .*'nan' is not a finite number"):
        read_density(_write(tmp_path / "nan.cube", nan))
    wrong = list(lines)
    wrong[5] = "   14" + wrong[5][5:]  # z: 15 -> 14 points, so the file holds more values
    with pytest.raises(
        DensityFormatError, match=f"expected {14 * 8 * 14 * 4} values .*found {n_values}"
    ):
        read_density(_write(tmp_path / "wrong.cube", wrong))


def test_xsf_grid_with_missing_values_is_reported(small_density: Density, tmp_path: Path) -> None:
    grid = np.pad(small_density.total, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    text = _xsf_text(small_density, grid, small_density.lattice.matrix, values="1.0 2.0 3.0\n")
    with pytest.raises(DensityFormatError, match=f"holds 3 values; its size line says {grid.size}"):
        read_density(_write(tmp_path / "short.xsf", text.split("\n")))


def test_degenerate_or_non_finite_cells_are_reported_with_the_cell_lines(
    spin_lines: list[str], small_density: Density, tmp_path: Path
) -> None:
    zero_scale = list(spin_lines)
    zero_scale[1] = "   0.0"
    with pytest.raises(DensityFormatError, match=r"lines 2-5: scale and lattice vectors\): .*span no volume"):
        read_density(_write(tmp_path / "CHGCAR", zero_scale))
    parallel = list(spin_lines)
    parallel[3] = parallel[2]
    with pytest.raises(DensityFormatError, match="span no volume"):
        read_density(_write(tmp_path / "CHGCAR", parallel))
    nan_scale = list(spin_lines)
    nan_scale[1] = "   nan"
    with pytest.raises(DensityFormatError, match="lines 2-5.*not three finite"):
        read_density(_write(tmp_path / "CHGCAR", nan_scale))
    huge = list(spin_lines)
    huge[3] = "  1e300 0 0"
    with pytest.raises(DensityFormatError, match="beyond 10000 Å"):
        read_density(_write(tmp_path / "CHGCAR", huge))
    cube = write_cube(small_density, tmp_path / "ok.cube").read_text().split("\n")
    cube[3] = cube[3].split()[0] + " 0.0 0.0 0.0"
    with pytest.raises(DensityFormatError, match=r"lines 4-6: point counts and voxel vectors\): .*span no volume"):
        read_density(_write(tmp_path / "flat.cube", cube))
    grid = np.pad(small_density.total, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    flat = small_density.lattice.matrix.copy()
    flat[2] = flat[0] + flat[1]
    lines = _xsf_text(small_density, grid, small_density.lattice.matrix).split("\n")
    assert lines[2] == "PRIMVEC"
    lines[5] = " ".join(f"{x:.12f}" for x in flat[2])
    with pytest.raises(DensityFormatError, match=r"\(PRIMVEC\): .*span no volume"):
        read_density(_write(tmp_path / "flat.xsf", lines))
    with pytest.raises(DensityFormatError, match="cell in made by hand: .*span no volume"):
        Density(total=small_density.total, structure=Structure(flat, ["Li"], [[0, 0, 0]]), source="made by hand")


@pytest.mark.parametrize("block", ["total", "magnetization"])
def test_a_repeated_grid_line_in_a_spin_chgcar_is_not_taken_for_atomic_moments(
    spin_lines: list[str], tmp_path: Path, block: str
) -> None:
    lines = list(spin_lines)
    grids = [i for i, line in enumerate(lines) if line == "   56   32   60"]
    at = grids[0 if block == "total" else 1] + 500
    lines.insert(at, lines[at])  # 5 values more; the 8 atoms' moments between the blocks are 8
    with pytest.raises(DensityFormatError, match="more values than its grid line says"):
        read_density(_write(tmp_path / "CHGCAR", lines))


def test_non_finite_atom_positions_are_reported_with_their_lines(
    spin_lines: list[str], small_density: Density, tmp_path: Path
) -> None:
    lines = list(spin_lines)
    assert lines[7] == "Direct"
    lines[9] = "  inf 0.0 0.5"
    with pytest.raises(DensityFormatError, match=r"1 atom position.*atom 2 \(Li\) on line 10"):
        read_density(_write(tmp_path / "CHGCAR", lines))
    cube = write_cube(small_density, tmp_path / "ok.cube").read_text().split("\n")
    cube[6] = " ".join(cube[6].split()[:2]) + " nan 0.0 0.0"
    with pytest.raises(DensityFormatError, match=r"line 7 of the cube header should hold an atom .*finite"):
        read_density(_write(tmp_path / "nan.cube", cube))


def test_xsf_atom_lines_that_do_not_match_their_count_are_reported(
    small_density: Density, tmp_path: Path
) -> None:
    grid = np.pad(small_density.total, ((0, 1), (0, 1), (0, 1)), mode="wrap")
    lines = _xsf_text(small_density, grid, small_density.lattice.matrix).split("\n")
    count = lines.index("PRIMCOORD") + 1
    repeated = lines[: count + 2] + lines[count + 1 :]
    with pytest.raises(DensityFormatError, match=f"line {count + len(small_density.structure) + 2}: numbers"):
        read_density(_write(tmp_path / "repeated.xsf", repeated))
    without_count = lines[:count] + lines[count + 1 :]
    with pytest.raises(DensityFormatError, match=f"line {count + 1}: expected the atom count and 1"):
        read_density(_write(tmp_path / "no_count.xsf", without_count))
    other_blocks = (
        lines[:count - 1]
        + ["BEGIN_INFO", "  Fermi Energy: 5.2", "END_INFO", "BEGIN_BLOCK_DATAGRID_2D", " slice",
           " BEGIN_DATAGRID_2D_a", " 2 2", " 0 0 0", " 1 0 0", " 0 1 0", " 1 2 3 4", " END_DATAGRID_2D",
           "END_BLOCK_DATAGRID_2D"]
        + lines[count - 1 :]
    )
    read = read_density(_write(tmp_path / "blocks.xsf", other_blocks))
    assert read.total.shape == small_density.shape and np.allclose(read.total, small_density.total, rtol=1e-10)


# --- command line ----------------------------------------------------------------------------------


def test_inspect_command_prints_the_summary_table(fixtures_dir: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(fixtures_dir / SPIN)])
    assert result.exit_code == 0, result.output
    for text in ("LiCoO2", "56 × 32 × 60", "48.0000", "collinear", "vasp", "e/Å³"):
        assert text in result.output


def test_inspect_command_needs_species_for_vasp4_and_accepts_them(fixtures_dir: Path) -> None:
    refused = CliRunner().invoke(app, ["inspect", str(fixtures_dir / VASP4)])
    assert refused.exit_code == 2
    assert "--species" in refused.output and "Traceback" not in refused.output
    accepted = CliRunner().invoke(app, ["inspect", str(fixtures_dir / VASP4), "--species", "C"])
    assert accepted.exit_code == 0, accepted.output
    assert "32.0000" in accepted.output and "C8" in accepted.output


def test_chgcar_written_by_rhoprop_keeps_the_producing_code(tmp_path):
    from pymatgen.core import Lattice, Structure

    from rhoprop.io import Density, read_density, write_chgcar

    structure = Structure(Lattice.cubic(3.0), ["Al"], [[0, 0, 0]])
    grid = np.full((6, 6, 6), 3.0 / 27.0)
    write_chgcar(Density(total=grid, structure=structure, code="gpaw"), tmp_path / "CHGCAR")
    assert read_density(tmp_path / "CHGCAR").code == "gpaw"
    write_chgcar(Density(total=grid, structure=structure), tmp_path / "CHGCAR2")
    assert read_density(tmp_path / "CHGCAR2").code == "unknown"


def test_real_vasp_chgcar_is_tagged_as_vasp(fixtures_dir):
    from rhoprop.io import read_density

    assert read_density(fixtures_dir / "CHGCAR.LiCoO2_spin.gz").code == "vasp"
