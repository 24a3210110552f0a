#!/usr/bin/env bash
# Quick start 2 of 2: set up .venv with the test tools, lint (ruff), type-check (mypy) and run the whole test suite
# (extra args go to pytest).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh" test
bash "$root/scripts/install-browser.sh"  # Debian's Chromium for the practice page's browser test (skipped without)
cd "$root"
"$root/.venv/bin/python" -m ruff check src tests benchmarks scripts  # lint first: a finding fails the run
"$root/.venv/bin/python" -m mypy  # then types (src/needleplan, configured in pyproject.toml): an error fails the run
exec "$root/.venv/bin/python" -m pytest "$@"
