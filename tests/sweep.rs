//! `cmargin sweep` (SPEC.md §10): the strided CI sweep of the host kernel math for every
//! preset and paper configuration, determinism across threads and chunk sizes, the needle
//! test (a bug at one float found by a sweep, missed by 10^6 random samples), the teeth of
//! the comparison, the CLI, and the full 2^31 sweep (ignored: minutes).

use combined_margin::margin::{self, Constants};
use combined_margin::params::PAPER_CONFIGS;
use combined_margin::rng::SplitMix64;
use combined_margin::sweep::grid::{F32Grid, Grid, InputSet};
use combined_margin::sweep::impls::{by_name, HostKernel, SweepImpl};
use combined_margin::sweep::{self, report, Options, Spec, Verdict};
use combined_margin::tolerance::{error_fraction, target_budget};
use combined_margin::{Dtype, Params, Profile};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The CI stride: a prime near 4096, about half a million floats of [−1, 1].
const CI_STRIDE: u64 = 4099;

/// The deterministic part of a report (the JSON without run timings).
fn fingerprint(s: &sweep::Sweep) -> String {
    report::to_json(s, serde_json::Value::Null).to_string()
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

#[test]
fn strided_host_kernel_sweep_every_preset_and_paper_config() {
    let t0 = Instant::now();
    let mut lines = Vec::new();
    let mut inputs = 0;
    for profile in Profile::presets() {
        for &(m1, m2, m3) in &PAPER_CONFIGS {
            let p = Params::new(m1, m2, m3);
            let spec = Spec::standard(&profile, &p, Dtype::F32, CI_STRIDE).unwrap();
            // The band beyond ±1 is whole, and so is every kink's neighbourhood.
            assert!(spec.inputs.len() > 2_130_706_434 / CI_STRIDE + 2048);
            let imp = HostKernel::new(&profile, &p, Dtype::F32);
            let s = sweep::run(&spec, &imp, &Options::default()).unwrap();
            assert_eq!(s.evaluated(), s.planned);
            inputs += s.evaluated();
            for (r, st) in s.regions.iter().zip(&s.acc.regions) {
                if let Some((_, _, o)) = r.kink {
                    // Every float within kink_ulps of it in [−1, 1] (beyond ±1 is "outside").
                    let g = spec.grid;
                    let whole = (o - s.kink_ulps as i64..=o + s.kink_ulps as i64)
                        .filter(|&q| g.value(q).abs() <= 1.0)
                        .count() as u64;
                    assert_eq!(
                        st.count, whole,
                        "{profile} {p}: region {} not swept whole",
                        r.name
                    );
                }
            }
            let a = &s.acc.all;
            lines.push(format!(
                "{:<18} ({m1}, {m2}, {m3})  fwd {:.4} ({:.1} ulp)  bwd {:.4} ({:.1} ulp)",
                profile.name, a.fwd_frac.value, a.fwd_ulp.value, a.bwd_frac.value, a.bwd_ulp.value
            ));
            assert_eq!(
                s.verdict(),
                Verdict::Pass,
                "{profile} {p}:\n{}",
                report::table(&s, None)
            );
            assert_eq!(a.nonfinite_mismatch, 0);
        }
    }
    println!(
        "strided host-kernel sweeps (every {CI_STRIDE}th f32, band, kink windows): {inputs} inputs in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    println!("{}", lines.join("\n"));
}

#[test]
fn reference_rounded_and_fused_target_are_within_budget() {
    for profile in Profile::presets() {
        for (m1, m2, m3) in [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2)] {
            let p = Params::new(m1, m2, m3);
            let spec = Spec::standard(&profile, &p, Dtype::F32, 4 * CI_STRIDE + 2).unwrap();
            for name in ["reference-rounded", "fused-target"] {
                let imp = by_name(name, &profile, &p, spec.grid).unwrap();
                let s = sweep::run(&spec, imp.as_ref(), &Options::default()).unwrap();
                assert_eq!(
                    s.verdict(),
                    Verdict::Pass,
                    "{name} {profile} {p}:\n{}",
                    report::table(&s, None)
                );
                // One rounding of the exact reference: at most half an ulp where finite.
                if name == "reference-rounded" {
                    assert!(s.acc.all.fwd_ulp.value <= 0.5, "{name} {profile}");
                }
            }
        }
    }
}

#[test]
fn result_is_independent_of_threads_and_chunks() {
    let profile = Profile::preset("caffe-gpu").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let spec = Spec::standard(&profile, &p, Dtype::F32, 40_009).unwrap();
    let imp = HostKernel::new(&profile, &p, Dtype::F32);
    let runs: Vec<String> = [(1, 4096), (2, 65_536), (3, 1000), (2, 7)]
        .iter()
        .map(|&(t, chunk)| {
            let opt = Options {
                chunk: Some(chunk),
                ..Options::default()
            };
            let s = pool(t).install(|| sweep::run(&spec, &imp, &opt)).unwrap();
            fingerprint(&s)
        })
        .collect();
    for r in &runs[1..] {
        assert_eq!(r, &runs[0]);
    }
}

/// arcface-thmm with the threshold comparison written `>=` instead of `>`: the margin branch
/// is taken at exactly one float, c = th, where the fallback belongs.
struct ThresholdOffByOne {
    inner: HostKernel,
    th: f64,
    p: Params,
}

impl SweepImpl for ThresholdOffByOne {
    fn name(&self) -> String {
        "thmm-with->=".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        self.inner.eval_chunk(c, out, factor)?;
        for i in 0..c.len() {
            if c[i] == self.th {
                // The margin branch at th: cos(m1·θ + m2) − m3 and its derivative, in f32.
                let t = (c[i] as f32).acos();
                let phi = self.p.m1 as f32 * t + self.p.m2 as f32;
                out[i] = (phi.cos() - self.p.m3 as f32) as f64;
                factor[i] = (self.p.m1 as f32 * phi.sin() / t.sin()) as f64;
            }
        }
        Ok(())
    }
}

#[test]
fn needle_one_wrong_float_is_found_by_a_sweep_and_missed_by_random_samples() {
    let profile = Profile::preset("arcface-thmm").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let k = Constants::new(&profile, &p, Dtype::F32);
    let th = k.threshold.expect("thmm at (1, 0.5, 0) has a threshold");
    let imp = ThresholdOffByOne {
        inner: HostKernel::new(&profile, &p, Dtype::F32),
        th,
        p,
    };
    let g = &F32Grid;
    let (lo, hi) = (g.value(g.ordinal(th) - 1000), g.value(g.ordinal(th) + 1000));
    let spec = Spec {
        profile: profile.clone(),
        params: p,
        grid: g,
        inputs: InputSet::new(g, Some((lo.min(hi), lo.max(hi))), 1, 0).unwrap(),
        kink_ulps: sweep::DEFAULT_KINK_ULPS,
    };
    let s = sweep::run(&spec, &imp, &Options::default()).unwrap();
    assert_eq!(s.evaluated(), 2001);
    assert_eq!(s.verdict(), Verdict::Fail);
    assert_eq!(s.acc.all.fails, 1, "{}", report::table(&s, None));
    assert_eq!(s.acc.all.fwd_frac.c, th, "the worst input is the needle");
    assert!(s.acc.all.fwd_frac.value > 1e3);
    let region = &s.regions[s.acc.worst[0].region];
    assert!(region.name.contains("threshold"), "{}", region.name);
    // The same implementation without the needle passes the same sweep.
    let clean = sweep::run(&spec, &imp.inner, &Options::default()).unwrap();
    assert_eq!(clean.verdict(), Verdict::Pass);

    // 10^6 uniform samples over [−1, 1], rounded to f32, compared the same way: none is th.
    let mut rng = SplitMix64::new(13);
    let cs: Vec<f64> = (0..1_000_000)
        .map(|_| rng.uniform_in(-1.0, 1.0) as f32 as f64)
        .collect();
    let (mut out, mut factor) = (vec![0.0; cs.len()], vec![0.0; cs.len()]);
    imp.eval_chunk(&cs, &mut out, &mut factor).unwrap();
    let pk = combined_margin::cuda::params_as(&p, Dtype::F32);
    let mut worst = 0.0f64;
    for i in 0..cs.len() {
        let r = margin::eval(cs[i], &pk, &profile, Dtype::F32);
        let b = target_budget(cs[i], 1.0, &pk, &profile, Dtype::F32);
        worst = worst
            .max(error_fraction(out[i], r.out, b.forward))
            .max(error_fraction(factor[i], r.factor, b.backward));
    }
    assert!(!cs.contains(&th));
    assert!(
        worst <= 1.0,
        "random samples pass the wrong implementation: worst fraction {worst}"
    );
}

/// An implementation returning NaN at one input: a non-finite mismatch, named as such.
struct NanAt(HostKernel, f64);

impl SweepImpl for NanAt {
    fn name(&self) -> String {
        "nan-at-one".into()
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        self.0.eval_chunk(c, out, factor)?;
        for i in 0..c.len() {
            if c[i] == self.1 {
                factor[i] = f64::NAN;
            }
        }
        Ok(())
    }
}

#[test]
fn non_finite_mismatch_is_counted_and_fails() {
    let profile = Profile::preset("recommended").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let bad = 0.25f32 as f64;
    let imp = NanAt(HostKernel::new(&profile, &p, Dtype::F32), bad);
    let g = &F32Grid;
    let spec = Spec {
        profile,
        params: p,
        grid: g,
        inputs: InputSet::new(g, Some((0.2499, 0.2501)), 1, 0).unwrap(),
        kink_ulps: 16,
    };
    let s = sweep::run(&spec, &imp, &Options::default()).unwrap();
    assert_eq!(s.acc.all.nonfinite_mismatch, 1);
    assert_eq!(s.acc.hist_bwd.nonfinite_mismatch, 1);
    assert_eq!(s.acc.hist_fwd.nonfinite_mismatch, 0);
    assert_eq!(s.acc.all.bwd_frac.c, bad);
    assert_eq!(s.verdict(), Verdict::Fail);
    assert_eq!(s.verdict().exit_code(), 1);
}

#[test]
fn cancel_gives_a_partial_result_with_its_own_verdict() {
    let profile = Profile::preset("analytic").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let spec = Spec::standard(&profile, &p, Dtype::F32, 40_009).unwrap();
    let imp = HostKernel::new(&profile, &p, Dtype::F32);
    let flag = AtomicBool::new(false);
    // Cancel after the first chunk finishes (one thread: the rest are skipped).
    let progress = |_n: u64| flag.store(true, Ordering::SeqCst);
    let opt = Options {
        chunk: Some(1000),
        cancel: Some(&flag),
        progress: Some(&progress),
    };
    let s = pool(1).install(|| sweep::run(&spec, &imp, &opt)).unwrap();
    assert!(s.interrupted);
    assert!(s.evaluated() >= 1000 && s.evaluated() < s.planned);
    assert_eq!(s.verdict(), Verdict::Interrupted);
    assert_eq!(s.verdict().exit_code(), 130);
    assert!(!s.complete());
    assert!(report::table(&s, None).contains("partial"));
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cmargin"))
}

#[test]
fn cli_sweep_writes_json_and_names_bad_input() {
    let dir = crate::common::ScratchDir::new("sweep");
    let json = dir.join("s.json");
    let _ = std::fs::remove_file(&json);
    let out = bin()
        .args([
            "sweep",
            "--profile",
            "caffe-gpu",
            "--params",
            "1,0.5,0",
            "--dtype",
            "f32",
            "--impl",
            "host-kernel",
            "--range",
            "0.9999,1",
            "--threads",
            "2",
            "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("verdict: pass"), "{text}");
    assert!(
        out.stderr.is_empty(),
        "no progress bar when stderr is not a terminal"
    );
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["exit_code"], 0);
    assert_eq!(j["inputs"]["complete"], false);
    assert!(j["all"]["max_backward_fraction"]["c_hex"].is_string());
    assert!(j["regions"].as_array().unwrap().len() >= 3);

    for (args, needle) in [
        (vec!["--params", "1,x,0"], "--params"),
        (vec!["--params", "1,0.5"], "expected 3"),
        (vec!["--params", "0,0.5,0"], "m1"),
        (vec!["--params", "1,0.5,0", "--range", "1,0"], "--range"),
        (vec!["--params", "1,0.5,0", "--stride", "0"], "--stride"),
        (
            vec!["--params", "1,0.5,0", "--impl", "cuda"],
            "--impl \"cuda\"",
        ),
        (vec!["--params", "1,0.5,0", "--dtype", "f128"], "--dtype"),
        (
            vec!["--params", "1,0.5,0", "--band", "99999999999"],
            "--band",
        ),
        (
            vec!["--params", "1,0.5,0", "--kink-ulps", "99999999999"],
            "--kink-ulps",
        ),
        (vec!["--params", "1,0.5,0", "--range", "nan,1"], "--range"),
    ] {
        let out = bin()
            .args(["sweep", "--profile", "recommended"])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// Ctrl-C through the real signal path: SIGINT to a running full sweep prints the partial
/// result and exits 130.
#[test]
fn cli_sigint_prints_the_partial_result() {
    let child = bin()
        .args(["sweep", "--profile", "recommended", "--params", "1,0.5,0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for the handler to be installed (a full sweep takes minutes).
    std::thread::sleep(std::time::Duration::from_secs(2));
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(130),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("interrupted: partial result"), "{text}");
    assert!(text.contains("verdict: interrupted"), "{text}");
}

/// The complete f32 sweep of one (preset, params): every float of [−1, 1] and the band.
#[test]
#[ignore = "needs minutes: the full 2^31 sweep (SPEC.md §10.4 gives its time)"]
fn full_sweep_caffe_gpu_1_05_0() {
    let profile = Profile::preset("caffe-gpu").unwrap();
    let p = Params::new(1.0, 0.5, 0.0);
    let spec = Spec::standard(&profile, &p, Dtype::F32, 1).unwrap();
    let imp = HostKernel::new(&profile, &p, Dtype::F32);
    let t0 = Instant::now();
    let s = sweep::run(&spec, &imp, &Options::default()).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!("{}", report::table(&s, Some(secs)));
    assert!(s.complete());
    assert_eq!(s.evaluated(), 2_130_706_434 + 2 * 1024);
    assert_eq!(s.verdict(), Verdict::Pass);
}
