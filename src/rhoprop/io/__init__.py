"""Readers and writers of charge-density files; every reader returns a :class:`Density`.

``read_density(path, species=None, fmt=None)`` reads VASP CHGCAR/CHG/AECCAR/PARCHG (VASP 4 and 5,
spin-polarized and non-collinear), Gaussian cube and XSF files, plain or gzip/bzip2/xz compressed,
recognising format and compression from the content. ``write_chgcar`` and ``write_cube`` write them.
"""

from rhoprop.io.cube import write_cube
from rhoprop.io.density import Density
from rhoprop.io.read import FORMATS, detect_format, read_density
from rhoprop.io.vasp import write_chgcar

__all__ = ["FORMATS", "Density", "detect_format", "read_density", "write_chgcar", "write_cube"]
