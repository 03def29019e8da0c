"""Readers and writers of charge-density files; every reader returns a :class:`Density`."""

from rhoprop.io.density import Density

__all__ = ["Density"]
