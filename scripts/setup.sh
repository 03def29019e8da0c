#!/usr/bin/env bash
# Set up a fresh Debian machine for rhoprop: system libraries GPAW builds against,
# a virtual environment in .venv, and the package with all extras.
# GPU users: install the CUDA build of torch into .venv afterwards, e.g.
#   .venv/bin/pip install torch --index-url https://download.pytorch.org/whl/cu126
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
APT_PKGS="libxc-dev libopenblas-dev libfftw3-dev g++"
missing=""
for p in $APT_PKGS; do
    dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# CPU build of torch pinned for this environment (an unpinned torch pulls a multi-GB CUDA build).
.venv/bin/pip install -q "torch==${RHOPROP_TORCH_VERSION:-2.13.0}"
# GPAW is built from source here, with FFTW (scripts/gpaw-siteconfig.py; ~1.3x faster SCFs).
export GPAW_CONFIG="$PWD/scripts/gpaw-siteconfig.py"
CC=g++ .venv/bin/pip install -q -e ".[dft,test]"
# A GPAW built earlier without FFTW (an older setup, or a wheel in pip's cache) is rebuilt with it.
if ! .venv/bin/python -c "import sys, gpaw.fftw; sys.exit(not gpaw.fftw.have_fftw())" 2>/dev/null; then
    gpaw_version=$(.venv/bin/python -c "import gpaw; print(gpaw.__version__)")
    CC=g++ .venv/bin/pip install -q --no-deps --no-cache-dir --force-reinstall "gpaw==$gpaw_version"
fi
.venv/bin/python -c "import rhoprop, gpaw, torch; import gpaw.fftw; print('rhoprop', rhoprop.__version__, '| gpaw', gpaw.__version__, 'FFTW' if gpaw.fftw.have_fftw() else 'no FFTW', '| torch', torch.__version__)"
