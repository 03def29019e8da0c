"""Exception types shared by every rhoprop module.

All user-facing errors derive from :class:`RhopropError` (a ``ValueError``), so callers can catch
one type; messages say what was expected, what was found, where, and how to fix it.
"""

from __future__ import annotations


class RhopropError(ValueError):
    """Base class of every error rhoprop raises on bad user input."""


class DensityFormatError(RhopropError):
    """A density file is unreadable, truncated, inconsistent or of an unknown format."""


class SpeciesRequiredError(DensityFormatError):
    """A VASP 4 file has no element line and no species were given."""


class SettingsError(RhopropError):
    """A settings file or object has an unknown key or an invalid value."""


class LabelTableError(RhopropError):
    """A label table is malformed (missing id column, unreadable file)."""


class IncompatibleModelError(RhopropError):
    """A model cannot be applied to data prepared with different settings."""
