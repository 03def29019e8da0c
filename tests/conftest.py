"""Shared pytest fixtures (builders shared by several test modules are in ``tests/helpers``)."""

from collections.abc import Iterator
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


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test: small models on a shared 2-core machine run several times
    faster (modules of model tests use it with ``pytestmark = pytest.mark.usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
