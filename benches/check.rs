//! The cost of `--profile auto` against a plain check, measured in one run (issue 16: at most
//! 1.5×), on the seed shape 128 × 180,855 f32 (23 M entries per side), whose outputs are
//! the `arcface-thmm` reference rounded to f32.
//!
//! Plain check: `deviation::check` under the mapped profile. Auto: the search
//! (`fingerprint::search`: presets, the axis search, the parameter fit) and then the same
//! check under the point found, reusing the search's pass over the non-targets, as
//! `cmargin check --profile auto` runs them. Not a criterion
//! bench (one check takes seconds): it times `--reps` runs of each, interleaved, and prints
//! the medians and their ratio, in wall time and in process CPU time (user + system, from
//! `getrusage`): on a shared machine the wall ratio moves with the load, the CPU ratio much
//! less.
//! `cargo bench --bench check -- --n 128 --c 180855 --reps 3`.

use combined_margin::deviation::{self, Declared};
use combined_margin::fixture::generate::{generate, Inputs, Spec, TopDiff};
use combined_margin::verdict::search as fingerprint;
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

/// This process's CPU time so far (user + system, every thread), in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage writes one rusage struct, which it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    tv(u.ru_utime) + tv(u.ru_stime)
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
    let (mut plain_cpu, mut auto_cpu) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let t = Instant::now();
        let c0 = cpu_seconds();
        let ck = deviation::check(&case, &profile, Dtype::F32, &Declared::default()).unwrap();
        black_box(&ck);
        plain.push(t.elapsed().as_secs_f64());
        plain_cpu.push(cpu_seconds() - c0);
        let t = Instant::now();
        let c0 = cpu_seconds();
        let s = fingerprint::search(std::slice::from_ref(&case), Dtype::F32).unwrap();
        let best = s.best().profile.clone();
        // As the CLI does: the search's pass over the non-targets serves the check.
        let ck = deviation::check_reusing(
            &case,
            &best,
            Dtype::F32,
            &Declared::default(),
            combined_margin::compare::Detail::for_shape(case.n, case.c),
            s.passthrough[0].as_ref(),
        )
        .unwrap();
        black_box(&ck);
        auto.push(t.elapsed().as_secs_f64());
        auto_cpu.push(cpu_seconds() - c0);
        println!(
            "  check {:.3} s (cpu {:.3} s), auto {:.3} s (cpu {:.3} s) ({} candidates, best {})",
            plain.last().unwrap(),
            plain_cpu.last().unwrap(),
            auto.last().unwrap(),
            auto_cpu.last().unwrap(),
            s.ranked.len(),
            best.name
        );
    }
    let (p, a) = (median(plain), median(auto));
    let (pc, ac) = (median(plain_cpu), median(auto_cpu));
    println!(
        "median: check {p:.3} s, auto {a:.3} s, ratio auto/check = {:.3} (wall); cpu: check {pc:.3} s, auto {ac:.3} s, ratio {:.3}",
        a / p,
        ac / pc
    );
}
