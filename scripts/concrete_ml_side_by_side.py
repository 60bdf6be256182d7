"""Concrete ML on the benchmark splits, on this machine, so fheml's rows can be compared in one run.

Writes one JSON object per (dataset, model) in the form of ../shared/ANCHORS.jsonl, which
`cargo xtask bench --anchors FILE` reads. Hyperparameters as in ../shared/ANCHORS.md.
Run through scripts/concrete_ml_side_by_side.sh (it makes the venv).
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, r2_score
from sklearn.preprocessing import StandardScaler


def load(data_dir, dataset):
    train = pd.read_csv(f"{data_dir}/{dataset}_train.csv")
    test = pd.read_csv(f"{data_dir}/{dataset}_test.csv")
    features = [c for c in train.columns if c != "target"]
    return (
        train[features].to_numpy(np.float32),
        train["target"].to_numpy(),
        test[features].to_numpy(np.float32),
        test["target"].to_numpy(),
    )


def build(model, classification, n_features):
    import torch.nn as nn
    from concrete.ml.sklearn import (
        NeuralNetClassifier,
        NeuralNetRegressor,
        XGBClassifier,
        XGBRegressor,
    )

    if model == "gbdt":
        cls = XGBClassifier if classification else XGBRegressor
        return cls(n_estimators=20, max_depth=3, n_bits=6), False
    if model == "mlp":
        cls = NeuralNetClassifier if classification else NeuralNetRegressor
        params = dict(
            module__n_layers=3,
            module__n_w_bits=3,
            module__n_a_bits=3,
            module__n_accum_bits=8,
            module__n_hidden_neurons_multiplier=4,
            module__activation_function=nn.ReLU,
            max_epochs=100,
            lr=0.01,
            verbose=0,
        )
        return cls(**params), True
    raise SystemExit(f"unknown model {model}")


def run(data_dir, dataset, model, rows):
    classification = dataset != "diabetes"
    x_train, y_train, x_test, y_test = load(data_dir, dataset)
    estimator, standardize = build(model, classification, x_train.shape[1])
    if standardize:
        scaler = StandardScaler().fit(x_train)
        x_train = scaler.transform(x_train).astype(np.float32)
        x_test = scaler.transform(x_test).astype(np.float32)
    if not classification:
        y_train = y_train.astype(np.float32)
        if model == "mlp":
            y_train = y_train.reshape(-1, 1)
    elif model == "mlp":
        y_train = y_train.astype(np.int64)
    start = time.time()
    estimator.fit(x_train, y_train)
    fit_s = time.time() - start
    start = time.time()
    circuit = estimator.compile(x_train)
    compile_s = time.time() - start
    metric = accuracy_score if classification else r2_score
    clear = np.asarray(estimator.predict(x_test)).reshape(len(x_test), -1)
    quantized = metric(y_test, clear[:, 0]) if clear.shape[1] == 1 else None
    start = time.time()
    circuit.keygen(force=True)
    keygen_s = time.time() - start
    eval_key_bytes = len(circuit.keys.evaluation.serialize())
    subset = x_test[:rows]
    latencies, fhe = [], []
    for row in subset:
        start = time.time()
        fhe.append(np.asarray(estimator.predict(row[None, :], fhe="execute")).reshape(-1))
        latencies.append(time.time() - start)
    fhe = np.asarray(fhe)
    agree = float(np.mean(np.all(np.isclose(fhe, clear[:rows]), axis=1)))
    return {
        "system": "concrete-ml 1.9.0 (side by side)",
        "dataset": dataset,
        "model": model,
        "metric": "accuracy" if classification else "r2",
        "fit_s": fit_s,
        "compile_s": compile_s,
        "quantized": quantized,
        "max_bit_width": int(circuit.graph.maximum_integer_bit_width()),
        "pbs_count": int(circuit.programmable_bootstrap_count),
        "keygen_s": keygen_s,
        "eval_key_bytes": eval_key_bytes,
        "fhe_n": rows,
        "fhe_latency_s": float(np.median(latencies)),
        "fhe_agrees_with_clear": agree,
        "fhe_score_on_n": float(metric(y_test[:rows], fhe[:, 0])),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--datasets", default="breast_cancer")
    ap.add_argument("--models", default="mlp,gbdt")
    ap.add_argument("--rows", type=int, default=5)
    ap.add_argument("--out", default="-")
    a = ap.parse_args()
    out = sys.stdout if a.out == "-" else open(a.out, "w")
    for dataset in a.datasets.split(","):
        for model in a.models.split(","):
            print(f"concrete-ml: {dataset} {model}", file=sys.stderr)
            out.write(json.dumps(run(a.data_dir, dataset, model, a.rows)) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
