#!/usr/bin/env bash
# Tree learner parity against scikit-learn and XGBoost (see scripts/tree_parity.py).
#
# Creates its own Python environment in .venv-parity/ (gitignored) with scikit-learn,
# xgboost and numpy from PyPI, builds the fheml binary (release by default;
# FHEML_PROFILE=dev for the debug build, which is enough here: Clear mode only), then
# writes bench/tree_parity.{json,md} and the "Tree learner parity" section of BENCHMARKS.md.
# Extra arguments go to tree_parity.py (e.g. --datasets digits --seeds 3).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-parity"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check scikit-learn xgboost numpy

profile="${FHEML_PROFILE:-release}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ "$profile" = "dev" ]; then
    (cd "$root" && cargo build -p fheml-cli)
    fheml="$target_dir/debug/fheml"
else
    (cd "$root" && cargo build --release -p fheml-cli)
    fheml="$target_dir/release/fheml"
fi

exec "$venv/bin/python" "$root/scripts/tree_parity.py" --fheml "$fheml" "$@"
