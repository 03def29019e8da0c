"""GPAW generation of charge densities and property labels: protocol, prototypes, batch runner, labels.

``rhoprop.dft`` imports GPAW only inside the functions that run it, so the package imports without
the optional ``dft`` extra.
"""

from rhoprop.dft.calc import DFTError, EOSNotBracketedError, MissingSetupError, SCFNotConvergedError
from rhoprop.dft.generate import (
    GenerateReport,
    finished_ids,
    generate,
    is_done,
    load_failures,
    prototype_candidates,
    select_ids,
    read_structures,
)
from rhoprop.dft.labels import LABEL_SCHEMA, assemble_labels, labels_frame, load_results, summary, targets_schema
from rhoprop.dft.material import Candidate, compute, compute_material, compute_molecule
from rhoprop.dft.protocol import DFTProtocol
from rhoprop.dft.prototypes import enumerate_prototypes, ready_first

__all__ = [
    "LABEL_SCHEMA",
    "Candidate",
    "DFTError",
    "DFTProtocol",
    "EOSNotBracketedError",
    "GenerateReport",
    "MissingSetupError",
    "SCFNotConvergedError",
    "assemble_labels",
    "compute",
    "compute_material",
    "compute_molecule",
    "enumerate_prototypes",
    "finished_ids",
    "generate",
    "is_done",
    "labels_frame",
    "load_failures",
    "load_results",
    "prototype_candidates",
    "select_ids",
    "read_structures",
    "ready_first",
    "summary",
    "targets_schema",
]
