#!/usr/bin/env bash
# The README's first command: set everything up, start the local broker and registry,
# and run the demo. Stop the infra afterwards with `.venv/bin/streams local down`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/streams local up
.venv/bin/streams demo "$@"
