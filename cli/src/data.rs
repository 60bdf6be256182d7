//! Tabular data: CSV files with a header row, and the embedded datasets.

use std::path::Path;

use ndarray::{Array1, Array2, Axis};

use crate::error::{CliError, Result};

/// Features and targets.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column names of the features.
    pub feature_names: Vec<String>,
    /// `[rows, features]`.
    pub x: Array2<f64>,
    /// One target per row (absent when the file has no target column).
    pub y: Option<Array1<f64>>,
}

/// Which column holds the target.
#[derive(Debug, Clone, Copy)]
pub enum TargetColumn<'a> {
    /// The last column.
    Last,
    /// The column with this header name.
    Named(&'a str),
    /// No target: every column is a feature.
    None,
}

/// Reads a CSV file with a header row; every cell must be a finite number.
pub fn read_csv(path: &Path, target: TargetColumn) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| CliError::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).trim(csv::Trim::All).from_reader(file);
    let bad = |detail: String| CliError::Data { path: path.display().to_string(), detail };
    let headers: Vec<String> = reader.headers().map_err(|e| bad(e.to_string()))?.iter().map(str::to_string).collect();
    if headers.is_empty() || headers.iter().all(String::is_empty) {
        return Err(bad("no header row".into()));
    }
    let target_index = match target {
        TargetColumn::Last => Some(headers.len() - 1),
        TargetColumn::None => None,
        TargetColumn::Named(name) => Some(
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| bad(format!("no column named `{name}` (columns: {})", headers.join(", "))))?,
        ),
    };
    let mut values = Vec::new();
    let mut rows = 0;
    for (i, record) in reader.records().enumerate() {
        let line = i + 2;
        let record = record.map_err(|e| bad(format!("line {line}: {e}")))?;
        if record.len() != headers.len() {
            return Err(bad(format!("line {line} has {} fields, the header has {}", record.len(), headers.len())));
        }
        for (c, cell) in record.iter().enumerate() {
            let v: f64 = cell
                .parse()
                .map_err(|_| bad(format!("line {line}, column `{}`: `{cell}` is not a number", headers[c])))?;
            if !v.is_finite() {
                return Err(bad(format!(
                    "line {line}, column `{}`: {cell} is not finite; clean the data first",
                    headers[c]
                )));
            }
            values.push(v);
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(bad("no data rows".into()));
    }
    let all = Array2::from_shape_vec((rows, headers.len()), values).map_err(|e| bad(e.to_string()))?;
    let feature_columns: Vec<usize> = (0..headers.len()).filter(|c| Some(*c) != target_index).collect();
    if feature_columns.is_empty() {
        return Err(bad("no feature column besides the target".into()));
    }
    Ok(Table {
        feature_names: feature_columns.iter().map(|c| headers[*c].clone()).collect(),
        x: all.select(Axis(1), &feature_columns),
        y: target_index.map(|t| all.column(t).to_owned()),
    })
}

/// An embedded dataset split 80/20 (every fifth row is a test row).
pub fn embedded(name: &str) -> Result<(Table, Table)> {
    let (data, target, features, names): (Vec<f32>, Vec<f64>, usize, Vec<String>) = match name {
        "breast_cancer" => {
            let d = smartcore::dataset::breast_cancer::load_dataset();
            (d.data, d.target.into_iter().map(f64::from).collect(), d.num_features, d.feature_names)
        }
        "iris" => {
            let d = smartcore::dataset::iris::load_dataset();
            (d.data, d.target.into_iter().map(f64::from).collect(), d.num_features, d.feature_names)
        }
        "diabetes" => {
            let d = smartcore::dataset::diabetes::load_dataset();
            (d.data, d.target.into_iter().map(f64::from).collect(), d.num_features, d.feature_names)
        }
        other => {
            return Err(CliError::Usage(format!("unknown dataset `{other}`; use breast_cancer, iris or diabetes")));
        }
    };
    let rows = target.len();
    let x = Array2::from_shape_vec((rows, features), data.into_iter().map(f64::from).collect())
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let y = Array1::from(target);
    let (test, train): (Vec<usize>, Vec<usize>) = (0..rows).partition(|i| i % 5 == 0);
    let names = if names.len() == features { names } else { (0..features).map(|i| format!("f{i}")).collect() };
    let pick = |rows: &[usize]| Table {
        feature_names: names.clone(),
        x: x.select(Axis(0), rows),
        y: Some(y.select(Axis(0), rows)),
    };
    Ok((pick(&train), pick(&test)))
}

/// Writes `name`'s embedded split as `{name}_train.csv` and `{name}_test.csv`.
pub fn export_embedded(name: &str, dir: &Path) -> Result<()> {
    let (train, test) = embedded(name)?;
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    for (table, part) in [(train, "train"), (test, "test")] {
        let mut text =
            table.feature_names.iter().map(|n| n.replace(',', "_")).collect::<Vec<_>>().join(",") + ",target\n";
        let y = table.y.unwrap_or_default();
        for (row, target) in table.x.rows().into_iter().zip(y.iter()) {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            text += &format!("{},{target}\n", cells.join(","));
        }
        let path = dir.join(format!("{name}_{part}.csv"));
        crate::model_file::write_atomically(&path, text.as_bytes())?;
    }
    Ok(())
}
