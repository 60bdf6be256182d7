//! Measures one keyswitch + bootstrap over a grid of generated parameter shapes (LWE
//! dimension, GLWE dimension, polynomial size, PBS and keyswitch levels) and prints each
//! point's thread CPU time next to the cost model, as CSV, for refitting
//! `generated::lookup_cost` on a new machine. Thread CPU time (not wall time) so that other
//! work on the machine does not skew the fit. Run with
//! `cargo run --release -p fheml-fhe-runtime --example pbs_fit > fit.csv`.

use fheml_fhe_runtime::{GeneratedParameters, Parameters};
use tfhe::shortint::{ClientKey, ServerKey};

/// CPU time consumed by the calling thread, in seconds (std has no thread clock).
#[allow(unsafe_code)]
fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec and the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repeats: usize = std::env::var("PBS_FIT_REPEATS").ok().and_then(|r| r.parse().ok()).unwrap_or(7);
    println!("n,k,N,pbs_level,ks_level,model_ms,measured_ms");
    let shapes: &[(usize, usize, usize)] = &[
        (700, 1, 1024),
        (700, 1, 2048),
        (700, 2, 512),
        (700, 2, 1024),
        (700, 3, 512),
        (700, 4, 512),
        (700, 1, 4096),
        (700, 2, 2048),
        (900, 1, 2048),
        (900, 2, 1024),
        (900, 4, 512),
        (560, 2, 1024),
    ];
    for &(n, k, big_n) in shapes {
        for (pbs_level, ks_level) in [(1, 3), (2, 3), (3, 5), (1, 8)] {
            let generated = GeneratedParameters {
                lwe_dimension: n,
                glwe_dimension: k,
                polynomial_size: big_n,
                pbs_level,
                pbs_base_log: 40 / (pbs_level + 1),
                ks_level,
                ks_base_log: 24 / ks_level,
                gaussian: true,
            };
            let parameters = Parameters::Generated(generated);
            let set = parameters.set();
            let client = ClientKey::new(set.params);
            let server = ServerKey::new(&client);
            let ct = client.encrypt(1);
            let lut = server.generate_lookup_table(|x| x);
            let _ = server.apply_lookup_table(&ct, &lut);
            let mut times: Vec<f64> = (0..repeats)
                .map(|_| {
                    let start = thread_cpu_seconds();
                    let _ = std::hint::black_box(server.apply_lookup_table(&ct, &lut));
                    thread_cpu_seconds() - start
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "{n},{k},{big_n},{pbs_level},{ks_level},{:.3},{:.3}",
                1e3 * set.bootstrap_seconds(),
                1e3 * times[times.len() / 2]
            );
        }
    }
    Ok(())
}
