//! A model file is validated on load: its circuit is replayed through the builder's checks,
//! its plan checked against the circuit, its fingerprint recomputed from the content. Each
//! test edits one thing of an honest file (through the public serde form, then resealed
//! with a correct checksum, as an attacker with the file would) and expects a one-line
//! refusal.

use fheml_circuits::{Circuit, CircuitBuilder, Interval, Lut, Table};
use fheml_fhe_runtime::{CompiledCircuit, FheConfig, Fingerprint, Kind, Plan, seal};
use ndarray::Array2;
use serde_json::{Value, json};

/// Input [3] in [0, 15] · W, then a lookup on a rounded first column, both outputs.
fn honest() -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[3], Interval::new(0, 15).unwrap());
    let y = b.matmul(x, Array2::from_shape_vec((3, 2), vec![3, -1, 2, 5, -4, 1]).unwrap()).unwrap();
    let r = b.round(y, 4, Default::default()).unwrap();
    let range = b.node_range(r);
    let t = b.lookup(r, Lut::Single(Table::from_fn(range.lo, 4, |v| v.clamp(-3, 3)))).unwrap();
    b.output(y).unwrap();
    b.output(t).unwrap();
    CompiledCircuit::compile(b.build().unwrap(), &FheConfig::default()).unwrap()
}

/// The model file of `circuit` and `plan` with `fingerprint` in its header and content.
fn file(circuit: &Circuit, plan: &Plan, fingerprint: Fingerprint) -> Vec<u8> {
    seal(Kind::Model, &fingerprint, &(circuit, plan, fingerprint)).unwrap()
}

/// The honest file with its circuit edited by `edit` (on the circuit's JSON form).
fn with_circuit_edit(compiled: &CompiledCircuit, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut value = serde_json::to_value(compiled.circuit()).unwrap();
    edit(&mut value);
    let circuit: Circuit = serde_json::from_value(value).unwrap();
    file(&circuit, compiled.plan(), compiled.fingerprint())
}

fn refused(bytes: &[u8], expect: &str) {
    let err = CompiledCircuit::from_bytes(bytes).unwrap_err().to_string();
    assert!(!err.contains('\n') && err.len() < 400, "not one line: {err}");
    assert!(err.contains(expect), "expected `{expect}` in: {err}");
}

#[test]
fn honest_files_load_and_are_equal() {
    let compiled = honest();
    let bytes = compiled.to_bytes().unwrap();
    assert_eq!(CompiledCircuit::from_bytes(&bytes).unwrap(), compiled);
    // Resealing the honest parts gives a file that loads: the edits below are the only change.
    let resealed = file(compiled.circuit(), compiled.plan(), compiled.fingerprint());
    assert_eq!(resealed, bytes);
}

#[test]
fn a_node_reading_a_later_node_is_refused() {
    let compiled = honest();
    // Node 1 (the matmul) reads node 2 (the rounding after it).
    let bytes = with_circuit_edit(&compiled, |c| c["nodes"][1]["op"]["MatMul"][0] = json!(2));
    refused(&bytes, "does not exist");
}

#[test]
fn a_table_of_the_wrong_size_is_refused() {
    let compiled = honest();
    let bytes = with_circuit_edit(&compiled, |c| {
        let values = c["nodes"][3]["op"]["Lookup"][1]["Single"]["values"].as_array_mut().unwrap();
        values.pop();
    });
    refused(&bytes, "table lookup is malformed");
}

#[test]
fn an_out_of_range_weight_is_refused() {
    let compiled = honest();
    let bytes = with_circuit_edit(&compiled, |c| c["nodes"][1]["op"]["MatMul"][1]["data"][0] = json!(i64::MAX / 4));
    refused(&bytes, "may overflow i64");
}

#[test]
fn a_stored_range_that_the_operands_do_not_give_is_refused() {
    let compiled = honest();
    let bytes = with_circuit_edit(&compiled, |c| c["nodes"][1]["ranges"][0]["hi"] = json!(1000));
    refused(&bytes, "does not match what its operands give");
}

#[test]
fn a_changed_weight_under_the_old_fingerprint_is_refused() {
    let compiled = honest();
    // A weight whose ranges and scales stay those of the honest file: only the fingerprint,
    // recomputed from the content, tells the two apart.
    let bytes = with_circuit_edit(&compiled, |c| {
        assert_eq!(c["nodes"][1]["op"]["MatMul"][1]["data"][0], json!(3));
        c["nodes"][1]["op"]["MatMul"][1]["data"][0] = json!(2);
        c["nodes"][1]["op"]["MatMul"][1]["data"][2] = json!(3);
    });
    refused(&bytes, "fingerprint does not match the content");
}

#[test]
fn an_edited_plan_is_refused() {
    let compiled = honest();
    let edit_plan = |edit: &dyn Fn(&mut Value)| {
        let mut value = serde_json::to_value(compiled.plan()).unwrap();
        edit(&mut value);
        let plan: Plan = serde_json::from_value(value).unwrap();
        file(compiled.circuit(), &plan, compiled.fingerprint())
    };
    // A coarser scale on the matmul: its sum would wrap.
    refused(
        &edit_plan(&|p| {
            let d = p["deltas"][1][0].as_u64().unwrap();
            p["deltas"][1][0] = json!(d + 1);
        }),
        "scales are not the ones",
    );
    // One scale too few.
    refused(&edit_plan(&|p| drop(p["deltas"][1].as_array_mut().unwrap().pop())), "one entry per element");
    // A failure probability the scales do not meet.
    refused(&edit_plan(&|p| p["report"]["p_error"] = json!(1e-300)), "above the");
    // A report that hides the lookups (the server would accept no key).
    refused(&edit_plan(&|p| p["report"]["needs_evaluation_key"] = json!(false)), "report does not match");
}

/// Every kind of honest plan passes the checks: fused reads, small-key inputs, sanitized and
/// real-valued outputs, vetted and generated sets, and random circuits.
#[test]
fn honest_plans_of_every_kind_load() {
    use fheml_circuits::testing::{RandomCircuitConfig, random_circuit};
    use fheml_fhe_runtime::ParameterMode;

    let mut circuits = Vec::new();
    // Three tables on one input (many-LUT), an input under the small key, a real output.
    let mut b = CircuitBuilder::new();
    let x = b.input(&[4], Interval::new(-2, 1).unwrap());
    let w = b.input(&[2], Interval::new(0, 3).unwrap());
    for f in [|v: i64| v.max(0), i64::signum, |v: i64| v * v] {
        let y = b.lookup(x, Lut::Single(Table::from_fn(-2, 2, f))).unwrap();
        b.output(y).unwrap();
    }
    let s = b.matmul(w, ndarray::array![[1], [2]]).unwrap();
    let t = b.lookup(s, Lut::Single(Table::from_fn(0, 4, |v| 3 * v))).unwrap();
    let real = b.mul_const(t, ndarray::arr1(&[1000]).into_dyn()).unwrap();
    b.output_real(real, 100).unwrap();
    circuits.push(b.build().unwrap());
    circuits.push(honest().circuit().clone());
    let config = RandomCircuitConfig { max_ops: 5, max_weight: 2, max_lookup_bits: 4, lookups: true };
    circuits.extend((0..12u64).map(|seed| random_circuit(seed, config).0));
    let configs = [
        FheConfig::default(),
        FheConfig::params().parameter_mode(ParameterMode::Vetted).check().unwrap(),
        FheConfig::params().sanitize(true).check().unwrap(),
        FheConfig::params().many_lut(false).exact_outputs(true).check().unwrap(),
    ];
    let mut loaded = 0;
    for circuit in &circuits {
        for config in &configs {
            let Ok(compiled) = CompiledCircuit::compile(circuit.clone(), config) else { continue };
            match CompiledCircuit::from_bytes(&compiled.to_bytes().unwrap()) {
                Ok(back) => assert_eq!(back, compiled),
                Err(e) => panic!("an honest plan is refused ({config:?}): {e}"),
            }
            loaded += 1;
        }
    }
    assert!(loaded >= circuits.len() * 2, "{loaded} honest plans compiled");
}
