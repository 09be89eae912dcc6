//! The cost of `--profile auto` against a plain check, measured in one run (issue 16: at most
//! 1.5×), on the seed shape 128 × 180,855 f32 (23 M entries per side), whose outputs are
//! the `arcface-thmm` reference rounded to f32.
//!
//! Plain check: `deviation::check` under the mapped profile. Auto: the search
//! (`fingerprint::search`: presets, the axis search, the parameter fit) and then the same
//! check under the point found, as `cmargin check --profile auto` runs them. Not a criterion
//! bench (one check takes seconds): it times `--reps` runs of each, interleaved, and prints
//! the medians and their ratio.
//! `cargo bench --bench check -- --n 128 --c 180855 --reps 3`.

use combined_margin::deviation::{self, Declared};
use combined_margin::fingerprint;
use combined_margin::fixture::generate::{generate, Inputs, Spec, TopDiff};
use combined_margin::{Dtype, Params, Profile};
use std::hint::black_box;
use std::time::Instant;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (n, c, reps) = (
        arg(&args, "--n", 128),
        arg(&args, "--c", 180_855),
        arg(&args, "--reps", 3),
    );
    let profile = Profile::preset("arcface-thmm").unwrap();
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
    let case = generate(&spec).expect("valid spec").case;
    println!("check vs --profile auto: {n} x {c} f32, {reps} runs each");
    let (mut plain, mut auto) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let ck = deviation::check(&case, &profile, Dtype::F32, &Declared::default()).unwrap();
        black_box(&ck);
        plain.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let s = fingerprint::search(std::slice::from_ref(&case), Dtype::F32).unwrap();
        let best = s.best().profile.clone();
        let ck = deviation::check(&case, &best, Dtype::F32, &Declared::default()).unwrap();
        black_box(&ck);
        auto.push(t.elapsed().as_secs_f64());
        println!(
            "  check {:.3} s, auto {:.3} s ({} candidates, best {})",
            plain.last().unwrap(),
            auto.last().unwrap(),
            s.ranked.len(),
            best.name
        );
    }
    let (p, a) = (median(plain), median(auto));
    println!(
        "median: check {p:.3} s, auto {a:.3} s, ratio auto/check = {:.3}",
        a / p
    );
}
