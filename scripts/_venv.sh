# Sourced by scripts/serve and scripts/test: make .venv and install the project into it,
# again only when pyproject.toml changes. $1 = "dev" adds the test and lint tools.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
stamp=".venv/.installed${extras:+-dev}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
  echo "$want" > "$stamp"
fi
