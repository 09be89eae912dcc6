#!/usr/bin/env bash
# The one test command: the Rust tests, then the Python package (python/) built as a wheel,
# installed into a virtual environment, and its pytest suite (python/tests/) run.
#
#   scripts/test-all.sh              # venv: $VENV, default .venv (created if missing)
#   VENV=/path/to/venv scripts/test-all.sh
#
# The venv needs numpy, maturin, pytest and ml_dtypes (installed here if missing; torch, jax
# and tensorflow are optional: their tests skip visibly without them, and fail instead with
# REQUIRE_TORCH=1 / REQUIRE_FRAMEWORKS=1, as .ci/run sets).
# Prints the wheel's build time and size and the pytest count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo test --release"
cargo test --release
# The CLI the Python tests compare against (text, messages, bytes).
cargo build --release --quiet --bin cmargin

VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  python3 -m venv "$VENV"
fi
PY="$(cd "$VENV" && pwd)/bin/python"
if ! "$PY" -c "import numpy, maturin, pytest, ml_dtypes" >/dev/null 2>&1; then
  "$PY" -m pip install --quiet --disable-pip-version-check 'numpy>=1.24' 'maturin>=1.5,<2' 'pytest>=7' 'ml_dtypes>=0.2'
fi

echo "== maturin build --release (python/)"
rm -rf target/wheels
t0=$(date +%s%N)
"$PY" -m maturin build --release --quiet -m python/Cargo.toml -o target/wheels
t1=$(date +%s%N)
wheel=$(ls target/wheels/combined_margin-*.whl)
echo "wheel: $wheel, $(stat -c %s "$wheel") bytes, built in $(( (t1 - t0) / 1000000 )) ms"
"$PY" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"

echo "== pytest python/tests"
set +e
(cd python && CMARGIN="$PWD/../target/release/cmargin" REQUIRE_CLI=1 "$PY" -m pytest -q -rs tests)
rc=$?
set -e
case $rc in
  0) ;;
  5) echo "test-all: pytest collected no tests (exit 5): python/tests is missing or broken" >&2; exit 1 ;;
  *) exit $rc ;;
esac
