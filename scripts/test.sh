#!/usr/bin/env bash
# The README's second command: set everything up and run the test suite against a real
# local Kafka broker and schema registry (the fixtures start them and stop what they started).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
.venv/bin/ruff check streams tests bench
.venv/bin/mypy
exec .venv/bin/python -m pytest -m "not chaos" "$@"
