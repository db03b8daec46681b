# Sourced by scripts/serve and scripts/test: make .venv and install the project into it,
# again only when pyproject.toml changes. $1 = "dev" adds the test and lint tools.
#
# The install uses uv when it can (seconds instead of a minute or two with pip): `uv` on the
# PATH, else a small venv holding uv that is built once per machine outside the checkout
# (AGENT_SERVER_UV_VENV, default ~/.cache/agent-server/uv) with pip. Both resolve the same
# versions from pyproject.toml. When uv cannot be had or its install fails, pip does it.
#
# Either way the installed packages are compiled to bytecode at install time (pip does it by
# default, uv with --compile-bytecode): with PYTHONDONTWRITEBYTECODE set, as on CI machines,
# nothing is cached at import, and every process (each server a test starts) would compile
# litellm and the rest from source again, seconds of CPU each.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
extras=""
[ "${1:-}" = "dev" ] && extras="[dev]"
stamp=".venv/.installed${extras:+-dev}"
# Reinstalled when pyproject.toml or this script (how it installs) changes.
want="$(cat pyproject.toml scripts/_venv.sh | sha256sum | cut -d' ' -f1)"

_uv() {  # the path of a working uv, or nothing
  local tool="${AGENT_SERVER_UV_VENV:-$HOME/.cache/agent-server/uv}"
  if command -v uv >/dev/null 2>&1; then
    command -v uv
    return 0
  fi
  if [ ! -x "$tool/bin/uv" ]; then
    mkdir -p "$(dirname "$tool")" 2>/dev/null || return 1
    (  # two installs starting together build it once
      flock 9 2>/dev/null || true
      [ -x "$tool/bin/uv" ] || {
        rm -rf "$tool"
        "$PYTHON" -m venv "$tool" && "$tool/bin/python" -m pip install -qq --disable-pip-version-check "uv>=0.5"
      } >&2
    ) 9>"$tool.lock" || return 1
  fi
  "$tool/bin/uv" --version >/dev/null 2>&1 && echo "$tool/bin/uv"
}

_pip_install() {
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  .venv/bin/python -m pip --version >/dev/null 2>&1 || .venv/bin/python -m ensurepip --upgrade >/dev/null
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extras}"
}

if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if uv_bin="$(_uv)" && [ -n "$uv_bin" ]; then
    { [ -x .venv/bin/python ] || "$uv_bin" venv --quiet --python "$PYTHON" .venv; } \
      && "$uv_bin" pip install --quiet --compile-bytecode --python .venv/bin/python \
        -e ".${extras}" \
      || { echo "uv could not install the project: installing with pip" >&2; _pip_install; }
  else
    echo "uv is not available: installing with pip (a minute or two)" >&2
    _pip_install
  fi
  echo "$want" > "$stamp"
fi
unset -f _uv _pip_install
