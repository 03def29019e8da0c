# GPAW's build configuration for scripts/setup.sh (read through GPAW_CONFIG by GPAW's setup.py,
# which executes it with its own defaults in scope). FFTW does GPAW's plane-wave FFTs instead of
# numpy/scipy's pocketfft: 1.1-1.6x less CPU per SCF, identical energies (bench/gpaw_fftw.py,
# docs/benchmarks.md). Debian packages: libfftw3-dev, libopenblas-dev (BLAS), libxc-dev.
fftw = True
libraries += ["blas", "fftw3"]  # type: ignore[name-defined]  # noqa: F821
