#!/usr/bin/env bash
# ONNX-ML fixtures for models-tree (see scripts/make_onnx_ml_fixtures.py).
#
# Creates its own Python environment in .venv-onnx-ml/ (gitignored) with scikit-learn,
# skl2onnx, onnxmltools, onnxruntime, xgboost, lightgbm and numpy from PyPI (the pinned
# versions the committed fixtures were made with), writes the embedded breast_cancer, iris
# and diabetes splits with `fheml dataset` (the splits the Rust tests read from smartcore:
# every fifth row a test row), trains small models on them and writes
# models-tree/tests/fixtures/onnx_ml/.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-onnx-ml"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    scikit-learn==1.9.1 skl2onnx==1.20.0 onnxmltools==1.16.0 onnxruntime==1.32.0 onnx==1.23.2 \
    xgboost==3.2.0 lightgbm==4.7.0 numpy==2.4.6

data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT
for name in breast_cancer iris diabetes; do
    (cd "$root" && cargo run --quiet -p fheml-cli -- dataset --name "$name" --out-dir "$data")
done
"$venv/bin/python" "$root/scripts/make_onnx_ml_fixtures.py" "$data"
