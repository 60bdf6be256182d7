#!/usr/bin/env python3
"""Writes the XGBoost fixtures of fheml-models-tree's tests.

    python3 -m venv /tmp/xgb && /tmp/xgb/bin/pip install xgboost
    /tmp/xgb/bin/python models-tree/scripts/make_xgboost_fixture.py

Trains three small models (5 trees, depth 3) on a seeded synthetic data set, saves each
with `save_model(...json)` into tests/fixtures/, and writes the predictions XGBoost itself
made (raw margins and transformed outputs) for some rows into
tests/fixtures/xgb_predictions.json. Some rows put a feature exactly on a split threshold,
to pin XGBoost's `x < threshold` rule. Only the script needs Python; the Rust tests read the
committed files.
"""

import json
import pathlib

import numpy as np
import xgboost as xgb

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures"
N_FEATURES = 6


def data(rng, n):
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[:, 1] = x[:, 1] * 10.0 + 3.0  # a feature on another scale
    x[:, 4] = np.round(x[:, 4] * 2.0)  # a feature with few distinct values (ties at thresholds)
    return x


def score(x):
    return 1.5 * x[:, 0] - 0.1 * x[:, 1] + x[:, 2] * x[:, 3] + 0.8 * x[:, 4]


def tree_thresholds(booster):
    out = []
    for tree in json.loads(booster.save_raw("json"))["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(tree["left_children"]):
            if left != -1:
                out.append((tree["split_indices"][i], tree["split_conditions"][i]))
    return out


def probe_rows(booster, x_test):
    """Test rows, plus rows with one feature set exactly to a split threshold."""
    rows = [r.copy() for r in x_test[:20]]
    for k, (feature, threshold) in enumerate(tree_thresholds(booster)[:12]):
        r = x_test[k % len(x_test)].copy()
        r[feature] = np.float32(threshold)
        rows.append(r)
    return np.array(rows, dtype=np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    x_train, x_test = data(rng, 240), data(rng, 40)
    s_train = score(x_train)
    common = {"max_depth": 3, "eta": 0.3, "tree_method": "exact", "seed": 0}
    rounds = 5

    def train(objective, labels, **extra):
        params = dict(common, objective=objective, **extra)
        return xgb.train(params, xgb.DMatrix(x_train, label=labels), num_boost_round=rounds)

    models = {
        "binary": train("binary:logistic", (s_train > 0.3).astype(np.float32)),
        "regressor": train("reg:squarederror", s_train),
        "multiclass": train("multi:softprob", np.digitize(s_train, [-1.0, 1.0]).astype(np.float32), num_class=3),
    }

    predictions = {"xgboost_version": xgb.__version__}
    for name, booster in models.items():
        booster.save_model(str(OUT / f"xgb_{name}.json"))
        rows = probe_rows(booster, x_test)
        dm = xgb.DMatrix(rows)
        margin = booster.predict(dm, output_margin=True)
        output = booster.predict(dm)
        predictions[name] = {
            "rows": rows.astype(np.float64).tolist(),
            "margin": np.asarray(margin, dtype=np.float64).tolist(),
            "output": np.asarray(output, dtype=np.float64).tolist(),
        }
    (OUT / "xgb_predictions.json").write_text(json.dumps(predictions, indent=1) + "\n")
    print("wrote", sorted(p.name for p in OUT.glob("xgb_*.json")))


if __name__ == "__main__":
    main()
