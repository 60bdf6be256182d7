//! `inspect`: every figure of a model, as aligned text or one JSON object.

use crate::*;

/// `inspect`: every figure of a model, as aligned text or one JSON object.
pub fn inspect(saved: &SavedModel, json: bool) -> Result<()> {
    let circuit = saved.fhe.compiled().circuit();
    let cost = circuit.cost();
    let report = saved.fhe.compiled().report();
    let schema = &saved.schema;
    let columns: Vec<String> = schema
        .columns
        .iter()
        .map(|c| match &c.categories {
            // Quoted: header names often hold spaces and commas (`sepal length (cm)`).
            Some(k) => format!("`{}` (one-hot: {})", c.name, k.join("|")),
            None => format!("`{}`", c.name),
        })
        .collect();
    let classes = match &saved.fhe.model().task {
        fheml_circuits::Task::Classification { classes } => Some(schema.class_names(classes)),
        fheml_circuits::Task::Regression => None,
    };
    let network = match saved.float.as_any().downcast_ref::<fheml_models_nn::NnModel>() {
        Some(m) => describe_network(m, saved),
        None => Vec::new(),
    };
    if json {
        let object = serde_json::json!({
            "model": saved.name,
            "features": saved.feature_names.len(),
            "feature_names": saved.feature_names,
            "columns": schema.columns,
            "target": schema.target,
            "classes": classes,
            "n_bits": { "min": input_bits(saved).0, "max": input_bits(saved).1 },
            "circuit_nodes": circuit.nodes().len(),
            "max_value_bits": cost.max_value_bits.0,
            "network": network.iter().map(|(k, v)| ((*k).to_string(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
            "fingerprint": saved.fhe.compiled().fingerprint().to_string(),
            "p_error_log2": report.p_error.log2(),
            "compressed_key_bytes": report.compressed_key_bytes,
            "expanded_key_bytes": report.evaluation_key_bytes,
            "expected_deviations": saved.fhe.expected_deviations(),
            "report": report,
        });
        say!("{object}");
        return Ok(());
    }
    say!("model             {} ({} features)", saved.name, saved.feature_names.len());
    say!("columns           {} (matched by header name)", columns.join(", "));
    say!("target            {}", schema.target.as_deref().unwrap_or("none recorded (commands default to `target`)"));
    if let Some(classes) = &classes {
        say!("classes           {}", classes.join(", "));
    }
    say!("input bits        {} (n_bits)", bits_text(input_bits(saved)));
    say!("circuit           {} nodes, values up to {}", circuit.nodes().len(), cost.max_value_bits);
    for (label, text) in &network {
        say!("{label:<17} {text}");
    }
    say!("fingerprint       {}", saved.fhe.compiled().fingerprint());
    say!("p_error           {} per lookup", format_probability(report.p_error));
    // The runtime's report says "compressed" and "expanded"; say where each one lives.
    for line in report.to_string().lines() {
        if line.starts_with("evaluation key") {
            say!(
                "evaluation key    {:.1} MiB compressed (the file keygen writes, uploaded and stored on disk), \
                 {:.1} MiB expanded in the server's memory",
                report.compressed_key_bytes as f64 / (1 << 20) as f64,
                report.evaluation_key_bytes as f64 / (1 << 20) as f64
            );
        } else {
            say!("{line}");
        }
    }
    if let Some(rate) = saved.fhe.expected_deviations() {
        let what = if saved.is_classifier() { "label flips" } else { "changed predictions" };
        say!(
            "vs Clear          {rate:.4} {what} per sample expected under encryption (simulated on the training rows)"
        );
    }
    Ok(())
}

/// `inspect`'s lines for a neural network: layers with their shapes, bit widths, and the
/// training hyperparameters of a trained MLP.
fn describe_network(m: &fheml_models_nn::NnModel, saved: &SavedModel) -> Vec<(&'static str, String)> {
    use fheml_models_nn::Layer;
    let network = m.network();
    let layers: Vec<String> = network
        .layers()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let name = match l {
                Layer::Activation(a) => a.name(),
                other => other.name(),
            };
            format!("{name}{:?}", network.shape_after(i))
        })
        .collect();
    let hidden: Vec<String> = network
        .layers()
        .iter()
        .enumerate()
        .filter(|(_, l)| matches!(l, Layer::Dense { .. } | Layer::Conv2d { .. }))
        .map(|(i, _)| network.shape_after(i).iter().product::<usize>().to_string())
        .collect();
    let q = m.settings();
    let mut lines = vec![
        ("network", layers.join(" > ")),
        (
            "layer sizes",
            format!(
                "{} inputs, hidden {}, {} outputs",
                network.n_inputs(),
                if hidden.len() > 1 { hidden[..hidden.len() - 1].join(",") } else { "none".to_string() },
                network.n_outputs()
            ),
        ),
        (
            "quantization",
            format!(
                "inputs {} bits, weights {} bits, activations {} bits, accumulators {} ({:?} rounding)",
                bits_text(input_bits(saved)),
                q.w_bits,
                q.a_bits,
                q.accumulator_bits.map_or("not rounded".to_string(), |b| format!("rounded to {b} bits")),
                q.rounding
            ),
        ),
    ];
    match m.params() {
        Some(p) => {
            let p = p.get();
            lines.push((
                "training",
                format!(
                    "quantization-aware, {} activations, {} epochs, learning rate {}, batch size {}, seed {}{}",
                    p.activation.name(),
                    p.epochs,
                    p.learning_rate,
                    p.batch_size,
                    p.seed,
                    p.max_fan_in.map_or(String::new(), |k| format!(", pruned to {k} inputs per hidden neuron"))
                ),
            ));
        }
        None => lines.push(("training", "imported, post-training quantization".to_string())),
    }
    lines
}
