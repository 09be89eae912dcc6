//! `cmargin sweep` throughput (SPEC.md §10.4): the whole comparison per input, and its two
//! halves measured apart on the same inputs, so the report can say what bounds a full sweep:
//!
//! - `impl`: the host kernel math alone (`HostKernel::eval_chunk`, one FFI call per input);
//! - `reference`: `margin::eval_with` and `tolerance::target_budget_for` alone;
//! - `sweep`: `sweep::run` end to end (both halves, the ulp measure, the aggregation).
//!
//! Inputs: a strided f32 sweep (every 4099th float, ~0.5 M inputs), caffe-gpu at (1, 0.5, 0).
//! With CMARGIN_SWEEP_FULL=1 the bench then runs the complete 2^31 sweep once and prints its
//! time (minutes; criterion's 10 samples of it would take an hour).

use combined_margin::margin::{self, Constants};
use combined_margin::sweep::impls::{HostKernel, SweepImpl};
use combined_margin::sweep::{self, report, Options, Spec};
use combined_margin::tolerance::target_budget_for;
use combined_margin::{Dtype, Params, Profile};
use criterion::{black_box, Criterion, Throughput};
use rayon::prelude::*;
use std::time::Instant;

fn main() {
    let profile = Profile::preset("caffe-gpu").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let spec = Spec::standard(&profile, &p, Dtype::F32, 4099).unwrap();
    let imp = HostKernel::new(&profile, &p, Dtype::F32);
    let mut ords = Vec::new();
    spec.inputs.ordinals(0, spec.inputs.len(), &mut ords);
    let cs: Vec<f64> = ords.iter().map(|&o| spec.grid.value(o)).collect();
    let pu = spec.params_used();
    let k = Constants::new(&profile, &pu, Dtype::F32);
    let chunk = 1 << 16;

    let mut c = Criterion::default().sample_size(10).configure_from_args();
    let mut g = c.benchmark_group("sweep");
    g.throughput(Throughput::Elements(cs.len() as u64));
    g.bench_function("impl", |b| {
        b.iter(|| {
            cs.par_chunks(chunk).for_each(|x| {
                let (mut o, mut f) = (vec![0.0; x.len()], vec![0.0; x.len()]);
                imp.eval_chunk(x, &mut o, &mut f).unwrap();
                black_box((o, f));
            })
        })
    });
    g.bench_function("reference", |b| {
        b.iter(|| {
            cs.par_chunks(chunk).for_each(|x| {
                for &c in x {
                    let e = margin::eval_with(c, &pu, &profile, &k);
                    black_box(target_budget_for(&e, 1.0, &pu, &profile, Dtype::F32));
                }
            })
        })
    });
    g.bench_function("sweep", |b| {
        b.iter(|| black_box(sweep::run(&spec, &imp, &Options::default()).unwrap()))
    });
    g.finish();
    c.final_summary();

    if std::env::var_os("CMARGIN_SWEEP_FULL").is_some() {
        let full = Spec::standard(&profile, &p, Dtype::F32, 1).unwrap();
        let t0 = Instant::now();
        let s = sweep::run(&full, &imp, &Options::default()).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        print!("{}", report::table(&s, Some(secs)));
        println!(
            "full sweep: {} inputs in {secs:.1} s on {} threads ({:.2} M inputs/s)",
            s.evaluated(),
            rayon::current_num_threads(),
            s.evaluated() as f64 / secs / 1e6
        );
    }
}
