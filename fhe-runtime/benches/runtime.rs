#![allow(missing_docs, clippy::expect_used, clippy::unwrap_used)]
//! Runtime micro-benchmarks: one bootstrap per precision, the leveled dot product, key
//! generation, a circuit of a few hundred lookups against `lookups × bootstrap / threads`,
//! and many-LUT (1, 2, 4 tables on one input in one bootstrap).
//!
//! Precisions 7 and 8 need the large parameter sets (minutes of key generation); set
//! `FHEML_BENCH_WIDE=1` to include them.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use fheml_fhe_runtime::{CompiledCircuit, FheConfig};
use ndarray::Array2;

fn lookup_circuit(bits: u32, count: usize) -> CompiledCircuit {
    let mut b = CircuitBuilder::new();
    let x = b.input(&[count], Interval::new(0, (1 << bits) - 1).expect("range"));
    let y = b.lookup(x, Lut::Single(Table::from_fn(0, bits, |v| (v * 3) % (1 << bits)))).expect("lookup");
    b.output(y).expect("output");
    CompiledCircuit::compile(b.build().expect("circuit"), &FheConfig::default()).expect("compile")
}

fn bootstraps(c: &mut Criterion) {
    let wide = std::env::var("FHEML_BENCH_WIDE").is_ok_and(|v| v == "1");
    let max_bits = if wide { 8 } else { 6 };
    let mut group = c.benchmark_group("bootstrap");
    group.sample_size(10);
    for bits in 2..=max_bits {
        let compiled = lookup_circuit(bits, 1);
        let client = compiled.client_spec();
        let (ck, ek) = client.keygen();
        let query = client.encrypt(&ck, &[vec![vec![1]]]).expect("encrypt");
        let name = format!("{bits}_bits/{}", compiled.report().parameter_set);
        // Evaluation of one lookup on one sample: one keyswitch + bootstrap.
        group.bench_function(name, |b| b.iter(|| compiled.run(&ek, black_box(&query)).expect("run")));
    }
    // tfhe-rs's own shortint bootstrap on the 2+2-bit 2^-40 set, as the reference.
    let params = fheml_fhe_runtime::ParameterSetId::M2C2P40.set().params;
    let client = tfhe::shortint::ClientKey::new(params);
    let server = tfhe::shortint::ServerKey::new(&client);
    let ct = client.encrypt(3);
    let lut = server.generate_lookup_table(|x| (x * 3) % 16);
    group.bench_function("shortint_reference/V1_6_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M40", |b| {
        b.iter(|| server.apply_lookup_table(black_box(&ct), &lut))
    });
    group.finish();
}

fn leveled_dot_product(c: &mut Criterion) {
    let weights = Array2::from_shape_fn((30, 1), |(i, _)| ((i as i64 * 37) % 255) - 127);
    let mut b = CircuitBuilder::new();
    let x = b.input(&[30], Interval::new(0, 255).expect("range"));
    let y = b.matmul(x, weights).expect("matmul");
    b.output(y).expect("output");
    let compiled = CompiledCircuit::compile(b.build().expect("circuit"), &FheConfig::default()).expect("compile");
    let client = compiled.client_spec();
    let (ck, ek) = client.keygen();
    let sample = vec![vec![(0..30).map(|i| (i * 7) % 256).collect::<Vec<i64>>()]];
    let query = client.encrypt(&ck, &sample).expect("encrypt");
    let mut group = c.benchmark_group("leveled_dot_30x8bit");
    group.bench_function("server_evaluate", |b| b.iter(|| compiled.run(&ek, black_box(&query)).expect("run")));
    group.bench_function("encrypt", |b| b.iter(|| client.encrypt(&ck, black_box(&sample)).expect("encrypt")));
    let answer = compiled.run(&ek, &query).expect("run");
    group.bench_function("decrypt", |b| b.iter(|| client.decrypt(&ck, black_box(&answer)).expect("decrypt")));
    group.finish();
}

fn keygen(c: &mut Criterion) {
    let compiled = lookup_circuit(4, 1);
    let client = compiled.client_spec();
    let mut group = c.benchmark_group("keygen");
    group.sample_size(10);
    group.bench_function(compiled.report().parameter_set.clone(), |b| b.iter(|| black_box(client.keygen())));
    group.finish();
}

fn many_lookups(c: &mut Criterion) {
    let compiled = lookup_circuit(3, 256);
    let client = compiled.client_spec();
    let (ck, ek) = client.keygen();
    let query = client.encrypt(&ck, &[vec![(0..256).map(|i| i % 8).collect()]]).expect("encrypt");
    let mut group = c.benchmark_group("lookups_256");
    group.sample_size(10);
    group.bench_function("execute", |b| b.iter(|| compiled.run(&ek, black_box(&query)).expect("run")));
    group.finish();
}

/// `k` different tables on one 2-bit input: one many-LUT bootstrap whatever `k` (on the
/// 2+2-bit 2^-40 set for all, so that the times compare), and `k = 4` without many-LUT.
fn many_lut(c: &mut Criterion) {
    let tables = |k: usize| -> Vec<Table> {
        (0..k as i64).map(|j| Table::from_fn(0, 2, move |v| (v * (j + 1) + j) % 4)).collect()
    };
    let compile = |k: usize, fuse: bool| {
        let mut b = CircuitBuilder::new();
        let x = b.input(&[1], Interval::new(0, 3).expect("range"));
        for t in tables(k) {
            let y = b.lookup(x, Lut::Single(t)).expect("lookup");
            b.output(y).expect("output");
        }
        let config = FheConfig::params()
            .candidates(&[fheml_fhe_runtime::ParameterSetId::M2C2P40])
            .many_lut(fuse)
            .check()
            .expect("config");
        CompiledCircuit::compile(b.build().expect("circuit"), &config).expect("compile")
    };
    let mut group = c.benchmark_group("many_lut_2bit");
    group.sample_size(10);
    for (k, fuse) in [(1, true), (2, true), (4, true), (4, false)] {
        let compiled = compile(k, fuse);
        assert_eq!(compiled.report().bootstraps, if fuse { 1 } else { k });
        let client = compiled.client_spec();
        let (ck, ek) = client.keygen();
        let query = client.encrypt(&ck, &[vec![vec![2]]]).expect("encrypt");
        let name = format!("{}{k}_tables/{}", if fuse { "" } else { "unfused_" }, compiled.report().parameter_set);
        group.bench_function(name, |b| b.iter(|| compiled.run(&ek, black_box(&query)).expect("run")));
    }
    group.finish();
}

criterion_group!(benches, leveled_dot_product, bootstraps, keygen, many_lookups, many_lut);
criterion_main!(benches);
