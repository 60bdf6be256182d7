#![allow(clippy::unwrap_used)]
//! Prints the noise model of every candidate parameter set and runs one small lookup circuit.
use fheml_circuits::{CircuitBuilder, Interval, Lut, Table};
use fheml_fhe_runtime::{CompiledCircuit, FheConfig, ParameterSetId};
use ndarray::array;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for id in ParameterSetId::all() {
        let set = id.set();
        let n = set.noise_model();
        println!(
            "{:55} pbs_out 2^{:.1}  fresh 2^{:.1}  ks+ms 2^{:.1} (std log2)",
            set.name,
            n.bootstrap_output.log2() / 2.0,
            n.fresh.log2() / 2.0,
            n.keyswitch_and_modulus_switch.log2() / 2.0
        );
    }
    let mut b = CircuitBuilder::new();
    let x = b.input(&[4], Interval::new(0, 7).unwrap());
    let sq = b.lookup(x, Lut::Single(Table::from_fn(0, 3, |v| v * v - 10)))?;
    let y = b.matmul(sq, array![[1, 2], [-1, 0], [3, 1], [1, -2]])?;
    b.output(y)?;
    b.output(sq)?;
    let compiled = CompiledCircuit::compile(b.build()?, &FheConfig::default())?;
    println!("{}", compiled.report());
    let client = compiled.client_spec();
    let t = std::time::Instant::now();
    let (ck, ek) = client.keygen();
    println!("keygen {:?}", t.elapsed());
    let inputs = vec![vec![vec![1, 2, 3, 7]], vec![vec![0, 5, 6, 4]]];
    let q = client.encrypt(&ck, &inputs)?;
    let t = std::time::Instant::now();
    let a = compiled.run(&ek, &q)?;
    println!("run {:?}", t.elapsed());
    let got = client.decrypt(&ck, &a)?;
    for (s, g) in inputs.iter().zip(&got) {
        println!("clear {:?} fhe {:?}", compiled.circuit().evaluate_clear(s)?, g);
    }
    Ok(())
}
