#!/usr/bin/env python3
"""Tree learner parity: fheml's trees, forests and boosting against scikit-learn and XGBoost.

For each dataset (CSV splits with a header row, the target in the last column `target`)
and each model at Concrete ML's benchmark hyperparameters (tree max_depth=5, forest 20 trees
of max_depth 4, gradient boosting 20 trees of depth 3 with fheml's default learning rate
0.3), this fits scikit-learn (and XGBoost for boosting) in floating point, then trains the
same model with `fheml train` and scores it with `fheml eval --mode clear --json`, which
reports the float model's score and the quantized model's (exact integer evaluation of the
circuit, what encryption computes). Randomized learners are averaged over seeds.

Writes bench/tree_parity.json, bench/tree_parity.md, and the "Tree learner parity" section
of BENCHMARKS.md (replaced in place, or inserted before the n_bits sweep section, which
`cargo xtask bench --sweep` keeps last). Run it through scripts/tree_parity.sh, which
builds fheml and prepares the Python environment.
"""

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import sklearn
import xgboost
from sklearn.datasets import load_digits
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Tree learner parity"
SWEEP_SECTION = "## Accuracy and cost against n_bits"
# fheml's defaults (models-tree/src/params.rs), which are Concrete ML's benchmark settings.
MODELS = {
    "tree": {"max_depth": 5},
    "forest": {"max_depth": 4, "n_estimators": 20},
    "gbdt": {"max_depth": 3, "n_estimators": 20, "learning_rate": 0.3},
}
# Rows besides the defaults: (row label, fheml model, extra settings), classifiers only.
# Soft voting is scikit-learn's forest prediction; fheml's default is hard voting.
VARIANTS = {"forest": [("forest, voting=soft", {"voting": "soft"})]}
# A gap larger than this (accuracy, or R² for regression) is flagged.
TOLERANCE = 0.01
DIGITS_SPLIT_SEED = 0
# digits: the stratified split; digits_unstratified: the same seed without stratification,
# the split FACTS.md's digits figures (scikit-learn tree 0.731, forest 0.842) come from.
DIGITS_SPLITS = {"digits": True, "digits_unstratified": False}


def export_digits(out_dir: Path, name: str, stratified: bool) -> None:
    """scikit-learn's 8x8 digits, an 80/20 split with a fixed seed."""
    train_csv, test_csv = out_dir / f"{name}_train.csv", out_dir / f"{name}_test.csv"
    if train_csv.exists() and test_csv.exists():
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y if stratified else None, random_state=DIGITS_SPLIT_SEED
    )
    header = ",".join([f"f{i}" for i in range(x.shape[1])] + ["target"])
    for path, xs, ys in [(train_csv, x_train, y_train), (test_csv, x_test, y_test)]:
        rows = np.column_stack([xs, ys]).astype(int)
        np.savetxt(path, rows, fmt="%d", delimiter=",", header=header, comments="")


def load_csv(path: Path):
    with open(path) as f:
        header = f.readline().strip().split(",")
    if header[-1] != "target":
        sys.exit(f"{path}: the last column is `{header[-1]}`, expected `target`")
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, :-1], data[:, -1]


def reference_models(model: str, classification: bool, seed: int):
    """The scikit-learn (and XGBoost) models, by column name."""
    p = MODELS[model]
    if model == "tree":
        cls = DecisionTreeClassifier if classification else DecisionTreeRegressor
        return {"scikit-learn": cls(max_depth=p["max_depth"], random_state=seed)}
    if model == "forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return {
            "scikit-learn": cls(n_estimators=p["n_estimators"], max_depth=p["max_depth"], random_state=seed)
        }
    gb = GradientBoostingClassifier if classification else GradientBoostingRegressor
    xgb = xgboost.XGBClassifier if classification else xgboost.XGBRegressor
    common = dict(n_estimators=p["n_estimators"], max_depth=p["max_depth"], learning_rate=p["learning_rate"])
    return {
        "scikit-learn": gb(random_state=seed, **common),
        # fheml's booster (hessboost) follows XGBoost's exact greedy algorithm.
        "XGBoost": xgb(tree_method="exact", random_state=seed, **common),
    }


def score(classification: bool, y, pred) -> float:
    return float(accuracy_score(y, pred) if classification else r2_score(y, pred))


def run_fheml(fheml: str, model: str, extra: dict, train_csv: Path, test_csv: Path, seed: int, work: Path) -> dict:
    out = work / f"{model}.fheml"
    settings = [f"{k}={v}" for k, v in {**MODELS[model], **extra}.items()] + [f"seed={seed}"]
    cmd = [fheml, "train", "--model", model, "--data", str(train_csv), "--out", str(out)]
    for s in settings:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    ev = subprocess.run(
        [fheml, "eval", "--model", str(out), "--data", str(test_csv), "--mode", "clear", "--json"],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(ev.stdout.strip().splitlines()[-1])


def mean(values):
    return float(np.mean(values))


def fmt(v):
    return "–" if v is None else f"{v:.3f}"


def markdown(results: dict) -> str:
    seeds = results["seeds"]
    lines = [
        f"Generated by `scripts/tree_parity.sh` ({results['machine']}; scikit-learn {results['sklearn']}, "
        f"XGBoost {results['xgboost']}). Same CSV splits and hyperparameters for every library: tree max_depth 5, "
        "forest 20 trees of max_depth 4, gradient boosting 20 trees of depth 3 with learning rate 0.3 "
        "(XGBoost with `tree_method=\"exact\"`, as fheml's booster). fheml trains trees and forests with its "
        "own CART learner (`models-tree/src/cart.rs`) on the features snapped to its 6-bit input grid; "
        "*float* is that model on the raw test features, *quantized* the integer circuit in Clear mode "
        "(exactly what encryption computes). digits is a stratified 80/20 split of scikit-learn's `load_digits` "
        f"(seed {DIGITS_SPLIT_SEED}); digits_unstratified the same without stratification, the split of the "
        "digits figures in FACTS.md. Scores are accuracy (R² for diabetes) on the test split, "
        f"averaged over seeds {seeds['randomized']} for trees and forests (one seed, {seeds['gbdt']}, for boosting: "
        "deterministic). fheml forests vote hard by default (each tree one vote: one bootstrap per leaf); "
        "scikit-learn averages the trees' leaf class fractions, which `voting=soft` reproduces at a higher "
        "bootstrap count. Gap: fheml quantized minus the best reference; "
        f"⚠ marks a gap below −{TOLERANCE:.2f}. Data: [bench/tree_parity.json](bench/tree_parity.json).",
        "",
        "| dataset | model | metric | scikit-learn | XGBoost | fheml float | fheml quantized | gap | PBS/sample |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        ref = max(v for v in [r["sklearn"], r["xgboost"]] if v is not None)
        gap = r["quantized"] - ref
        flag = " ⚠" if gap < -TOLERANCE else ""
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['metric']} | {fmt(r['sklearn'])} | {fmt(r['xgboost'])} | "
            f"{fmt(r['float'])} | {fmt(r['quantized'])} | {gap:+.3f}{flag} | {r['pbs_per_sample']} |"
        )
    return "\n".join(lines) + "\n"


def update_benchmarks(benchmarks: Path, table: str) -> None:
    section = f"{SECTION}\n\n{table}"
    md = benchmarks.read_text() if benchmarks.exists() else "# Benchmarks\n"
    start = md.find(f"\n{SECTION}\n")
    if start >= 0:
        end = md.find("\n## ", start + 1)
        rest = md[end:] if end >= 0 else "\n"
        md = md[: start + 1] + section + rest
    else:
        sweep = md.find(f"\n{SWEEP_SECTION}\n")
        if sweep >= 0:
            md = md[: sweep + 1] + section + "\n" + md[sweep + 1 :]
        else:
            md = md.rstrip("\n") + "\n\n" + section
    benchmarks.write_text(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fheml", required=True, help="the fheml binary")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--digits-dir", default=str(ROOT / "bench" / "datasets"))
    ap.add_argument("--datasets", default="breast_cancer,iris,diabetes,digits,digits_unstratified")
    ap.add_argument("--models", default="tree,forest,gbdt")
    ap.add_argument("--seeds", type=int, default=5, help="seeds averaged for trees and forests")
    ap.add_argument("--out-dir", default=str(ROOT / "bench"))
    ap.add_argument("--benchmarks", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()

    for name, stratified in DIGITS_SPLITS.items():
        export_digits(Path(args.digits_dir), name, stratified)
    randomized_seeds = list(range(args.seeds))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dataset in args.datasets.split(","):
            folder = Path(args.digits_dir if dataset in DIGITS_SPLITS else args.data_dir)
            train_csv, test_csv = folder / f"{dataset}_train.csv", folder / f"{dataset}_test.csv"
            x_train, y_train = load_csv(train_csv)
            x_test, y_test = load_csv(test_csv)
            classification = dataset != "diabetes"
            runs = []
            for model in args.models.split(","):
                runs.append((model, model, {}))
                if classification:
                    runs += [(label, model, extra) for label, extra in VARIANTS.get(model, [])]
            for label, model, extra in runs:
                seeds = randomized_seeds if model != "gbdt" else [0]
                refs, ours = {}, []
                for seed in seeds:
                    for name, est in reference_models(model, classification, seed).items():
                        est.fit(x_train, y_train)
                        refs.setdefault(name, []).append(score(classification, y_test, est.predict(x_test)))
                    ours.append(run_fheml(args.fheml, model, extra, train_csv, test_csv, seed, Path(tmp)))
                row = {
                    "dataset": dataset,
                    "model": label,
                    "metric": "accuracy" if classification else "r2",
                    "sklearn": mean(refs["scikit-learn"]),
                    "xgboost": mean(refs["XGBoost"]) if "XGBoost" in refs else None,
                    "float": mean([o["float"] for o in ours]),
                    "quantized": mean([o["quantized"] for o in ours]),
                    "pbs_per_sample": int(round(mean([o["pbs_per_sample"] for o in ours]))),
                    "per_seed": {
                        "seeds": seeds,
                        "references": refs,
                        "fheml_float": [o["float"] for o in ours],
                        "fheml_quantized": [o["quantized"] for o in ours],
                    },
                }
                rows.append(row)
                print(
                    f"{dataset:14} {label:20} sklearn {fmt(row['sklearn'])} xgboost {fmt(row['xgboost'])} "
                    f"fheml float {fmt(row['float'])} quantized {fmt(row['quantized'])}",
                    flush=True,
                )
    results = {
        "machine": f"{platform.machine()}, {platform.system()}",
        "sklearn": sklearn.__version__,
        "xgboost": xgboost.__version__,
        "hyperparameters": MODELS,
        "seeds": {"randomized": randomized_seeds, "gbdt": [0]},
        "digits_splits": {
            name: {"test_size": 0.2, "stratify": stratified, "random_state": DIGITS_SPLIT_SEED}
            for name, stratified in DIGITS_SPLITS.items()
        },
        "tolerance": TOLERANCE,
        "rows": rows,
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "tree_parity.json").write_text(json.dumps(results, indent=1) + "\n")
    table = markdown(results)
    (out_dir / "tree_parity.md").write_text(f"# Tree learner parity\n\n{table}")
    update_benchmarks(Path(args.benchmarks), table)
    print(table)


if __name__ == "__main__":
    main()
