"""Exception types shared by every rhoprop module.

All user-facing errors derive from :class:`RhopropError` (a ``ValueError``), so callers can catch
one type; messages say what was expected, what was found, where, and how to fix it.
"""

from __future__ import annotations

from pathlib import Path


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


class DatasetError(RhopropError):
    """A dataset store is missing, malformed, or of an unsupported format version."""


class FolderLockedError(RhopropError):
    """Another process holds the lock of ``folder`` (a dataset store being written, a study being
    run); ``owner`` is what the holder wrote (``"pid 123"``)."""

    def __init__(self, folder: Path, owner: str, hint: str = "") -> None:
        super().__init__(f"{folder} is locked by {owner}; {hint or 'wait for it to finish'}")
        self.folder = folder
        self.owner = owner


class DFTError(RhopropError):
    """A DFT calculation of one material failed (the reason is recorded, the batch goes on)."""


class EOSNotBracketedError(DFTError):
    """The energy-volume scan did not bracket a minimum even after re-centring."""


class SCFNotConvergedError(DFTError):
    """GPAW's self-consistency loop did not converge within ``scf_maxiter`` iterations."""


class MissingSetupError(DFTError):
    """GPAW has no PAW setup for an element of the structure."""
