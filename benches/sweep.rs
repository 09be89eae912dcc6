//! `cmargin sweep` throughput (SPEC.md §10.4), measured in one run: the whole comparison per
//! input and its halves on the same inputs, so the report can say what bounds a full sweep.
//!
//! - `impl`: the host kernel math alone (`HostKernel::eval_chunk`);
//! - `reference`: what the sweep evaluates per input on the reference side,
//!   `margin::eval_with` and `tolerance::target_budget_pre`;
//! - `sweep`: `sweep::run` end to end (both halves, the ulp measure, the aggregation), on all
//!   threads and on one.
//!
//! Inputs: a strided f32 sweep (every 4099th float of [−1, 1], the whole band, every kink's
//! ±64 floats; ≈ 0.52 M inputs) at (1, 0.5, 0), for `arcface-thmm` and `caffe-gpu` (or the
//! presets given with `--profile a,b`). Not a criterion bench: it times `--reps` runs of each
//! part, interleaved (so the load of a shared machine falls on all of them alike), and prints
//! medians, inputs per second, their ratios, and the full f32 sweep (2,130,708,482 inputs)
//! extrapolated from the end-to-end rate. `cargo bench --bench sweep -- --reps 5`.
//!
//! With CMARGIN_SWEEP_FULL=1 it then runs the complete sweep of the first profile once and
//! prints its report and wall time (minutes on this machine).

use combined_margin::margin::{self, Constants};
use combined_margin::sweep::impls::{HostKernel, SweepImpl};
use combined_margin::sweep::{self, report, Options, Spec};
use combined_margin::tolerance::{target_budget_pre, BudgetPre};
use combined_margin::{Dtype, Params, Profile};
use rayon::prelude::*;
use std::hint::black_box;
use std::time::Instant;

/// Inputs of a complete f32 sweep: every float in [−1, 1] (both zeros) and the 1024-float band
/// on each side.
const FULL_F32: f64 = 2_130_708_482.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn time(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let reps: usize = opt("--reps").and_then(|v| v.parse().ok()).unwrap_or(5);
    let profiles = opt("--profile").unwrap_or_else(|| "arcface-thmm,caffe-gpu".into());
    let p = Params::new(1.0, 0.5, 0.0);
    let threads = rayon::current_num_threads();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let chunk = 1 << 16;
    println!(
        "sweep throughput: f32, every 4099th float, (1, 0.5, 0), {threads} threads, {reps} interleaved runs, medians"
    );
    println!(
        "{:<14} {:>9} | {:>13} {:>13} {:>13} {:>13} | {:>10} {:>10} {:>10} | {:>14}",
        "profile",
        "inputs",
        "impl M/s",
        "reference M/s",
        "sweep M/s",
        "1-thread M/s",
        "sweep/impl",
        "sweep/ref",
        "threads",
        "full f32 sweep"
    );
    for name in profiles.split(',') {
        let profile = Profile::preset(name).unwrap_or_else(|e| panic!("--profile {name:?}: {e}"));
        let spec = Spec::standard(&profile, &p, Dtype::F32, 4099).unwrap();
        let imp = HostKernel::new(&profile, &p, Dtype::F32);
        let mut ords = Vec::new();
        spec.inputs.ordinals(0, spec.inputs.len(), &mut ords);
        let cs: Vec<f64> = ords.iter().map(|&o| spec.grid.value(o)).collect();
        let pu = spec.params_used();
        let k = Constants::new(&profile, &pu, Dtype::F32);
        let pre = BudgetPre::new(&pu);
        let (mut t_impl, mut t_ref, mut t_sweep, mut t_one) = (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            t_impl.push(time(|| {
                cs.par_chunks(chunk).for_each(|x| {
                    let (mut o, mut f) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                    imp.eval_chunk(x, &mut o, &mut f).unwrap();
                    black_box((o, f));
                })
            }));
            t_ref.push(time(|| {
                cs.par_chunks(chunk).for_each(|x| {
                    for &c in x {
                        let e = margin::eval_with(c, &pu, &profile, &k);
                        black_box(target_budget_pre(&e, 1.0, &pu, &profile, Dtype::F32, &pre));
                    }
                })
            }));
            t_sweep.push(time(|| {
                black_box(sweep::run(&spec, &imp, &Options::default()).unwrap());
            }));
            t_one.push(time(|| {
                one.install(|| black_box(sweep::run(&spec, &imp, &Options::default()).unwrap()));
            }));
        }
        let n = cs.len() as f64;
        let rate = |t: Vec<f64>| n / median(t);
        let (r_impl, r_ref, r_sweep, r_one) =
            (rate(t_impl), rate(t_ref), rate(t_sweep), rate(t_one));
        println!(
            "{:<14} {:>9} | {:>13.2} {:>13.2} {:>13.2} {:>13.2} | {:>10.3} {:>10.3} {:>10.2} | {:>12.0} s",
            name,
            cs.len(),
            r_impl / 1e6,
            r_ref / 1e6,
            r_sweep / 1e6,
            r_one / 1e6,
            r_impl / r_sweep,
            r_ref / r_sweep,
            r_sweep / r_one,
            FULL_F32 / r_sweep
        );
    }
    println!(
        "columns: sweep/impl and sweep/ref = how many times faster each half alone runs than the whole; \
         threads = all threads over one; full f32 sweep = 2,130,708,482 inputs at the sweep's rate"
    );

    if std::env::var_os("CMARGIN_SWEEP_FULL").is_some() {
        let name = profiles.split(',').next().expect("one profile");
        let profile = Profile::preset(name).unwrap();
        let imp = HostKernel::new(&profile, &p, Dtype::F32);
        let full = Spec::standard(&profile, &p, Dtype::F32, 1).unwrap();
        let t0 = Instant::now();
        let s = sweep::run(&full, &imp, &Options::default()).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        print!("{}", report::table(&s, Some(secs)));
        println!(
            "full sweep ({name}): {} inputs in {secs:.1} s on {threads} threads ({:.2} M inputs/s)",
            s.evaluated(),
            s.evaluated() as f64 / secs / 1e6
        );
    }
}
