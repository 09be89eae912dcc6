//! The Rust baseline of `scripts/bench-python-overhead.py`: the check `check_layer` runs
//! (`deviation::check` under `recommended` and the report text), on an N×C f32 layer whose
//! implementation outputs are the reference rounded to f32, starting from f32 arrays in
//! memory (the widening to f64 is part of the check, in Rust as in Python).
//!
//! Not a criterion bench: one input of 4096 × 10000 (82 M compared elements) takes seconds,
//! so it times `--reps` runs and prints one `seconds: <t>` line each, which the script reads.
//! `cargo bench --bench check_layer -- --n 4096 --c 10000 --reps 3`.
//!
//! `--bounded` compares as `cmargin check` does above 2^20 entries per side (SPEC.md §8.5:
//! tallies and the failing elements, not a record per element).
//!
//! `--family per-row` gives every row its own (equal) margins, the per-row code path of
//! SPEC.md §11.1 (one reference and one kink list per row); `--family k3` records the cosines
//! as K = 3 sub-centres (the recorded one and two below it) and times their max over K
//! (§11.2) with the check. Issue 17's bound: each at most 1.5× the plain check.

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
    let family = args
        .iter()
        .position(|a| a == "--family")
        .and_then(|i| args.get(i + 1))
        .map_or("plain", String::as_str)
        .to_string();
    // Every element, as Python's check_layer keeps them (its fractions and budgets go back to
    // Python); `--bounded` times the bounded comparison `cmargin check` makes (SPEC.md §8.5).
    let detail = if args.iter().any(|a| a == "--bounded") {
        combined_margin::compare::Detail::Bounded
    } else {
        combined_margin::compare::Detail::Every
    };
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
    // K = 3 sub-centres: the recorded cosine and two below it (exact in f32 near the grid).
    let sub: Vec<f32> = if family == "k3" {
        cos.iter().flat_map(|&x| [x, x - 0.5, x - 1.0]).collect()
    } else {
        Vec::new()
    };
    println!("check_layer baseline: {n} x {c} f32, family {family}, {reps} runs");
    for _ in 0..reps {
        let t = Instant::now();
        let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
        let (cos_in, subcenters) = if family == "k3" {
            let wide = widen(&sub);
            let max = combined_margin::layer::subcenter_max_values(&wide, n, c, 3).expect("shape");
            (max, Some((3, wide)))
        } else {
            (widen(&cos), None)
        };
        let row_params = (family == "per-row").then(|| vec![params; n]);
        let case = LayerCase {
            name: name.clone(),
            params,
            params_effective: params,
            scaled: false,
            easy_margin: None,
            n,
            c,
            cos: cos_in,
            labels: labels.clone(),
            top_diff: Some(widen(&top)),
            forward: Some(widen(&fwd)),
            backward: Some(widen(&bwd)),
            row_params,
            modulation: Default::default(),
            lambda: None,
            subcenters,
        };
        let ck = deviation::check_with(&case, &profile, Dtype::F32, &Declared::default(), detail)
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
