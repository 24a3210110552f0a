#!/usr/bin/env bash
# Quick start 1 of 2: set up .venv and run the main job on the built-in phantom; results in ./demo-out/.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup-venv.sh"
cd "$root"
exec "$root/.venv/bin/python" -m needleplan.demo "${1:-demo-out}"
