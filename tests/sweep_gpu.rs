//! The device sweep (SPEC.md §10.5): the CUDA margin kernels over every f32 input of [−1, 1]
//! and the band, each chunk one launch of the forward and one of the backward (a C = 1 batch:
//! every entry is its row's target), compared within budget with the reference by the sweep
//! engine and, input by input, with the host build of the same `.cuh`.
//!
//! Host and device share the text but not the math library (glibc vs the CUDA Math API), so
//! bit equality is asserted where no library call is on the path (the (1, 0) shortcut and
//! the th/mm fallback line: pure IEEE arithmetic) and counted elsewhere, with the largest ulp
//! distance. Without a GPU the test prints one SKIP line; with REQUIRE_GPU=1 it fails instead.
//! `#[ignore]`d (a minute of CPU time per full sweep): scripts/gpu-check.sh runs it.

use combined_margin::cuda::device::{self, Gpu};
use combined_margin::cuda::host::HostEval;
use combined_margin::cuda::KernelProfile;
use combined_margin::margin::Branch;
use combined_margin::sweep::grid::{F32Grid, Grid};
use combined_margin::sweep::impls::SweepImpl;
use combined_margin::sweep::{self, report, Options, Spec, Verdict};
use combined_margin::{Dtype, Params, Profile};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

fn say(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The margin kernels on the device, with a running comparison against the host build.
struct DeviceKernel<'a> {
    gpu: &'a Mutex<Gpu>,
    profile: Profile,
    p: Params,
    kp: KernelProfile,
    /// Inputs whose device output or factor differs in bits from the host build's.
    differ: AtomicU64,
    /// Of those, inputs on a branch without a library call (must be zero).
    differ_pure: AtomicU64,
    /// Largest |device − host| in f32 ulps (bits of the f64, monotone for same-sign values).
    max_ulp_bits: AtomicU64,
}

fn ulp_distance(a: f32, b: f32) -> u64 {
    if a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()) {
        return 0;
    }
    if !a.is_finite() || !b.is_finite() {
        return u64::MAX;
    }
    let g = F32Grid;
    g.ordinal(a as f64).abs_diff(g.ordinal(b as f64))
}

impl SweepImpl for DeviceKernel<'_> {
    fn name(&self) -> String {
        "device-kernel".into()
    }
    fn preferred_chunk(&self) -> usize {
        1 << 24
    }
    fn eval_chunk(&self, c: &[f64], out: &mut [f64], factor: &mut [f64]) -> Result<(), String> {
        let cos: Vec<f32> = c.iter().map(|&x| x as f32).collect();
        let labels = vec![0i64; cos.len()];
        let ones = vec![1.0f32; cos.len()];
        let (fwd, bwd) = {
            let g = self.gpu.lock().unwrap_or_else(|e| e.into_inner());
            let fwd = g
                .margin_forward(&cos, &labels, 1, &self.profile, &self.p)
                .map_err(|e| e.to_string())?;
            let bwd = g
                .margin_backward(&cos, &labels, &ones, 1, &self.profile, &self.p)
                .map_err(|e| e.to_string())?;
            (fwd, bwd)
        };
        for i in 0..cos.len() {
            out[i] = fwd[i] as f64;
            factor[i] = bwd[i] as f64;
            let h = f32::host_eval(cos[i], &self.kp);
            let d = ulp_distance(fwd[i], h.out).max(ulp_distance(bwd[i], h.factor));
            if d > 0 {
                self.differ.fetch_add(1, Ordering::Relaxed);
                if h.branch != Branch::Margin {
                    self.differ_pure.fetch_add(1, Ordering::Relaxed);
                }
                self.max_ulp_bits.fetch_max(d, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Every preset at the two headline configurations; the stride from CMARGIN_DEVICE_STRIDE
/// (default 1: every float).
#[test]
#[ignore = "needs a GPU and minutes of CPU: scripts/gpu-check.sh runs it"]
fn device_sweep_every_f32_input() {
    if let Some(why) = device::unavailable_reason() {
        if std::env::var("REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("device sweep: REQUIRE_GPU=1 but no GPU: {why}");
        }
        say(&format!("SKIP sweep_gpu: {why}"));
        return;
    }
    let gpu = Mutex::new(Gpu::open().expect("a GPU is present but the kernels do not load"));
    let stride: u64 = std::env::var("CMARGIN_DEVICE_STRIDE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let mut bad = Vec::new();
    for profile in Profile::presets() {
        for (m1, m2, m3) in [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2)] {
            let p = Params::new(m1, m2, m3);
            let spec = Spec::standard(&profile, &p, Dtype::F32, stride).unwrap();
            let imp = DeviceKernel {
                gpu: &gpu,
                profile: profile.clone(),
                p,
                kp: KernelProfile::new(&profile, &p, Dtype::F32),
                differ: AtomicU64::new(0),
                differ_pure: AtomicU64::new(0),
                max_ulp_bits: AtomicU64::new(0),
            };
            let t0 = Instant::now();
            let s = sweep::run(&spec, &imp, &Options::default()).unwrap();
            let a = &s.acc.all;
            say(&format!(
                "device sweep {:<18} ({m1}, {m2}, {m3}) stride {stride}: {} inputs{} in {:.1} s; \
                 fwd {:.4} of budget ({:.2} ulp), bwd {:.4} ({:.2} ulp); {} differ from the host build \
                 (max {} ulp), {} of them on a library-free branch; verdict {}",
                profile.name,
                s.evaluated(),
                if s.complete() { " (complete)" } else { "" },
                t0.elapsed().as_secs_f64(),
                a.fwd_frac.value,
                a.fwd_ulp.value,
                a.bwd_frac.value,
                a.bwd_ulp.value,
                imp.differ.load(Ordering::Relaxed),
                imp.max_ulp_bits.load(Ordering::Relaxed),
                imp.differ_pure.load(Ordering::Relaxed),
                s.verdict().word()
            ));
            if s.verdict() != Verdict::Pass || imp.differ_pure.load(Ordering::Relaxed) > 0 {
                bad.push(format!("{profile} {p}:\n{}", report::table(&s, None)));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
