#!/usr/bin/env bash
# Append the EOS batch's new materials to the built-in gpaw-v1 store (see grow-builtin.sh).
exec bash "$(dirname "$0")/grow-builtin.sh" gpaw-v1
