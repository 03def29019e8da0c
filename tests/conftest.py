"""Shared pytest fixtures."""

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The real VASP files in ``shared/fixtures/vasp`` beside the repository (CI clones shared/ there)."""
    path = Path(__file__).parents[1].parent / "shared" / "fixtures" / "vasp"
    if not path.is_dir():
        pytest.fail(
            f"test fixtures not found at {path}; put the shared/ folder beside the repository"
        )
    return path
