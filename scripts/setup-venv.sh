#!/usr/bin/env bash
# Create .venv (Python >= 3.11) if missing and install needleplan into it, with the extras given as "$1"
# (e.g. "test"). Re-installs only when pyproject.toml changed since the last install. Sourced by demo/test.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "needleplan needs Python 3.11 or newer; none found on PATH" >&2
  return 1
}

if [ ! -x "$venv/bin/python" ]; then
  python="$(pick_python)"
  echo "creating $venv with $("$python" --version)"
  "$python" -m venv "$venv"
fi

stamp="$venv/.needleplan-installed"
want="$(sha256sum "$root/pyproject.toml" | cut -d' ' -f1) extras=[$extras]"
if [ ! -f "$stamp" ] || ! grep -qxF "$want" "$stamp"; then
  target="$root"
  [ -n "$extras" ] && target="$root[$extras]"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$target"
  # keep every extras set installed so far: the demo must not drop the test tools and vice versa
  { [ -f "$stamp" ] && cat "$stamp"; echo "$want"; } | sort -u > "$stamp.new" && mv "$stamp.new" "$stamp"
fi
