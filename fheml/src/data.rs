//! Tabular data as people have it: CSV files whose columns are matched to a model by their
//! header names (in any order), a target column named explicitly, text class labels and
//! categorical columns; and the embedded datasets.
//!
//! The rules, shared by every command that reads rows:
//! - The header row names the columns. A file whose first row is all numbers has no header and
//!   is refused unless `--no-header`, which takes the model's columns in the model's order.
//! - The target is the column named by `--target` (default `target`); a command that needs one
//!   refuses a file without it, and `--no-target` says there is none. Nothing is guessed.
//! - A column the model does not know is refused unless `--ignore-extra`; a missing one is
//!   always refused, by name.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array1, Array2, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The target column's name when `--target` is not given.
pub const DEFAULT_TARGET: &str = "target";

/// Features and targets, ready for a model.
#[derive(Debug, Clone)]
pub struct Table {
    /// Column names of the model's features (one-hot columns expanded, `column=category`).
    pub feature_names: Vec<String>,
    /// `[rows, features]`.
    pub x: Array2<f64>,
    /// One target per row (absent when the file has no target column); text labels are
    /// encoded as their index in the schema's label set.
    pub y: Option<Array1<f64>>,
    /// The columns as the file names them, saved in the model.
    pub schema: DataSchema,
}

/// How to read a CSV file.
#[derive(Debug, Clone, Copy, Default)]
pub struct CsvOptions {
    /// Field separator; `None` detects `,`, `;` or tab from the first line.
    pub delimiter: Option<u8>,
    /// The file has no header row: its columns are the model's, in the model's order.
    pub no_header: bool,
}

/// Which column holds the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// The column with this header name.
    Named(&'a str),
    /// The file has no target column (`--no-target`).
    None,
}

/// A CSV file's cells, as text, before they are matched to a model.
#[derive(Debug, Clone)]
pub struct RawTable {
    path: String,
    /// Header names (absent with `--no-header`).
    header: Option<Vec<String>>,
    /// Data rows, each as long as the header.
    rows: Vec<Vec<String>>,
    /// The file line of each data row, for messages.
    lines: Vec<u64>,
}

/// One input column of the data file, as the model expects it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputColumn {
    /// Header name.
    pub name: String,
    /// Categories of a one-hot encoded column, in feature order; `None` for a numeric column.
    pub categories: Option<Vec<String>>,
}

/// What a model expects of a data file: its input columns (by header name), its target
/// column, and its class labels as written in the training data. Saved in the model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSchema {
    /// Input columns, in the model's feature order.
    pub columns: Vec<InputColumn>,
    /// The target column the model was trained or calibrated with, if any.
    pub target: Option<String>,
    /// Class labels as text, in class-index order, when the target held text; the model's
    /// classes are then `0..labels.len()`.
    pub labels: Option<Vec<String>>,
}

/// Rows matched to a model's columns.
#[derive(Debug, Clone)]
pub struct ScoringTable {
    /// `[rows, model features]`, in the model's feature order.
    pub x: Array2<f64>,
    /// The target cells, when the command asked for them.
    pub target: Option<Vec<String>>,
    /// The `--id` column's cells, when asked for.
    pub ids: Option<Vec<String>>,
}

/// What a scoring command wants from a file besides the model's columns.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    /// The target column's name (`None`: `--no-target`).
    pub target: Option<&'a str>,
    /// Whether the command needs the target (eval) or just skips it when present.
    pub need_target: bool,
    /// Drop columns the model does not know instead of refusing them.
    pub ignore_extra: bool,
    /// A column to carry through to the output (`--id`).
    pub id: Option<&'a str>,
}

/// Parses `--delimiter`: one character, or `tab` / `\t`.
pub fn parse_delimiter(text: &str) -> std::result::Result<u8, String> {
    match text {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        t if t.len() == 1 && t.is_ascii() => Ok(t.as_bytes()[0]),
        t => Err(format!("`{t}` is not a one-character delimiter (use `,`, `;`, `tab`, ...)")),
    }
}

/// The separator of the first line: whichever of `,`, `;` and tab occurs most outside quotes
/// (a comma on ties, and for a one-column file).
fn detect_delimiter(text: &str) -> u8 {
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for byte in first.bytes() {
        if byte == b'"' {
            quoted = !quoted;
        } else if !quoted && let Some(c) = counts.iter_mut().find(|(d, _)| *d == byte) {
            c.1 += 1;
        }
    }
    counts.iter().fold((b',', 0), |best, c| if c.1 > best.1 { *c } else { best }).0
}

fn parse_number(cell: &str) -> Option<f64> {
    cell.parse::<f64>().ok()
}

impl RawTable {
    /// Reads a CSV file's cells. Refuses a headerless-looking file (first row all numbers)
    /// unless `options.no_header`, ragged rows, duplicate or empty header names, and a file
    /// without data rows.
    pub fn read(path: &Path, options: CsvOptions) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&path.display().to_string(), &text, options)
    }

    /// [`RawTable::read`] of a file's text; `display` names the file in errors.
    pub fn parse(display: &str, text: &str, options: CsvOptions) -> Result<Self> {
        let display = display.to_string();
        let bad = |detail: String| Error::Data { path: display.clone(), detail };
        // Spreadsheets often save UTF-8 with a byte-order mark, which would end up in the first name.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let delimiter = options.delimiter.unwrap_or_else(|| detect_delimiter(text));
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut records = Vec::new();
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            let line = record.position().map_or(0, csv::Position::line);
            // Blank lines carry no row (the csv crate already skips empty ones).
            if record.iter().all(str::is_empty) {
                continue;
            }
            records.push(record.iter().map(str::to_string).collect::<Vec<_>>());
            lines.push(line);
        }
        if records.is_empty() {
            return Err(bad("empty file".into()));
        }
        let header = if options.no_header {
            None
        } else {
            let first = records.remove(0);
            lines.remove(0);
            if first.iter().all(|c| parse_number(c).is_some()) {
                return Err(bad(format!(
                    "the first row ({}) is all numbers, so the file has no header row; fheml matches columns \
                     by their header names: add a header row, or pass --no-header to take the columns in the \
                     model's order",
                    first.join(",")
                )));
            }
            if let Some(empty) = first.iter().position(String::is_empty) {
                return Err(bad(format!("header column {} has no name", empty + 1)));
            }
            let mut seen = HashMap::new();
            for name in &first {
                if seen.insert(name.as_str(), ()).is_some() {
                    return Err(bad(format!("the header names column `{name}` twice")));
                }
            }
            Some(first)
        };
        if records.is_empty() {
            return Err(bad("no data rows".into()));
        }
        let width = header.as_ref().map_or_else(|| records[0].len(), Vec::len);
        for (record, line) in records.iter().zip(&lines) {
            if record.len() != width {
                let what = if header.is_some() { "the header has" } else { "the first row has" };
                return Err(bad(format!("line {line} has {} fields, {what} {width}", record.len())));
            }
        }
        Ok(RawTable { path: display, header, rows: records, lines })
    }

    fn bad(&self, detail: String) -> Error {
        Error::Data { path: self.path.clone(), detail }
    }

    /// Data rows.
    pub fn n_rows(&self) -> usize {
        self.rows.len()
    }

    /// The header names, or a note that there is none.
    fn header_text(&self) -> String {
        self.header.as_ref().map_or("no header".into(), |h| h.join(", "))
    }

    /// A numeric cell, or an error naming the line and column.
    fn number(&self, row: usize, column: usize, name: &str) -> Result<f64> {
        let cell = &self.rows[row][column];
        let line = self.lines[row];
        let value = parse_number(cell).ok_or_else(|| {
            if cell.is_empty() {
                self.bad(format!("line {line}, column `{name}`: empty cell (missing value); clean the data first"))
            } else {
                self.bad(format!(
                    "line {line}, column `{name}`: `{cell}` is not a number (a categorical column? train with \
                     --categorical {name})"
                ))
            }
        })?;
        if !value.is_finite() {
            return Err(self.bad(format!("line {line}, column `{name}`: {cell} is not finite; clean the data first")));
        }
        Ok(value)
    }

    fn column(&self, c: usize) -> impl Iterator<Item = &str> {
        self.rows.iter().map(move |r| r[c].as_str())
    }

    /// Builds the training (or calibration) table: every column but the target is an input
    /// column; `categorical` columns are one-hot encoded over their sorted distinct values.
    /// A text target becomes class indices over its sorted distinct labels.
    pub fn training_table(&self, target: Target, categorical: &[String]) -> Result<Table> {
        let header = self.header.as_ref().ok_or_else(|| {
            self.bad("training and calibration need a header row naming the columns (e.g. f0,f1,...,target)".into())
        })?;
        let index = |name: &str| header.iter().position(|h| h == name);
        let target_index = match target {
            Target::None => None,
            Target::Named(name) => Some(index(name).ok_or_else(|| {
                let headerless = header.iter().any(|h| parse_number(h).is_some());
                self.bad(format!(
                    "no target column `{name}` (columns: {}); name the target with --target NAME, or pass \
                     --no-target if the file has none{}",
                    header.join(", "),
                    if headerless {
                        "; the first row holds numbers: training needs a header row naming the columns"
                    } else {
                        ""
                    }
                ))
            })?),
        };
        for name in categorical {
            match index(name) {
                None => return Err(self.bad(format!("--categorical names `{name}`, which is not a column"))),
                Some(i) if Some(i) == target_index => {
                    return Err(self.bad(format!("--categorical names the target column `{name}`")));
                }
                Some(_) => {}
            }
        }
        let mut columns = Vec::new();
        let mut feature_names = Vec::new();
        let mut features: Vec<Vec<f64>> = Vec::new();
        for (c, name) in header.iter().enumerate() {
            if Some(c) == target_index {
                continue;
            }
            if categorical.contains(name) {
                let mut categories: Vec<String> = self.column(c).map(str::to_string).collect();
                categories.sort();
                categories.dedup();
                for category in &categories {
                    feature_names.push(format!("{name}={category}"));
                    features.push(self.column(c).map(|v| f64::from(u8::from(v == category))).collect());
                }
                columns.push(InputColumn { name: name.clone(), categories: Some(categories) });
            } else {
                feature_names.push(name.clone());
                features.push((0..self.n_rows()).map(|r| self.number(r, c, name)).collect::<Result<_>>()?);
                columns.push(InputColumn { name: name.clone(), categories: None });
            }
        }
        if features.is_empty() {
            return Err(self.bad("no feature column besides the target".into()));
        }
        let (y, labels) = match target_index {
            None => (None, None),
            Some(t) => {
                let cells: Vec<&str> = self.column(t).collect();
                let numbers: Option<Vec<f64>> = cells.iter().map(|c| parse_number(c)).collect();
                match numbers {
                    Some(values) => {
                        for r in 0..self.n_rows() {
                            self.number(r, t, &header[t])?;
                        }
                        (Some(Array1::from(values)), None)
                    }
                    None => {
                        let mut labels: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
                        labels.sort();
                        labels.dedup();
                        if let Some(r) = cells.iter().position(|c| c.is_empty()) {
                            return Err(
                                self.bad(format!("line {}, target column `{}`: empty label", self.lines[r], header[t]))
                            );
                        }
                        let y = cells.iter().map(|c| labels.iter().position(|l| l == c).unwrap_or(0) as f64);
                        (Some(y.collect()), Some(labels))
                    }
                }
            }
        };
        let x = Array2::from_shape_fn((self.n_rows(), features.len()), |(r, c)| features[c][r]);
        let schema = DataSchema { columns, target: target_index.map(|t| header[t].clone()), labels };
        Ok(Table { feature_names, x, y, schema })
    }
}

impl DataSchema {
    /// A schema of numeric columns only (models saved before schemas were recorded).
    pub fn numeric(feature_names: &[String]) -> Self {
        DataSchema {
            columns: feature_names.iter().map(|n| InputColumn { name: n.clone(), categories: None }).collect(),
            target: None,
            labels: None,
        }
    }

    /// The input column names, in model order.
    pub fn column_names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// Features after one-hot expansion.
    pub fn n_features(&self) -> usize {
        self.columns.iter().map(|c| c.categories.as_ref().map_or(1, Vec::len)).sum()
    }

    /// The text of a predicted value: its original label for text labels, else the number.
    pub fn label(&self, value: f64) -> String {
        match &self.labels {
            Some(labels) if value >= 0.0 && value.fract() == 0.0 && (value as usize) < labels.len() => {
                labels[value as usize].clone()
            }
            _ => value.to_string(),
        }
    }

    /// The class names in class order (for probability columns), given the model's classes.
    pub fn class_names(&self, classes: &[f64]) -> Vec<String> {
        classes.iter().map(|c| self.label(*c)).collect()
    }

    /// Encodes target cells as the model's values: label indices for text labels, numbers
    /// otherwise. An unseen label is refused by name.
    pub fn encode_target(&self, cells: &[String], path: &str) -> Result<Array1<f64>> {
        let bad = |detail: String| Error::Data { path: path.to_string(), detail };
        cells
            .iter()
            .map(|cell| match &self.labels {
                Some(labels) => labels.iter().position(|l| l == cell).map(|i| i as f64).ok_or_else(|| {
                    bad(format!("label `{cell}` is not one the model was trained on ({})", labels.join(", ")))
                }),
                None => parse_number(cell)
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| bad(format!("target `{cell}` is not a number"))),
            })
            .collect()
    }

    /// Matches a file's columns to this schema by header name (any order) and builds the
    /// model's features. Refuses missing columns by name, unknown ones unless
    /// `ignore_extra`, unknown categories by value.
    pub fn select(&self, raw: &RawTable, selection: Selection) -> Result<ScoringTable> {
        let names = self.column_names();
        let target_name = selection.target;
        if let Some(target) = target_name.filter(|t| names.contains(t)) {
            return Err(raw.bad(format!("--target names `{target}`, which is one of the model's input columns")));
        }
        // Where each model column, the target and the id sit in the file.
        let (positions, target_at, id_at) = match &raw.header {
            None => {
                if selection.id.is_some() {
                    return Err(raw.bad("--id needs a header row naming the column".into()));
                }
                let wanted = names.len() + usize::from(selection.need_target);
                let width = raw.rows[0].len();
                if width != wanted {
                    return Err(raw.bad(format!(
                        "--no-header: the file has {width} columns; the model takes {} ({}){}, in that order",
                        names.len(),
                        names.join(", "),
                        if selection.need_target { " then the target" } else { "" }
                    )));
                }
                let target_at = selection.need_target.then_some(names.len());
                ((0..names.len()).collect::<Vec<_>>(), target_at, None)
            }
            Some(header) => {
                let index = |name: &str| header.iter().position(|h| h == name);
                let missing: Vec<&str> = names.iter().copied().filter(|n| index(n).is_none()).collect();
                let target_at = target_name.and_then(index);
                let id_at = match selection.id {
                    Some(id) => Some(index(id).ok_or_else(|| {
                        raw.bad(format!("no column `{id}` for --id (columns: {})", header.join(", ")))
                    })?),
                    None => None,
                };
                let unknown: Vec<&str> = header
                    .iter()
                    .enumerate()
                    .filter(|(i, h)| !names.contains(&h.as_str()) && Some(*i) != target_at && Some(*i) != id_at)
                    .map(|(_, h)| h.as_str())
                    .collect();
                if !missing.is_empty() {
                    let quoted = |v: &[&str]| v.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ");
                    let mut detail = format!("missing column(s) {} that the model needs", quoted(&missing));
                    if !unknown.is_empty() {
                        detail +=
                            &format!("; the file has {} that the model does not know (renamed?)", quoted(&unknown));
                    }
                    if header.iter().any(|h| parse_number(h).is_some()) {
                        detail += "; the first row holds numbers: is it a headerless file (--no-header)?";
                    }
                    return Err(raw.bad(detail + &format!(" (model columns: {})", names.join(", "))));
                }
                if !unknown.is_empty() && !selection.ignore_extra {
                    let list: Vec<String> = unknown.iter().map(|n| format!("`{n}`")).collect();
                    return Err(raw.bad(format!(
                        "column(s) {} are not model features{}; pass --ignore-extra to drop them",
                        list.join(", "),
                        target_name.map_or(String::new(), |t| format!(" nor the target `{t}`"))
                    )));
                }
                let positions = names.iter().filter_map(|n| index(n)).collect();
                (positions, target_at, id_at)
            }
        };
        if selection.need_target && target_at.is_none() {
            let name = target_name.unwrap_or(DEFAULT_TARGET);
            return Err(raw.bad(format!(
                "no target column `{name}` (columns: {}); name it with --target NAME",
                raw.header_text()
            )));
        }
        let mut x = Array2::zeros((raw.n_rows(), self.n_features()));
        for r in 0..raw.n_rows() {
            let mut f = 0;
            for (column, &c) in self.columns.iter().zip(&positions) {
                match &column.categories {
                    None => {
                        x[[r, f]] = raw.number(r, c, &column.name)?;
                        f += 1;
                    }
                    Some(categories) => {
                        let cell = &raw.rows[r][c];
                        let hit = categories.iter().position(|k| k == cell).ok_or_else(|| {
                            raw.bad(format!(
                                "line {}, column `{}`: category `{cell}` was not seen in training ({})",
                                raw.lines[r],
                                column.name,
                                categories.join(", ")
                            ))
                        })?;
                        x[[r, f + hit]] = 1.0;
                        f += categories.len();
                    }
                }
            }
        }
        let cells = |at: Option<usize>| at.map(|c| raw.column(c).map(str::to_string).collect::<Vec<_>>());
        Ok(ScoringTable { x, target: cells(target_at), ids: cells(id_at) })
    }
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
            return Err(Error::Usage(format!("unknown dataset `{other}`; use breast_cancer, iris or diabetes")));
        }
    };
    let rows = target.len();
    let x = Array2::from_shape_vec((rows, features), data.into_iter().map(f64::from).collect())
        .map_err(|e| Error::Usage(e.to_string()))?;
    let y = Array1::from(target);
    let (train, test) = fheml_quant::data::split_every_fifth(rows);
    let names = if names.len() == features { names } else { (0..features).map(|i| format!("f{i}")).collect() };
    let schema = DataSchema { target: Some(DEFAULT_TARGET.into()), ..DataSchema::numeric(&names) };
    let pick = |rows: &[usize]| Table {
        schema: schema.clone(),
        feature_names: names.clone(),
        x: x.select(Axis(0), rows),
        y: Some(y.select(Axis(0), rows)),
    };
    Ok((pick(&train), pick(&test)))
}

/// Writes `name`'s embedded split as `{name}_train.csv` and `{name}_test.csv`, with a header
/// and the target in a column named `target`.
pub fn export_embedded(name: &str, dir: &Path) -> Result<()> {
    let (train, test) = embedded(name)?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    for (table, part) in [(train, "train"), (test, "test")] {
        let mut text = table.feature_names.iter().map(|n| n.replace(',', "_")).collect::<Vec<_>>().join(",")
            + ","
            + DEFAULT_TARGET
            + "\n";
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn raw(name: &str, text: &str, options: CsvOptions) -> Result<RawTable> {
        let path = std::env::temp_dir().join(format!("fheml-data-{name}-{}.csv", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let table = RawTable::read(&path, options);
        let _ = std::fs::remove_file(&path);
        table
    }

    #[test]
    fn delimiters_are_detected() {
        assert_eq!(detect_delimiter("a;b;c\n1;2;3"), b';');
        assert_eq!(detect_delimiter("a\tb\n"), b'\t');
        assert_eq!(detect_delimiter("\"x;y\",b\n"), b',');
        assert_eq!(detect_delimiter("single\n"), b',');
        let t = raw("semi", "a;b;target\n1,5;2;0\n", CsvOptions::default()).unwrap();
        assert_eq!(t.header.as_ref().unwrap().len(), 3);
        let bom = raw("bom", "\u{feff}a,target\r\n1,0\r\n", CsvOptions::default()).unwrap();
        assert_eq!(bom.header.unwrap(), ["a", "target"]);
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert!(parse_delimiter("ab").is_err());
    }

    #[test]
    fn columns_match_by_name_in_any_order() {
        let train = raw("train", "a,b,target\n1,2,x\n3,4,y\n", CsvOptions::default()).unwrap();
        let table = train.training_table(Target::Named("target"), &[]).unwrap();
        let schema = table.schema.clone();
        assert_eq!(schema.labels, Some(vec!["x".to_string(), "y".to_string()]));
        assert_eq!(table.y.unwrap().to_vec(), vec![0.0, 1.0]);
        let shuffled = raw("shuffled", "target,b,a\nx,2,1\ny,4,3\n", CsvOptions::default()).unwrap();
        let select = Selection { target: Some("target"), need_target: true, ignore_extra: false, id: None };
        let scored = schema.select(&shuffled, select).unwrap();
        assert_eq!(scored.x, table.x);
        let renamed = raw("renamed", "a,bb\n1,2\n", CsvOptions::default()).unwrap();
        let err = schema.select(&renamed, Selection { need_target: false, ..select }).unwrap_err().to_string();
        assert!(err.contains("`b`") && err.contains("`bb`"), "{err}");
    }

    #[test]
    fn categorical_columns_are_one_hot() {
        let train = raw("cat", "colour,n,target\nred,1,0\nblue,2,1\n", CsvOptions::default()).unwrap();
        let table = train.training_table(Target::Named("target"), &["colour".into()]).unwrap();
        let schema = table.schema.clone();
        assert_eq!(table.feature_names, ["colour=blue", "colour=red", "n"]);
        assert_eq!(table.x.row(0).to_vec(), vec![0.0, 1.0, 1.0]);
        let unseen = raw("unseen", "colour,n\ngreen,1\n", CsvOptions::default()).unwrap();
        let select = Selection { target: None, need_target: false, ignore_extra: false, id: None };
        assert!(schema.select(&unseen, select).unwrap_err().to_string().contains("`green`"));
    }

    #[test]
    fn headerless_files_are_refused_unless_declared() {
        let err = raw("headerless", "1,2,0\n3,4,1\n", CsvOptions::default()).unwrap_err().to_string();
        assert!(err.contains("no header"), "{err}");
        let t = raw("declared", "1,2\n3,4\n", CsvOptions { no_header: true, delimiter: None }).unwrap();
        assert_eq!(t.n_rows(), 2);
    }
}
