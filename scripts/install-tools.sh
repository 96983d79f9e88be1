#!/usr/bin/env bash
# Installs the non-Python tools the test suite runs for real. Idempotent.
set -euo pipefail
echo "tools: nothing extra needed yet"
