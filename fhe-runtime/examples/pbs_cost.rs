//! Checks the optimizer's cost model against measured lookups: for a few vetted and generated
//! sets, the median single-thread time of one keyswitch + bootstrap next to the model's
//! estimate. Run with `cargo run --release -p fheml-fhe-runtime --example pbs_cost`.

use std::time::Instant;

use fheml_fhe_runtime::{GeneratedParameters, ParameterSetId, Parameters};
use tfhe::shortint::{ClientKey, ServerKey};

fn measure(parameters: Parameters) -> Result<(), Box<dyn std::error::Error>> {
    let set = parameters.set();
    let client = ClientKey::new(set.params);
    let server = ServerKey::new(&client);
    let ct = client.encrypt(1);
    let lut = server.generate_lookup_table(|x| x);
    let mut times: Vec<f64> = (0..15)
        .map(|_| {
            let start = Instant::now();
            let _ = std::hint::black_box(server.apply_lookup_table(&ct, &lut));
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    let measured = times[times.len() / 2];
    println!(
        "{:<58} model {:6.1} ms  measured {:6.1} ms  ratio {:.2}  key {:5.1} MB",
        set.name,
        1e3 * set.bootstrap_seconds(),
        1e3 * measured,
        measured / set.bootstrap_seconds(),
        set.compressed_key_bytes() as f64 / 1e6
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let generated = |n, k, big_n, pbs: (usize, usize), ks: (usize, usize), gaussian| {
        Parameters::Generated(GeneratedParameters {
            lwe_dimension: n,
            glwe_dimension: k,
            polynomial_size: big_n,
            pbs_level: pbs.0,
            pbs_base_log: pbs.1,
            ks_level: ks.0,
            ks_base_log: ks.1,
            gaussian,
        })
    };
    for p in [
        Parameters::Vetted(ParameterSetId::M1C1P40),
        Parameters::Vetted(ParameterSetId::M2C2P40),
        Parameters::Vetted(ParameterSetId::G2C2P128),
        generated(704, 4, 512, (1, 23), (4, 3), true),
        generated(796, 1, 2048, (1, 23), (5, 3), true),
        generated(844, 2, 1024, (1, 23), (5, 3), true),
        generated(844, 2, 1024, (2, 16), (5, 3), true),
        generated(812, 2, 1024, (3, 12), (8, 2), true),
    ] {
        measure(p)?;
    }
    Ok(())
}
