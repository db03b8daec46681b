# Sourced by scripts/test and .ci/run: make (once per machine) a Python 3.12 venv holding the
# pinned OpenHands SDK client, for the OpenHands contract tests (tests/openhands). It lives
# outside the checkout, so every clone on the machine reuses it; OPENHANDS_SDK_VENV names it.
# Exports OPENHANDS_SDK_PYTHON when the venv is ready; leaves it unset (with a warning) when no
# Python 3.12 is found or the install fails, and the contract tests then skip, unless
# REQUIRE_OPENHANDS=1 (as in .ci/run), which makes that a failure. An OPENHANDS_SDK_PYTHON set
# beforehand is used as it is, and nothing is built.
OPENHANDS_SDK_PINS="openhands-sdk==1.58.2 openhands-tools==1.58.2"
OPENHANDS_SDK_VENV="${OPENHANDS_SDK_VENV:-$HOME/.cache/agent-server/openhands-sdk-1.58.2}"

_oh_python() {  # a Python 3.12 interpreter, or nothing
  local candidate
  for candidate in "${OPENHANDS_PYTHON312:-}" python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
    [ -n "$candidate" ] || continue
    # A pyenv shim exists for every installed version but fails unless that one is selected.
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

_oh_ready() {  # the venv holds these pins and its interpreter still runs
  [ -f "$OPENHANDS_SDK_VENV/.installed" ] \
    && [ "$(cat "$OPENHANDS_SDK_VENV/.installed")" = "$OPENHANDS_SDK_PINS" ] \
    && "$OPENHANDS_SDK_VENV/bin/python" -c '' 2>/dev/null
}

_oh_build() {  # build the venv; the stamp is written last, so a cut-off build is redone
  local python
  if ! python="$(_oh_python)"; then
    echo "WARNING: no Python 3.12 found (set OPENHANDS_PYTHON312): the OpenHands contract tests will be skipped" >&2
    return 1
  fi
  echo "building the OpenHands SDK venv in $OPENHANDS_SDK_VENV ($OPENHANDS_SDK_PINS), once per machine" >&2
  rm -rf "$OPENHANDS_SDK_VENV"
  # shellcheck disable=SC2086  # the pins are words
  if "$python" -m venv "$OPENHANDS_SDK_VENV" \
    && "$OPENHANDS_SDK_VENV/bin/python" -m pip install -qq --disable-pip-version-check $OPENHANDS_SDK_PINS; then
    echo "$OPENHANDS_SDK_PINS" > "$OPENHANDS_SDK_VENV/.installed"
  else
    echo "WARNING: could not install the OpenHands SDK into $OPENHANDS_SDK_VENV: the OpenHands contract tests will be skipped" >&2
    return 1
  fi
}

if [ -z "${OPENHANDS_SDK_PYTHON:-}" ]; then
  if ! _oh_ready; then
    # Two test runs starting together build it once: the second waits, then finds it ready.
    mkdir -p "$(dirname "$OPENHANDS_SDK_VENV")" 2>/dev/null || true
    (
      flock 9 2>/dev/null || true
      _oh_ready || _oh_build
    ) 9>"$OPENHANDS_SDK_VENV.lock" || true
  fi
  if _oh_ready; then
    export OPENHANDS_SDK_PYTHON="$OPENHANDS_SDK_VENV/bin/python"
  fi
fi
unset -f _oh_python _oh_ready _oh_build
