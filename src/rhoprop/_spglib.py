"""spglib, switched once to raising its errors (``spglib.error.OLD_ERROR_HANDLING = False``).

spglib >= 2.7 otherwise emits a DeprecationWarning on every call (pymatgen's SpacegroupAnalyzer
calls it for each structure, grid.origin for each density); raising a ``SpglibError`` is its
announced default. rhoprop.io.density imports this module where rhoprop first imports pymatgen
(and with it spglib); modules that call spglib themselves take ``spglib`` from here.
"""

from __future__ import annotations

import spglib
import spglib.error

if hasattr(spglib.error, "OLD_ERROR_HANDLING"):  # the switch goes away once raising is all there is
    spglib.error.OLD_ERROR_HANDLING = False

__all__ = ["spglib"]
