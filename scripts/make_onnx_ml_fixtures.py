#!/usr/bin/env python3
"""Builds the ONNX-ML fixtures of `models-tree/tests/fixtures/onnx_ml/` and records what the
source library predicts on them.

Run through `scripts/make_onnx_ml_fixtures.sh` (it makes the Python environment and the
data); CI never runs it, the generated files are committed. Usage:
`make_onnx_ml_fixtures.py DATASETS_DIR`, where DATASETS_DIR holds
`{breast_cancer,iris,diabetes}_{train,test}.csv` as `fheml dataset` writes them (a header
row, the target column named `target`): the embedded datasets split as fheml's tests split
them, so that the Rust tests read the same rows from smartcore.

Every model is small and trained with a fixed seed on the train split, then converted with
skl2onnx (scikit-learn) or onnxmltools (LightGBM, XGBoost). Written, per fixture:

- `<fixture>.onnx`: the converted model.
- `<fixture>.json`: `{"dataset", "task", "library", "versions", "labels" (+ "probabilities") |
  "values", "onnxruntime_labels" | "onnxruntime_values"}`: the source library's own
  predictions (`predict`, and `predict_proba` for classifiers) on the dataset's test rows,
  and onnxruntime's on the same rows (the input cast to float32, as ONNX reads it); the
  package versions that made them.
"""

import json
import os
import sys

import lightgbm
import numpy as np
import onnxmltools
import onnxruntime
import xgboost
from onnxmltools.convert.common.data_types import FloatTensorType as MlFloatTensorType
from skl2onnx import to_onnx
import onnx
import skl2onnx
import skl2onnx.common.tree_ensemble
import sklearn
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models-tree", "tests", "fixtures", "onnx_ml")
# ai.onnx.ml opset 3 is TreeEnsemble{Classifier,Regressor} v3, what the converters write by
# default; the default-domain opset only matters for the wrapper nodes (Cast, ...).
OPSET = {"": 15, "ai.onnx.ml": 3}
VERSIONS = {
    "scikit-learn": sklearn.__version__,
    "skl2onnx": skl2onnx.__version__,
    "onnxmltools": onnxmltools.__version__,
    "lightgbm": lightgbm.__version__,
    "xgboost": xgboost.__version__,
    "onnx": onnx.__version__,
    "onnxruntime": onnxruntime.__version__,
}


def load(datasets, name, part):
    path = os.path.join(datasets, f"{name}_{part}.csv")
    with open(path) as f:
        header = f.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1)
    target = header.index("target")
    x = np.delete(table, target, axis=1)
    return x, table[:, target]


def _int_missing_tracks(add_node):
    # skl2onnx 1.20 passes HistGradientBoosting's `missing_go_to_left` (a bool) into the
    # `nodes_missing_value_tracks_true` ints, which onnx >= 1.17's protobuf refuses.
    def patched(*args, **kwargs):
        if "nodes_missing_value_tracks_true" in kwargs:
            kwargs["nodes_missing_value_tracks_true"] = int(kwargs["nodes_missing_value_tracks_true"])
        return add_node(*args, **kwargs)

    return patched


skl2onnx.common.tree_ensemble.add_node = _int_missing_tracks(skl2onnx.common.tree_ensemble.add_node)


def sklearn_onnx(model, x, zipmap):
    options = None if zipmap or not hasattr(model, "predict_proba") else {id(model): {"zipmap": False}}
    return to_onnx(model, x[:1].astype(np.float32), options=options, target_opset=OPSET).SerializeToString()


def onnxmltools_onnx(convert, model, n_features, **options):
    initial = [("input", MlFloatTensorType([None, n_features]))]
    # onnxmltools takes the default-domain opset only (and picks ai.onnx.ml itself).
    return convert(model, initial_types=initial, target_opset=OPSET[""], **options).SerializeToString()


def runtime_outputs(onnx_bytes, x):
    session = onnxruntime.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: x.astype(np.float32)})


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_onnx_ml_fixtures.py DATASETS_DIR (written by `fheml dataset`)")
    datasets = sys.argv[1]
    os.makedirs(OUT, exist_ok=True)
    splits = {name: (load(datasets, name, "train"), load(datasets, name, "test")) for name in ["breast_cancer", "iris", "diabetes"]}

    seed = 0
    # (fixture, dataset, model, how it is converted)
    fixtures = [
        ("sklearn_decision_tree_iris", "iris", DecisionTreeClassifier(max_depth=4, random_state=seed), "sklearn"),
        ("sklearn_decision_tree_iris_zipmap", "iris", DecisionTreeClassifier(max_depth=4, random_state=seed), "sklearn+zipmap"),
        ("sklearn_random_forest_breast_cancer", "breast_cancer", RandomForestClassifier(n_estimators=10, max_depth=3, random_state=seed), "sklearn"),
        ("sklearn_random_forest_iris_zipmap", "iris", RandomForestClassifier(n_estimators=10, max_depth=3, random_state=seed), "sklearn+zipmap"),
        ("sklearn_gradient_boosting_breast_cancer", "breast_cancer", GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=seed), "sklearn"),
        ("sklearn_gradient_boosting_iris", "iris", GradientBoostingClassifier(n_estimators=10, max_depth=2, random_state=seed), "sklearn"),
        ("sklearn_extra_trees_iris", "iris", ExtraTreesClassifier(n_estimators=10, max_depth=3, random_state=seed), "sklearn"),
        ("sklearn_decision_tree_regressor_diabetes", "diabetes", DecisionTreeRegressor(max_depth=4, random_state=seed), "sklearn"),
        ("sklearn_random_forest_regressor_diabetes", "diabetes", RandomForestRegressor(n_estimators=10, max_depth=3, random_state=seed), "sklearn"),
        ("sklearn_gradient_boosting_regressor_diabetes", "diabetes", GradientBoostingRegressor(n_estimators=10, max_depth=2, random_state=seed), "sklearn"),
        ("sklearn_decision_tree_breast_cancer", "breast_cancer", DecisionTreeClassifier(max_depth=4, random_state=seed), "sklearn"),
        ("sklearn_extra_trees_regressor_diabetes", "diabetes", ExtraTreesRegressor(n_estimators=10, max_depth=3, random_state=seed), "sklearn"),
        ("sklearn_hist_gradient_boosting_breast_cancer", "breast_cancer", HistGradientBoostingClassifier(max_iter=10, max_depth=3, random_state=seed), "sklearn"),
        ("sklearn_hist_gradient_boosting_iris", "iris", HistGradientBoostingClassifier(max_iter=10, max_depth=2, random_state=seed), "sklearn"),
        ("sklearn_hist_gradient_boosting_regressor_diabetes", "diabetes", HistGradientBoostingRegressor(max_iter=10, max_depth=3, random_state=seed), "sklearn"),
        ("lightgbm_breast_cancer", "breast_cancer", lightgbm.LGBMClassifier(n_estimators=10, max_depth=3, num_leaves=8, random_state=seed, verbose=-1), "lightgbm"),
        ("lightgbm_regressor_diabetes", "diabetes", lightgbm.LGBMRegressor(n_estimators=10, max_depth=3, num_leaves=8, random_state=seed, verbose=-1), "lightgbm"),
        ("lightgbm_iris", "iris", lightgbm.LGBMClassifier(n_estimators=10, max_depth=2, num_leaves=4, random_state=seed, verbose=-1), "lightgbm"),
        ("xgboost_regressor_diabetes", "diabetes", xgboost.XGBRegressor(n_estimators=10, max_depth=3, random_state=seed), "xgboost"),
        ("xgboost_breast_cancer", "breast_cancer", xgboost.XGBClassifier(n_estimators=10, max_depth=3, random_state=seed), "xgboost"),
        ("xgboost_iris", "iris", xgboost.XGBClassifier(n_estimators=10, max_depth=2, random_state=seed), "xgboost"),
        ("sklearn_logistic_regression_iris", "iris", LogisticRegression(max_iter=1000), "sklearn"),
        ("sklearn_linear_regression_diabetes", "diabetes", LinearRegression(), "sklearn"),
    ]
    for fixture, dataset, model, how in fixtures:
        (x_train, y_train), (x_test, _) = splits[dataset]
        classification = dataset != "diabetes"
        if classification:
            y_train = y_train.astype(np.int64)
        model.fit(x_train, y_train)
        if how.startswith("sklearn"):
            onnx_bytes = sklearn_onnx(model, x_train, zipmap=how.endswith("zipmap"))
            library = "scikit-learn"
        elif how == "lightgbm":
            onnx_bytes = onnxmltools_onnx(onnxmltools.convert_lightgbm, model, x_train.shape[1], zipmap=False)
            library = "lightgbm"
        else:
            onnx_bytes = onnxmltools_onnx(onnxmltools.convert_xgboost, model, x_train.shape[1])
            library = "xgboost"
        predicted = model.predict(x_test)
        outputs = runtime_outputs(onnx_bytes, x_test)
        record = {
            "dataset": dataset,
            "task": "classification" if classification else "regression",
            "library": library,
            "versions": VERSIONS,
        }
        if classification:
            record["labels"] = [int(v) for v in predicted]
            record["probabilities"] = np.asarray(model.predict_proba(x_test)).tolist()
            record["onnxruntime_labels"] = [int(v) for v in np.asarray(outputs[0]).ravel()]
        else:
            record["values"] = [float(v) for v in predicted]
            record["onnxruntime_values"] = [float(v) for v in np.asarray(outputs[0]).ravel()]
        with open(os.path.join(OUT, f"{fixture}.onnx"), "wb") as f:
            f.write(onnx_bytes)
        with open(os.path.join(OUT, f"{fixture}.json"), "w") as f:
            json.dump(record, f, separators=(",", ":"))
        agree = (
            np.mean(np.asarray(record["labels"]) == np.asarray(record["onnxruntime_labels"]))
            if classification
            else np.max(np.abs(np.asarray(record["values"]) - np.asarray(record["onnxruntime_values"])))
        )
        print(f"{fixture}: {len(onnx_bytes)} bytes; onnxruntime vs {library}: {'agreement' if classification else 'max |diff|'} {agree}")


if __name__ == "__main__":
    main()
