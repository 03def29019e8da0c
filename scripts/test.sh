#!/usr/bin/env bash
# Run the test suite; exits non-zero when a test fails or when no test ran (pytest exit code 5).
set -uo pipefail
cd "$(dirname "$0")/.."
# One BLAS/OpenMP/torch thread per process: on small CPUs the suite runs several times faster.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
if [ "$rc" = 5 ]; then echo "ERROR: no tests were collected" >&2; fi
exit "$rc"
