//! The Rust baseline of `scripts/bench-python-overhead.py`: the check `check_layer` runs
//! (`deviation::check` under `recommended` and the report text), on an N×C f32 layer whose
//! implementation outputs are the reference rounded to f32, starting from f32 arrays in
//! memory (the widening to f64 is part of the check, in Rust as in Python).
//!
//! Not a criterion bench: one input of 4096 × 10000 (82 M compared elements) takes seconds,
//! so it times `--reps` runs and prints one `seconds: <t>` line each, which the script reads.
//! `cargo bench --bench check_layer -- --n 4096 --c 10000 --reps 3`.

use combined_margin::deviation::{self, Declared};
use combined_margin::fixture::generate::{generate, Inputs, Spec, TopDiff};
use combined_margin::fixture::LayerCase;
use combined_margin::{report, Dtype, Params, Profile};
use std::hint::black_box;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (n, c, reps) = (
        arg(&args, "--n", 4096),
        arg(&args, "--c", 10_000),
        arg(&args, "--reps", 3),
    );
    let profile = Profile::preset("recommended").unwrap();
    let spec = Spec {
        profile: profile.clone(),
        params: Params::new(1.0, 0.5, 0.0),
        scaled: false,
        n,
        c,
        dtype: Dtype::F32,
        seed: 1,
        inputs: Inputs::Uniform,
        top_diff: TopDiff::Uniform,
        ignore_every: 8,
        input_grid: None,
    };
    let g = generate(&spec).expect("valid spec");
    let cos = f32s(&g.case.cos);
    let top = f32s(g.case.top_diff.as_deref().unwrap_or_default());
    let fwd = f32s(g.case.forward.as_deref().unwrap_or_default());
    let bwd = f32s(g.case.backward.as_deref().unwrap_or_default());
    let (labels, params, name) = (g.case.labels.clone(), g.case.params, g.case.name.clone());
    drop(g);
    println!("check_layer baseline: {n} x {c} f32, {reps} runs");
    for _ in 0..reps {
        let t = Instant::now();
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let case = LayerCase {
            name: name.clone(),
            params,
            params_effective: params,
            scaled: false,
            easy_margin: None,
            n,
            c,
            cos: widen(&cos),
            labels: labels.clone(),
            top_diff: Some(widen(&top)),
            forward: Some(widen(&fwd)),
            backward: Some(widen(&bwd)),
            row_params: None,
            modulation: Default::default(),
            lambda: None,
            subcenters: None,
        };
        let ck = deviation::check(&case, &profile, Dtype::F32, &Declared::default())
            .expect("a valid case");
        let (text, ok) = report::file_report(
            &name,
            "arrays",
            Dtype::F32,
            &[ck],
            &report::ReportOptions::default(),
        );
        black_box((text, ok));
        drop(case);
        println!("seconds: {:.4}", t.elapsed().as_secs_f64());
    }
}
