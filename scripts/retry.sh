#!/usr/bin/env bash
# Run a resumable command again until it succeeds (at most TRIES times, PAUSE seconds apart), for
# long studies that share the machine with a DFT batch whose periodic grow may make one read of a
# built-in store fail: every rhoprop study resumes from its cache, so a retry loses nothing.
# Usage: setsid nohup bash scripts/retry.sh 20 60 .venv/bin/rhoprop study transfer ... > LOG 2>&1 &
set -uo pipefail
tries=${1:?usage: retry.sh TRIES PAUSE COMMAND...}
pause=${2:?usage: retry.sh TRIES PAUSE COMMAND...}
shift 2
for ((k = 1; k <= tries; k++)); do
    echo "$(date +%H:%M:%S) try $k/$tries: $*"
    "$@" && { echo "$(date +%H:%M:%S) done"; exit 0; }
    rc=$?
    echo "$(date +%H:%M:%S) exit $rc; retrying in $pause s"
    sleep "$pause"
done
echo "$(date +%H:%M:%S) gave up after $tries tries"
exit 1
