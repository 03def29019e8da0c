"""GPAW generation of charge densities and property labels: protocol, prototypes, batch runner,
labels.

``rhoprop.dft`` imports GPAW only inside the functions that run it, so the package imports without
the optional ``dft`` extra.
"""

from rhoprop.dft.calc import DFTError, EOSNotBracketedError, MissingSetupError, SCFNotConvergedError
from rhoprop.dft.enumerate import enumerate_scf_candidates, scf_reference_ids
from rhoprop.dft.generate import (
    GenerateReport,
    GenerationPlan,
    finished_ids,
    generate,
    is_done,
    load_failures,
    load_skipped,
    plan_generation,
    prototype_candidates,
    read_structures,
    select_ids,
)
from rhoprop.dft.labels import (
    LABEL_SCHEMA,
    assemble_labels,
    label_schema,
    labels_frame,
    load_results,
    summary,
    targets_schema,
)
from rhoprop.dft.material import Candidate, compute, compute_material, compute_molecule
from rhoprop.dft.protocol import (
    DFTProtocol,
    GPAWProtocol,
    SCFProtocol,
    load_protocol,
    protocol_by_name,
)
from rhoprop.dft.prototypes import enumerate_prototypes, ready_first
from rhoprop.dft.scf import ScreenedOut, ScreenSettings, compute_scf

__all__ = [
    "LABEL_SCHEMA",
    "Candidate",
    "DFTError",
    "DFTProtocol",
    "EOSNotBracketedError",
    "GPAWProtocol",
    "GenerateReport",
    "GenerationPlan",
    "MissingSetupError",
    "SCFNotConvergedError",
    "SCFProtocol",
    "ScreenSettings",
    "ScreenedOut",
    "assemble_labels",
    "compute",
    "compute_material",
    "compute_molecule",
    "compute_scf",
    "enumerate_prototypes",
    "enumerate_scf_candidates",
    "finished_ids",
    "generate",
    "is_done",
    "label_schema",
    "labels_frame",
    "load_failures",
    "load_protocol",
    "load_results",
    "load_skipped",
    "plan_generation",
    "protocol_by_name",
    "prototype_candidates",
    "read_structures",
    "ready_first",
    "scf_reference_ids",
    "select_ids",
    "summary",
    "targets_schema",
]
