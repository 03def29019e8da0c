#!/usr/bin/env bash
# Lint: ruff (rules and formatting) and mypy on src/, with the settings in pyproject.toml.
# Exits non-zero on any finding. Needs the test extra (ruff, mypy): bash scripts/setup.sh.
set -uo pipefail
cd "$(dirname "$0")/.."
for tool in ruff mypy; do
    if [ ! -x ".venv/bin/$tool" ]; then
        echo "ERROR: .venv/bin/$tool not found; install it with: .venv/bin/pip install -e '.[test]'" >&2
        exit 2
    fi
done
rc=0
.venv/bin/ruff check src || rc=1
.venv/bin/ruff format --check src || rc=1
.venv/bin/mypy || rc=1
exit "$rc"
