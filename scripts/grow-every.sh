#!/usr/bin/env bash
# Run scripts/grow-builtin.sh TIER every MINUTES while a DFT batch runs, so that its finished
# materials reach the built-in store's append-only shards during the session. The CHGCARs are not
# committed: a result whose density never reached a shard is recomputed by the next session.
# Usage: setsid nohup bash scripts/grow-every.sh gpaw-scf-v1 40 > /tmp/grow.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
tier=${1:?usage: grow-every.sh TIER MINUTES}
minutes=${2:-40}
while true; do
    sleep $((minutes * 60))
    echo "$(date +%H:%M:%S) growing $tier"
    nice -n 10 bash scripts/grow-builtin.sh "$tier" || echo "$(date +%H:%M:%S) grow failed: $?"
done
