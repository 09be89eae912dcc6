//! The kernels on a GPU, against the reference: the margin layer for every preset in f32 and
//! f64 (property tests), guard bands and poisoned outputs (no out-of-bounds access, every
//! output written), and the fused loss against the pipeline's f64 reference head.
//!
//! Every test that needs the GPU is `#[ignore = "needs a CUDA GPU …"]`, so that `cargo test`
//! without one reports them as ignored (with the reason) instead of passing them unrun;
//! scripts/gpu-check.sh runs them with `--include-ignored`, and there an absent GPU fails.
//! The bandwidth benchmark is run separately (`--ignored --exact cuda_gpu::bench_fused_bandwidth`).

use crate::common::{batch, params};
use combined_margin::cuda::device::{self, FusedBuffers, FusedOutput, Gpu};
use combined_margin::cuda::host::HostEval;
use combined_margin::cuda::{code, params_as, KernelFloat, KernelProfile};
use combined_margin::margin;
use combined_margin::pipeline::{reference, LossConfig};
use combined_margin::tolerance::{error_fraction, target_budget};
use combined_margin::{layer, Dtype, Error, Params, Profile};
use cudarc::driver::{CudaSlice, DeviceRepr};
use ndarray::ArrayView2;
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use std::io::Write;
use std::sync::{Mutex, MutexGuard, OnceLock};

fn say(line: &str) {
    // Straight to stderr: the harness captures print!/eprint!, not this.
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// The GPU, opened once for the whole binary. Every test that calls this is
/// `#[ignore = "needs a CUDA GPU …"]`; run explicitly (scripts/gpu-check.sh) without a GPU,
/// it fails with the reason, and a GPU that is present but fails to open (driver, NVRTC,
/// compile) is a failure too.
fn gpu(test: &str) -> MutexGuard<'static, Gpu> {
    static GPU: OnceLock<Result<Mutex<Gpu>, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| match device::unavailable_reason() {
        Some(why) => Err(why),
        None => match Gpu::open() {
            Ok(g) => {
                say(&format!(
                    "cuda_gpu: {} (compute {}.{}), kernels compiled for {} in {:.0} ms",
                    g.name,
                    g.capability.0,
                    g.capability.1,
                    g.arch,
                    g.compile_time.as_secs_f64() * 1e3
                ));
                Ok(Mutex::new(g))
            }
            Err(e) => panic!("a GPU is present but the kernels do not load: {e}"),
        },
    });
    match g {
        Ok(m) => m.lock().unwrap_or_else(|e| e.into_inner()),
        Err(why) => panic!("{test}: needs a CUDA GPU: {why}"),
    }
}

fn to_t<T: KernelFloat>(v: &[f64]) -> Vec<T> {
    v.iter().map(|&x| T::of(x)).collect()
}

// ---------------------------------------------------------------------------------------
// 4. The margin layer, every preset, f32 and f64.

/// Property cases per preset and dtype (each is a batch of up to 7 × 11 entries).
const GPU_CASES: u32 = 300;

struct LayerStats {
    cases: u64,
    targets: u64,
    worst_fwd: f64,
    worst_bwd: f64,
}

/// Compares one batch through the kernels with layer::forward / layer::backward. Targets within
/// the tolerance budget; every other element bit-identical to the input (the kernels must not
/// touch it).
#[allow(clippy::too_many_arguments)]
fn check_layer_batch<T: KernelFloat>(
    gpu: &Gpu,
    profile: &Profile,
    p: &Params,
    n: usize,
    c: usize,
    cos: &[f64],
    labels: &[i64],
    top: &[f64],
    stats: &mut LayerStats,
) -> Result<(), String> {
    let dt = T::DTYPE;
    let fwd = gpu
        .margin_forward::<T>(&to_t(cos), labels, c, profile, p)
        .map_err(|e| e.to_string())?;
    let bwd = gpu
        .margin_backward::<T>(&to_t(cos), labels, &to_t(top), c, profile, p)
        .map_err(|e| e.to_string())?;
    let cos_v = ArrayView2::from_shape((n, c), cos).unwrap();
    let top_v = ArrayView2::from_shape((n, c), top).unwrap();
    let rf = layer::forward(cos_v, labels, p, profile, dt).map_err(|e| e.to_string())?;
    let rb = layer::backward(cos_v, labels, top_v, p, profile, dt).map_err(|e| e.to_string())?;
    let targets = layer::targets(n, c, labels, profile).map_err(|e| e.to_string())?;
    stats.cases += 1;
    for i in 0..n {
        for j in 0..c {
            let k = i * c + j;
            let (gf, gb) = (fwd[k].f64(), bwd[k].f64());
            if targets[i] == Some(j) {
                stats.targets += 1;
                let b = target_budget(cos[k], top[k], p, profile, dt);
                let ff = error_fraction(gf, rf[[i, j]], b.forward);
                let fb = error_fraction(gb, rb[[i, j]], b.backward);
                stats.worst_fwd = stats.worst_fwd.max(ff);
                stats.worst_bwd = stats.worst_bwd.max(fb);
                if ff > 1.0 || fb > 1.0 {
                    return Err(format!(
                        "row {i} target {j}: c = {:e}, top = {:e}: forward {gf:e} vs {:e} ({ff:.3} x budget), backward {gb:e} vs {:e} ({fb:.3} x budget)",
                        cos[k], top[k], rf[[i, j]], rb[[i, j]]
                    ));
                }
            } else if gf.to_bits() != cos[k].to_bits() || gb.to_bits() != top[k].to_bits() {
                return Err(format!(
                    "row {i} col {j} (not a target) was touched: forward {gf:e} (input {:e}), backward {gb:e} (input {:e})",
                    cos[k], top[k]
                ));
            }
        }
    }
    Ok(())
}

fn layer_property<T: KernelFloat>(gpu: &Gpu, profile: &Profile) -> Result<LayerStats, String> {
    let dt = T::DTYPE;
    let mut stats = LayerStats {
        cases: 0,
        targets: 0,
        worst_fwd: 0.0,
        worst_bwd: 0.0,
    };
    // The suite's configuration: fixed seed (PROPTEST_RNG_SEED explores others).
    let mut runner = TestRunner::new(crate::common::config(GPU_CASES));
    let prof = profile.clone();
    let strategy = params().prop_flat_map(move |p| {
        let pt = params_as(&p, dt);
        (Just(pt), batch(prof.clone(), pt, dt))
    });
    let stats_cell = std::cell::RefCell::new(&mut stats);
    runner
        .run(&strategy, |(p, (n, c, cos, labels, top))| {
            let mut s = stats_cell.borrow_mut();
            check_layer_batch::<T>(gpu, profile, &p, n, c, &cos, &labels, &top, &mut s)
                .map_err(|e| TestCaseError::fail(format!("{p}: {e}")))
        })
        .map_err(|e| format!("{profile} {dt}: {e}"))?;
    Ok(stats)
}

fn layer_every_preset<T: KernelFloat>(test: &str) {
    let gpu = gpu(test);
    let mut lines = vec![format!(
        "\nGPU margin layer vs reference ({}), fraction of the tolerance budget (≤ 1 passes)\n{:<18} {:>6} {:>8} {:>10} {:>10}",
        T::DTYPE,
        "preset",
        "cases",
        "targets",
        "worst fwd",
        "worst bwd"
    )];
    let mut failures = Vec::new();
    for profile in Profile::presets() {
        match layer_property::<T>(&gpu, &profile) {
            Ok(s) => lines.push(format!(
                "{:<18} {:>6} {:>8} {:>10.4} {:>10.4}",
                profile.name, s.cases, s.targets, s.worst_fwd, s.worst_bwd
            )),
            Err(e) => failures.push(e),
        }
    }
    say(&lines.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_margin_layer_f32_every_preset() {
    layer_every_preset::<f32>("cuda_gpu::gpu_margin_layer_f32_every_preset");
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_margin_layer_f64_every_preset() {
    layer_every_preset::<f64>("cuda_gpu::gpu_margin_layer_f64_every_preset");
}

// ---------------------------------------------------------------------------------------
// 5. Guard bands and poisoned outputs.

/// Elements of poisoned margin on each side of every device buffer.
const GUARD: usize = 64;

/// A device buffer of `GUARD + data + GUARD` elements whose margins hold `canary`.
struct Guarded<T: DeviceRepr> {
    buf: CudaSlice<T>,
    len: usize,
    canary: T,
}

impl<T: DeviceRepr + Copy + PartialEq + std::fmt::Debug + Default> Guarded<T> {
    fn new(gpu: &Gpu, data: &[T], canary: T) -> Guarded<T> {
        let mut host = vec![canary; GUARD];
        host.extend_from_slice(data);
        host.extend(std::iter::repeat_n(canary, GUARD));
        Guarded {
            buf: gpu.upload(&host).expect("upload"),
            len: data.len(),
            canary,
        }
    }

    fn view(&self) -> cudarc::driver::CudaView<'_, T> {
        self.buf.slice(GUARD..GUARD + self.len)
    }

    fn view_mut(&mut self) -> cudarc::driver::CudaViewMut<'_, T> {
        self.buf.slice_mut(GUARD..GUARD + self.len)
    }

    /// The data part, after asserting both margins are intact (bitwise, via `same`).
    fn read(&self, gpu: &Gpu, what: &str, same: impl Fn(T, T) -> bool) -> Vec<T> {
        let all = gpu.download(&self.buf).expect("download");
        for (k, &v) in all[..GUARD]
            .iter()
            .chain(&all[GUARD + self.len..])
            .enumerate()
        {
            assert!(
                same(v, self.canary),
                "{what}: guard element {k} overwritten: {v:?} (canary {:?})",
                self.canary
            );
        }
        all[GUARD..GUARD + self.len].to_vec()
    }
}

fn same_bits<T: KernelFloat>(a: T, b: T) -> bool {
    a.f64().to_bits() == b.f64().to_bits() && a.is_poison() == b.is_poison()
}

/// Labels with every kind of row: valid, ignored (−1), C, −2, i64 extremes.
fn hostile_labels(c: usize) -> Vec<i64> {
    vec![0, -1, c as i64 - 1, c as i64, -2, 3, i64::MIN, i64::MAX]
}

fn expected_status(labels: &[i64], c: usize) -> Vec<i32> {
    labels
        .iter()
        .map(|&l| {
            if l == -1 {
                code::ROW_IGNORED
            } else if l >= 0 && (l as usize) < c {
                code::ROW_TARGET
            } else {
                code::ROW_BAD_LABEL
            }
        })
        .collect()
}

fn canaries<T: KernelFloat>(gpu: &Gpu, profile: &Profile) {
    let dt = T::DTYPE;
    // C = 7: rows start off the 16-byte grid, so the fused kernel's scalar head, vector body
    // and scalar tail are all exercised.
    let c = 7usize;
    let labels = hostile_labels(c);
    let n = labels.len();
    let p = params_as(&Params::new(1.0, 0.5, 0.0).with_scale(64.0), dt);
    let kp = KernelProfile::new(profile, &p, dt);
    let cos: Vec<f64> = (0..n * c)
        .map(|k| dt.round(((k * 37 % 101) as f64 / 50.0) - 1.0))
        .collect();
    let top: Vec<f64> = (0..n * c)
        .map(|k| dt.round(0.25 + k as f64 / 512.0))
        .collect();
    let want_status = expected_status(&labels, c);
    let canary_t = T::poison();
    let canary_i64 = 0x5a5a_5a5a_5a5a_5a5a_i64;
    let canary_i32 = 0x5a5a_5a5a_i32;
    let unwritten_i32 = -7i32;
    let same_i = |a: i32, b: i32| a == b;

    // Margin forward: in place; only valid rows' targets change.
    let mut logits = Guarded::new(gpu, &to_t::<T>(&cos), canary_t);
    let lab = Guarded::new(gpu, &labels, canary_i64);
    let mut status = Guarded::new(gpu, &vec![unwritten_i32; n], canary_i32);
    gpu.launch_margin_forward(
        &mut logits.view_mut(),
        &lab.view(),
        &mut status.view_mut(),
        n,
        c,
        &kp,
        None,
    )
    .expect("launch");
    let out = logits.read(gpu, "forward logits", same_bits::<T>);
    assert_eq!(lab.read(gpu, "labels", |a, b| a == b), labels);
    assert_eq!(status.read(gpu, "forward status", same_i), want_status);
    for i in 0..n {
        for j in 0..c {
            let k = i * c + j;
            let is_target = want_status[i] == code::ROW_TARGET && labels[i] == j as i64;
            if is_target {
                let want = margin::eval(cos[k], &p, profile, dt).out;
                let b = target_budget(cos[k], 1.0, &Params { s: 1.0, ..p }, profile, dt);
                assert!(
                    error_fraction(out[k].f64(), want, b.forward) <= 1.0,
                    "{profile} {dt}: forward target ({i}, {j})"
                );
            } else {
                assert_eq!(
                    out[k].f64().to_bits(),
                    cos[k].to_bits(),
                    "({i}, {j}) touched"
                );
            }
        }
    }

    // Margin backward: in place on the gradient.
    let cos_g = Guarded::new(gpu, &to_t::<T>(&cos), canary_t);
    let mut grad = Guarded::new(gpu, &to_t::<T>(&top), canary_t);
    let mut status = Guarded::new(gpu, &vec![unwritten_i32; n], canary_i32);
    gpu.launch_margin_backward(
        &cos_g.view(),
        &mut grad.view_mut(),
        &lab.view(),
        &mut status.view_mut(),
        n,
        c,
        &kp,
        None,
    )
    .expect("launch");
    let g = grad.read(gpu, "backward grad", same_bits::<T>);
    cos_g.read(gpu, "backward cos", same_bits::<T>);
    assert_eq!(status.read(gpu, "backward status", same_i), want_status);
    for i in 0..n {
        for j in 0..c {
            let k = i * c + j;
            if !(want_status[i] == code::ROW_TARGET && labels[i] == j as i64) {
                assert_eq!(g[k].f64().to_bits(), top[k].to_bits(), "({i}, {j}) touched");
            }
        }
    }

    // Fused: every output element poisoned before, written after; guards intact.
    let cos_f = Guarded::new(gpu, &to_t::<T>(&cos), canary_t);
    let mut n_valid = Guarded::new(gpu, &[-1i64], canary_i64);
    let mut gradf = Guarded::new(gpu, &vec![T::poison(); n * c], T::of(-3.0));
    let mut row_loss = Guarded::new(gpu, &vec![T::poison(); n], T::of(-3.0));
    let mut status = Guarded::new(gpu, &vec![unwritten_i32; n], canary_i32);
    let mut loss = Guarded::new(gpu, &[f64::poison()], -3.0f64);
    {
        let mut bufs = FusedBuffers {
            n_valid: n_valid.view_mut(),
            grad: gradf.view_mut(),
            row_loss: row_loss.view_mut(),
            status: status.view_mut(),
            loss: loss.view_mut(),
        };
        gpu.launch_fused(&cos_f.view(), &lab.view(), &mut bufs, n, c, &kp, None)
            .expect("launch");
    }
    let g = gradf.read(gpu, "fused grad", same_bits::<T>);
    let rl = row_loss.read(gpu, "fused row_loss", same_bits::<T>);
    let st = status.read(gpu, "fused status", same_i);
    let nv = n_valid.read(gpu, "fused n_valid", |a, b| a == b)[0];
    let l = loss.read(gpu, "fused loss", |a: f64, b: f64| {
        a.to_bits() == b.to_bits()
    })[0];
    cos_f.read(gpu, "fused cos", same_bits::<T>);
    assert_eq!(st, want_status);
    assert_eq!(
        nv,
        want_status
            .iter()
            .filter(|&&s| s == code::ROW_TARGET)
            .count() as i64
    );
    assert!(!l.is_poison() && l.is_finite(), "loss {l}");
    for (k, v) in g.iter().enumerate() {
        assert!(!v.is_poison(), "fused grad element {k} not written");
        let row = k / c;
        match want_status[row] {
            code::ROW_IGNORED => assert_eq!(v.f64(), 0.0, "ignored row {row}"),
            code::ROW_BAD_LABEL => assert!(v.f64().is_nan(), "bad-label row {row}"),
            _ => {}
        }
    }
    for (i, v) in rl.iter().enumerate() {
        assert!(!v.is_poison(), "row_loss {i} not written");
    }

    // The host API turns the first bad label into the reference's typed error.
    let err = gpu
        .margin_forward::<T>(&to_t(&cos), &labels, c, profile, &p)
        .expect_err("bad labels");
    let first_bad = want_status
        .iter()
        .position(|&s| s == code::ROW_BAD_LABEL)
        .unwrap();
    match err {
        device::CudaError::Input(Error::LabelOutOfRange { row, label, .. }) => {
            assert_eq!((row, label), (first_bad, labels[first_bad]))
        }
        other => panic!("expected LabelOutOfRange, got {other}"),
    }
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_guard_bands_and_poisoned_outputs() {
    let gpu = gpu("cuda_gpu::gpu_guard_bands_and_poisoned_outputs");
    for profile in [
        Profile::preset("caffe-gpu").unwrap(),
        Profile::preset("analytic").unwrap(),
        Profile::preset("recommended").unwrap(),
    ] {
        canaries::<f32>(&gpu, &profile);
        canaries::<f64>(&gpu, &profile);
    }
}

/// The guard check has teeth: a write into a margin is caught.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_guard_check_catches_an_overwrite() {
    let gpu = gpu("cuda_gpu::gpu_guard_check_catches_an_overwrite");
    let mut g = Guarded::new(&gpu, &[1.0f32, 2.0], f32::poison());
    let whole = g.buf.len();
    gpu.stream()
        .memcpy_htod(&[7.0f32], &mut g.buf.slice_mut(whole - 1..whole))
        .unwrap();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        g.read(&gpu, "teeth", same_bits::<f32>);
    }));
    assert!(caught.is_err(), "an overwritten guard went unnoticed");
}

// ---------------------------------------------------------------------------------------
// 6. The fused loss against the pipeline's f64 reference head (`pipeline::reference`: the
// cos-input form, VALID normalization, no probability floor) at the kernel's parameters.

/// The reference values the kernel's budget ([`fused_fractions`]) is written against.
struct FusedRef {
    /// Scaled logits z = s·margin(cos).
    z: Vec<f64>,
    lse: Vec<f64>,
    /// lse − z_y per row; 0 for ignored rows.
    row_loss: Vec<f64>,
    loss: f64,
    /// d loss / d cos.
    grad: Vec<f64>,
    /// d out / d c at each row's target (0 for ignored rows).
    factor_y: Vec<f64>,
    n_valid: usize,
}

fn fused_reference(
    cos: &[f64],
    labels: &[i64],
    c: usize,
    profile: &Profile,
    p: &Params,
    dt: Dtype,
) -> FusedRef {
    let n = labels.len();
    let cos_v = ArrayView2::from_shape((n, c), cos).unwrap();
    // norm_eps enters only the normalization of features and weights, not the head.
    let cfg = LossConfig::exact(*p, profile.clone(), dt, 0.0);
    let h = reference::head_forward(cos_v, labels, &cfg).unwrap();
    let hb = reference::head_backward(&h, labels, &cfg).unwrap();
    let unscaled = Params { s: 1.0, ..*p };
    let factor_y = h
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            t.map_or(0.0, |y| {
                margin::eval(cos[i * c + y], &unscaled, profile, dt).factor
            })
        })
        .collect();
    FusedRef {
        z: h.scaled_logits.iter().copied().collect(),
        row_loss: h.row_loss.iter().map(|l| l.unwrap_or(0.0)).collect(),
        loss: h.loss,
        grad: hb.d_cos.iter().copied().collect(),
        factor_y,
        n_valid: h.valid,
        lse: h.lse,
    }
}

/// Documented CUDA Math API errors (ulp): expf 2, exp 1; expm1f 1, expm1 1; logf 1, log 1.
const EXP_ULP: f64 = 2.0;
const EXPM1_ULP: f64 = 1.0;
const LOG_ULP: f64 = 1.0;

/// Worst fractions of the budget for the loss, the row losses and the gradient.
#[derive(Debug, Default, Clone, Copy)]
struct FusedFractions {
    loss: f64,
    row_loss: f64,
    grad: f64,
    worst_grad_at: (usize, usize),
}

/// The kernel's error budget, first order in u, following its algorithm: z rounded once;
/// per thread an online sum of ≤ n_seq terms, each carried through ≤ n_seq rescales and adds,
/// then 10 merge levels; every step errs by ≤ u·(range of z) (argument rounding) +
/// 2u·EXP_ULP (exp) + 2u (multiply, add).
#[allow(clippy::too_many_arguments)]
fn fused_fractions<T: KernelFloat>(
    out: &FusedOutput<T>,
    r: &FusedRef,
    cos: &[f64],
    labels: &[i64],
    c: usize,
    profile: &Profile,
    p: &Params,
) -> FusedFractions {
    let dt = T::DTYPE;
    let u = dt.unit_roundoff();
    let n = labels.len();
    let unscaled = Params { s: 1.0, ..*p };
    let width = 16 / std::mem::size_of::<T>();
    let per_thread = c.div_ceil(device::FUSED_THREADS as usize * width) * width + 2 * width;
    let depth = (per_thread + 11) as f64;
    let w = 1.0 / r.n_valid.max(1) as f64;
    let sw_rel = 3.0 * u;
    let mut f = FusedFractions::default();
    let mut loss_budget = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let y = match usize::try_from(label) {
            Ok(y) if y < c => y,
            _ => {
                // Ignored row: loss and gradient exactly 0.
                let bad = out.row_loss[i].f64() != 0.0
                    || out.grad[i * c..(i + 1) * c].iter().any(|g| g.f64() != 0.0);
                if bad {
                    f.row_loss = f64::INFINITY;
                }
                continue;
            }
        };
        let row = &r.z[i * c..(i + 1) * c];
        let k = i * c + y;
        let by = target_budget(cos[k], 1.0, p, profile, dt).forward;
        let bf = target_budget(cos[k], 1.0, &unscaled, profile, dt).backward;
        let (zmin, zmax) = row
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &z| {
                (a.min(z), b.max(z))
            });
        let dz = row
            .iter()
            .enumerate()
            .map(|(j, &z)| if j == y { by } else { u * z.abs() })
            .fold(0.0, f64::max);
        let step = u * (zmax - zmin) + 2.0 * u * EXP_ULP + 2.0 * u;
        let ln_d = r.lse[i] - zmax;
        let dlse = dz + depth * step + 2.0 * u * LOG_ULP * ln_d.abs() + u * r.lse[i].abs();
        let b_row = dlse + by + u * r.row_loss[i].abs();
        loss_budget += b_row;
        f.row_loss = f
            .row_loss
            .max(error_fraction(out.row_loss[i].f64(), r.row_loss[i], b_row));
        for j in 0..c {
            let kk = i * c + j;
            let want = r.grad[kk];
            let b = if j == y {
                let a = row[y] - r.lse[i];
                let q = a.exp_m1();
                let dq = a.exp() * (dlse + by + u * a.abs()) + 2.0 * u * EXPM1_ULP * q.abs();
                let fy = r.factor_y[i];
                p.s * w * (fy.abs() * dq + q.abs() * bf) + want.abs() * (sw_rel + 2.0 * u)
            } else {
                let rel =
                    u * row[j].abs() + dlse + u * (row[j] - r.lse[i]).abs() + 2.0 * u * EXP_ULP;
                want.abs() * (rel + sw_rel + u)
            };
            // Underflow: in the subnormal range exp errs by up to EXP_ULP subnormal spacings
            // (then multiplied by s·w), and the product rounds by one more.
            let b = b + (EXP_ULP * p.s * w + 1.0) * dt.ulp(0.0);
            let fr = error_fraction(out.grad[kk].f64(), want, b);
            if fr > f.grad {
                f.grad = fr;
                f.worst_grad_at = (i, j);
            }
        }
    }
    let b_loss = loss_budget * w + 4.0 * f64::EPSILON * r.loss.abs() * n as f64;
    f.loss = error_fraction(out.loss, r.loss, b_loss);
    f
}

/// Inputs for one fused case: cos uniform on [−1, 1], the target at an edge value, every
/// fifth row ignored, and the largest non-target logit at a row end in two rows of three.
fn fused_inputs(n: usize, c: usize, seed: u64, dt: Dtype) -> (Vec<f64>, Vec<i64>) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut cos: Vec<f64> = (0..n * c).map(|_| dt.round(2.0 * next() - 1.0)).collect();
    // Not c = +1: with a raw domain its factor is +inf, and where the target dominates the
    // row, p_y − 1 is below T's resolution, so T gives 0·inf = NaN where f64 gives −inf.
    // Poles are the layer tests' business; c = −1 (p_y ≈ 0, factor finite or −inf) stays.
    let edges = [0.9999, -1.0, 0.0, 0.999, -0.999, 0.5];
    let labels: Vec<i64> = (0..n)
        .map(|i| {
            if i % 5 == 4 {
                -1
            } else {
                ((next() * c as f64) as usize).min(c - 1) as i64
            }
        })
        .collect();
    for (i, &l) in labels.iter().enumerate() {
        // The row's largest logit at its last or first element (scalar tail or head when the
        // row is off the 16-byte grid), so that losing either shows in the loss.
        match i % 3 {
            1 => cos[(i + 1) * c - 1] = dt.round(0.9999),
            2 => cos[i * c] = dt.round(0.9999),
            _ => {}
        }
        if l >= 0 {
            cos[i * c + l as usize] = dt.round(edges[i % edges.len()]);
        }
    }
    (cos, labels)
}

fn fused_case<T: KernelFloat>(
    gpu: &Gpu,
    profile: &Profile,
    n: usize,
    c: usize,
    seed: u64,
) -> Result<FusedFractions, String> {
    let dt = T::DTYPE;
    let p = params_as(&Params::new(1.0, 0.5, 0.0).with_scale(64.0), dt);
    let (cos, labels) = fused_inputs(n, c, seed, dt);
    let out = gpu
        .fused::<T>(&to_t(&cos), &labels, c, profile, &p)
        .map_err(|e| e.to_string())?;
    let again = gpu
        .fused::<T>(&to_t(&cos), &labels, c, profile, &p)
        .map_err(|e| e.to_string())?;
    if out.loss.to_bits() != again.loss.to_bits()
        || out
            .grad
            .iter()
            .zip(&again.grad)
            .any(|(a, b)| !same_bits(*a, *b))
    {
        return Err(format!("{profile} {dt} [{n}, {c}]: two runs differ"));
    }
    let r = fused_reference(&cos, &labels, c, profile, &p, dt);
    if out.n_valid != r.n_valid as i64 {
        return Err(format!("n_valid {} vs {}", out.n_valid, r.n_valid));
    }
    let f = fused_fractions(&out, &r, &cos, &labels, c, profile, &p);
    if f.loss > 1.0 || f.row_loss > 1.0 || f.grad > 1.0 {
        return Err(format!("{profile} {dt} [{n}, {c}]: {f:?}"));
    }
    Ok(f)
}

/// The columns of a fused-fractions table (the GPU test's and the emulation's).
fn fractions_header(first: &str) -> String {
    format!(
        "{first:<18} {:>12} {:>9} {:>9} {:>9}",
        "[N, C]", "loss", "row loss", "grad"
    )
}

fn fractions_row(profile: &Profile, n: usize, c: usize, f: &FusedFractions) -> String {
    format!(
        "{:<18} {:>12} {:>9.4} {:>9.4} {:>9.4}",
        profile.name,
        format!("[{n}, {c}]"),
        f.loss,
        f.row_loss,
        f.grad
    )
}

/// Shapes: one class; rows off the 16-byte grid (odd C) with head and tail; many classes.
const FUSED_SHAPES: [(usize, usize); 5] = [(1, 1), (5, 7), (9, 1000), (6, 4099), (3, 65_537)];

fn fused_every_preset<T: KernelFloat>(test: &str) {
    let gpu = gpu(test);
    let mut lines = vec![format!(
        "\nGPU fused loss vs the pipeline reference ({}), worst fraction of budget\n{}",
        T::DTYPE,
        fractions_header("preset")
    )];
    let mut failures = Vec::new();
    for profile in Profile::presets() {
        for (k, &(n, c)) in FUSED_SHAPES.iter().enumerate() {
            match fused_case::<T>(&gpu, &profile, n, c, 17 + k as u64) {
                Ok(f) => lines.push(fractions_row(&profile, n, c, &f)),
                Err(e) => failures.push(e),
            }
        }
    }
    say(&lines.join("\n"));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_fused_f32_matches_reference() {
    fused_every_preset::<f32>("cuda_gpu::gpu_fused_f32_matches_reference");
}

#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_fused_f64_matches_reference() {
    fused_every_preset::<f64>("cuda_gpu::gpu_fused_f64_matches_reference");
}

/// The fused comparison has teeth: the kernel's output is rejected against a reference with a
/// wrong margin (φ clamped to 0), and against one normalized by N instead of the valid rows.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_fused_check_rejects_wrong_references() {
    let gpu = gpu("cuda_gpu::gpu_fused_check_rejects_wrong_references");
    let dt = Dtype::F32;
    let profile = Profile::preset("recommended").unwrap();
    let p = params_as(&Params::new(1.0, 0.5, 0.0).with_scale(64.0), dt);
    let (n, c) = (10, 1000);
    let (cos, labels) = fused_inputs(n, c, 5, dt);
    let out = gpu
        .fused::<f32>(&to_t(&cos), &labels, c, &profile, &p)
        .unwrap();
    let right = fused_reference(&cos, &labels, c, &profile, &p, dt);
    let f = fused_fractions(&out, &right, &cos, &labels, c, &profile, &p);
    assert!(f.loss <= 1.0 && f.row_loss <= 1.0 && f.grad <= 1.0, "{f:?}");

    let mut wrong_margin = profile.clone();
    wrong_margin.angle = combined_margin::profile::AnglePolicy::Clamp { lo: 0.0, hi: 0.0 };
    let wrong = fused_reference(&cos, &labels, c, &wrong_margin, &p, dt);
    let f = fused_fractions(&out, &wrong, &cos, &labels, c, &profile, &p);
    assert!(f.loss > 1.0 && f.row_loss > 1.0, "{f:?}");

    let mut by_n = right;
    let scale = by_n.n_valid as f64 / n as f64;
    by_n.grad.iter_mut().for_each(|g| *g *= scale);
    let f = fused_fractions(&out, &by_n, &cos, &labels, c, &profile, &p);
    assert!(f.grad > 1.0, "{f:?}");
}

// ---------------------------------------------------------------------------------------
// The bandwidth benchmark (scripts/gpu-check.sh runs it; `--ignored --exact`).

#[test]
#[ignore = "needs a CUDA GPU (benchmark): scripts/gpu-check.sh runs it"]
fn bench_fused_bandwidth() {
    let gpu = gpu("cuda_gpu::bench_fused_bandwidth");
    let (n, c) = (512usize, 360_000usize);
    let iters = 20;
    let dt = Dtype::F32;
    let profile = Profile::preset("recommended").unwrap();
    let p = params_as(&Params::new(1.0, 0.5, 0.0).with_scale(64.0), dt);
    let kp = KernelProfile::new(&profile, &p, dt);
    let (cos, labels) = fused_inputs(n, c, 99, dt);
    let cos_t: Vec<f32> = to_t(&cos);
    let d_cos = gpu.upload(&cos_t).unwrap();
    let d_labels = gpu.upload(&labels).unwrap();
    let mut owned = device::FusedOwned::<f32>::new(&gpu, n, c).unwrap();
    let mut d_copy = gpu.upload(&vec![0f32; n * c]).unwrap();
    let stream = gpu.stream().clone();
    let ctx = gpu.context().clone();
    let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);

    let time = |f: &mut dyn FnMut()| -> f64 {
        for _ in 0..3 {
            f();
        }
        let start = ctx.new_event(timing).unwrap();
        let end = ctx.new_event(timing).unwrap();
        start.record(&stream).unwrap();
        for _ in 0..iters {
            f();
        }
        end.record(&stream).unwrap();
        start.elapsed_ms(&end).unwrap() as f64 / iters as f64
    };
    let fused_ms = time(&mut || {
        gpu.launch_fused(
            &d_cos.as_view(),
            &d_labels.as_view(),
            &mut owned.buffers(),
            n,
            c,
            &kp,
            None,
        )
        .unwrap()
    });
    let copy_ms = time(&mut || stream.memcpy_dtod(&d_cos, &mut d_copy).unwrap());

    // A sanity check of the benchmarked output on a few rows (the full f64 reference of
    // 184 M entries is left to the tests above at smaller C).
    let grad = gpu.download(&owned.grad).unwrap();
    let row_loss = gpu.download(&owned.row_loss).unwrap();
    for i in [0usize, 1, 2, 3] {
        let rows = &cos[i * c..(i + 1) * c];
        let r = fused_reference(rows, &labels[i..i + 1], c, &profile, &p, dt);
        if labels[i] >= 0 {
            let rel = (row_loss[i] as f64 - r.row_loss[0]).abs() / r.row_loss[0].abs().max(1.0);
            assert!(
                rel < 1e-3,
                "row {i}: loss {} vs {}",
                row_loss[i],
                r.row_loss[0]
            );
            let j = (labels[i] as usize + 1) % c;
            // r normalizes by its one row; the kernel by all valid rows.
            let (got, want) = (grad[i * c + j] as f64, r.grad[j]);
            let nv = labels.iter().filter(|&&l| l >= 0).count() as f64;
            assert!(
                (got * nv - want).abs() <= 1e-3 * want.abs() + 1e-30,
                "row {i} col {j}"
            );
        }
    }

    let bytes = (n * c * std::mem::size_of::<f32>()) as f64;
    let fused_bytes = 3.0 * bytes; // two reads and one write of the row
    let copy_bytes = 2.0 * bytes; // one read, one write
    let gbs = |b: f64, ms: f64| b / (ms * 1e-3) / 1e9;
    say(&format!(
        "\nfused margin + softmax CE, N = {n}, C = {c}, f32, {iters} iterations after 3 warm-ups ({})\n\
         {:<30} {:>10} {:>14} {:>12}\n\
         {:<30} {:>10.3} {:>14.1} {:>12.1}\n\
         {:<30} {:>10.3} {:>14.1} {:>12.1}\n\
         fused / copy time = {:.3} (floor for 2 reads + 1 write vs 1 read + 1 write: 1.5)",
        gpu.name,
        "kernel",
        "ms/iter",
        "bytes moved MB",
        "GB/s",
        "fused (count + fused + mean)",
        fused_ms,
        fused_bytes / 1e6,
        gbs(fused_bytes, fused_ms),
        "device-to-device copy",
        copy_ms,
        copy_bytes / 1e6,
        gbs(copy_bytes, copy_ms),
        fused_ms / copy_ms
    ));
}

// ---------------------------------------------------------------------------------------
// The fused budget, checked on the host (no GPU): an emulation of cm_fused's arithmetic in T
// (the same partition of the row over 512 threads, the same online updates, the same merge
// tree, the header's host build for the target, libm's exp/ln/exp_m1) must pass the budget
// the GPU test applies, so that a correct kernel cannot fail it for the budget's sake; and
// the emulation with its tail dropped must not.

/// cm_fused's arithmetic on one row, in T, with the row starting `phase` elements past a
/// 16-byte boundary. Returns (row loss, gradient row).
#[allow(clippy::too_many_arguments)]
fn emulate_row<T>(
    x: &[T],
    y: usize,
    kp: &KernelProfile,
    n_valid: usize,
    phase: usize,
    drop_tail: bool,
) -> (T, Vec<T>)
where
    T: KernelFloat + HostEval + num_traits::Float,
{
    let c = x.len();
    let nt = device::FUSED_THREADS as usize;
    let w = 16 / std::mem::size_of::<T>();
    let s = T::of(kp.s);
    let e = T::host_eval(x[y], kp);
    let (zt, ft) = (s * e.out, e.factor);
    let z = |j: usize| if j == y { zt } else { s * x[j] };
    let head = if phase == 0 { 0 } else { (w - phase).min(c) };
    let nvec = (c - head) / w;
    let tail = head + nvec * w;
    // Per thread, in the kernel's order: head scalars, its vectors, tail scalars.
    let mut states = vec![(T::neg_infinity(), T::zero()); nt];
    let push = |a: &mut (T, T), zv: T| {
        if zv > a.0 {
            a.1 = a.1 * (a.0 - zv).exp() + T::one();
            a.0 = zv;
        } else {
            a.1 = a.1 + (zv - a.0).exp();
        }
    };
    for (t, a) in states.iter_mut().enumerate() {
        for j in (t..head).step_by(nt) {
            push(a, z(j));
        }
        for v in (t..nvec).step_by(nt) {
            for k in 0..w {
                push(a, z(head + v * w + k));
            }
        }
        if !drop_tail {
            for j in (tail + t..c).step_by(nt) {
                push(a, z(j));
            }
        }
    }
    let merge = |a: (T, T), b: (T, T)| -> (T, T) {
        if b.1 == T::zero() {
            return a;
        }
        if a.1 == T::zero() {
            return b;
        }
        let (a, b) = if b.0 > a.0 { (b, a) } else { (a, b) };
        (a.0, a.1 + b.1 * (b.0 - a.0).exp())
    };
    // __shfl_down_sync tree within each warp (lane l takes lane l + off), then warp 0 over
    // the warp leaders.
    let warp_reduce = |lanes: &mut [(T, T)]| {
        let mut off = 16;
        while off > 0 {
            let prev = lanes.to_vec();
            for l in 0..32 {
                let src = if l + off < 32 { prev[l + off] } else { prev[l] };
                lanes[l] = merge(prev[l], src);
            }
            off /= 2;
        }
        lanes[0]
    };
    let mut leaders: Vec<(T, T)> = states.chunks_mut(32).map(warp_reduce).collect();
    leaders.resize(32, (T::neg_infinity(), T::zero()));
    let (m, d) = warp_reduce(&mut leaders);
    let lse = m + d.ln();
    let sw = s * (T::one() / T::of(n_valid.max(1) as f64));
    let gt = (zt - lse).exp_m1() * sw * ft;
    let g = (0..c)
        .map(|j| {
            if j == y {
                gt
            } else {
                (s * x[j] - lse).exp() * sw
            }
        })
        .collect();
    (lse - zt, g)
}

fn emulate_fused<T>(
    cos: &[f64],
    labels: &[i64],
    c: usize,
    profile: &Profile,
    p: &Params,
    drop_tail: bool,
) -> FusedOutput<T>
where
    T: KernelFloat + HostEval + num_traits::Float,
{
    let kp = KernelProfile::new(profile, p, T::DTYPE);
    let n = labels.len();
    let n_valid = labels
        .iter()
        .filter(|&&l| l >= 0 && (l as usize) < c)
        .count();
    let x: Vec<T> = to_t(cos);
    let mut out = FusedOutput {
        loss: 0.0,
        n_valid: n_valid as i64,
        row_loss: vec![T::zero(); n],
        grad: vec![T::zero(); n * c],
    };
    let mut sum = 0.0;
    for i in 0..n {
        let Some(y) = usize::try_from(labels[i]).ok().filter(|&y| y < c) else {
            continue;
        };
        let phase = (i * c) % (16 / std::mem::size_of::<T>());
        let (l, g) = emulate_row(&x[i * c..(i + 1) * c], y, &kp, n_valid, phase, drop_tail);
        out.row_loss[i] = l;
        out.grad[i * c..(i + 1) * c].copy_from_slice(&g);
        sum += l.f64();
    }
    out.loss = sum / n_valid.max(1) as f64;
    out
}

fn budget_admits_emulation<T>() -> Vec<String>
where
    T: KernelFloat + HostEval + num_traits::Float,
{
    let dt = T::DTYPE;
    let p = params_as(&Params::new(1.0, 0.5, 0.0).with_scale(64.0), dt);
    let mut lines = Vec::new();
    for profile in Profile::presets() {
        for (k, &(n, c)) in FUSED_SHAPES.iter().enumerate() {
            let (cos, labels) = fused_inputs(n, c, 17 + k as u64, dt);
            let r = fused_reference(&cos, &labels, c, &profile, &p, dt);
            let em = emulate_fused::<T>(&cos, &labels, c, &profile, &p, false);
            let f = fused_fractions(&em, &r, &cos, &labels, c, &profile, &p);
            assert!(
                f.loss <= 1.0 && f.row_loss <= 1.0 && f.grad <= 1.0,
                "{profile} {dt} [{n}, {c}]: the budget rejects the emulation: {f:?}"
            );
            lines.push(fractions_row(&profile, n, c, &f));
        }
    }
    // Teeth: a kernel that drops the scalar tail of each row is rejected. One row of 4099
    // on the 16-byte grid: its last element (the largest logit) is in the scalar tail for
    // both widths (4099 = 4·1024 + 3 = 2·2049 + 1).
    let profile = Profile::preset("recommended").unwrap();
    let c = 4099;
    let (mut cos, _) = fused_inputs(1, c, 3, dt);
    cos[c - 1] = dt.round(0.9999);
    let labels = [0i64];
    let r = fused_reference(&cos, &labels, c, &profile, &p, dt);
    let bad = emulate_fused::<T>(&cos, &labels, c, &profile, &p, true);
    let f = fused_fractions(&bad, &r, &cos, &labels, c, &profile, &p);
    assert!(f.row_loss > 1.0, "{dt}: a dropped tail passes: {f:?}");
    lines
}

#[test]
fn fused_budget_admits_an_emulation_of_the_kernel() {
    let mut lines = vec![format!(
        "\nhost emulation of cm_fused vs f64 reference, worst fraction of the GPU test's budget\n{}",
        fractions_header("preset (f32)")
    )];
    lines.extend(budget_admits_emulation::<f32>());
    lines.push(fractions_header("preset (f64)"));
    lines.extend(budget_admits_emulation::<f64>());
    say(&lines.join("\n"));
}

/// `cm_subcenter_max_*` and `cm_subcenter_backward_*` on the device are `layer::subcenter_max`
/// and `subcenter_backward` bit for bit (values, arg-max, gradient), ties to the first index
/// and NaN winning included.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_subcenter_max_matches_layer() {
    fn run<T: HostEval>(gpu: &Gpu) {
        for k in [1usize, 2, 3, 5] {
            let cells = 1000;
            // The host test's cells: ties, signed zeros, infinities, NaN payloads.
            let cos_t: Vec<T> = crate::cuda_host::subcenter_input(cells, k, 31 * k as u64);
            let wide: Vec<f64> = cos_t.iter().map(|x| x.f64()).collect();
            let (max, arg) = gpu.subcenter_max(&cos_t, k).unwrap();
            let (want, want_arg) = layer::subcenter_max(&wide, 1, cells, k).unwrap();
            assert_eq!(arg, want_arg, "{} K = {k}: arg-max", T::DTYPE);
            for (i, (m, w)) in max.iter().zip(&want).enumerate() {
                assert!(
                    m.f64().to_bits() == w.to_bits() || (m.f64().is_nan() && w.is_nan()),
                    "{} K = {k}, cell {i}: {m:?} against {w}",
                    T::DTYPE
                );
            }
            // The backward (`cm_subcenter_backward_*`): each cell's gradient to its arg-max.
            let d: Vec<T> = crate::cuda_host::subcenter_input(cells, 1, 97 * k as u64);
            let d_wide: Vec<f64> = d.iter().map(|x| x.f64()).collect();
            let grad = gpu.subcenter_backward(&d, &arg, k).unwrap();
            let want = layer::subcenter_backward(&d_wide, &want_arg, k).unwrap();
            for (i, (g, w)) in grad.iter().zip(&want).enumerate() {
                assert!(
                    g.f64().to_bits() == w.to_bits() || (g.f64().is_nan() && w.is_nan()),
                    "{} K = {k}, backward entry {i}: {g:?} against {w}",
                    T::DTYPE
                );
            }
        }
        // Bad input is an error before any launch: an arg that is no sub-centre, K = 0.
        let one = [T::of(1.0)];
        assert!(gpu.subcenter_backward(&one, &[3], 3).is_err());
        assert!(gpu.subcenter_backward(&one, &[0, 0], 3).is_err());
        assert!(gpu.subcenter_max(&one, 0).is_err());
    }
    let g = gpu("cuda_gpu::gpu_subcenter_max_matches_layer");
    run::<f32>(&g);
    run::<f64>(&g);
}

/// Per-row parameters on the device (`Gpu::margin_forward_rows` / `margin_backward_rows`):
/// each row's target agrees with the reference at that row's parameters within the budget,
/// for the host test's 33 rows (negative m2 included) under every preset.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_per_row_params_match_reference() {
    fn run<T: KernelFloat>(gpu: &Gpu) {
        let dt = T::DTYPE;
        let rows = crate::cuda_host::per_row_params(dt);
        let (n, c) = (rows.len(), 7usize);
        let labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
        let cos: Vec<f64> = (0..n * c)
            .map(|k| dt.round(((k * 7919) % 2001) as f64 / 1000.0 - 1.0))
            .collect();
        let top = vec![1.0; n * c];
        for profile in Profile::presets() {
            let out = gpu
                .margin_forward_rows(&to_t::<T>(&cos), &labels, c, &profile, &rows)
                .expect("forward");
            let grad = gpu
                .margin_backward_rows(
                    &to_t::<T>(&cos),
                    &labels,
                    &to_t::<T>(&top),
                    c,
                    &profile,
                    &rows,
                )
                .expect("backward");
            for (i, p) in rows.iter().enumerate() {
                let k = i * c + labels[i] as usize;
                let want = margin::eval(cos[k], p, &profile, dt);
                let b = target_budget(cos[k], 1.0, p, &profile, dt);
                assert!(
                    error_fraction(out[k].f64(), want.out, b.forward) <= 1.0
                        && error_fraction(grad[k].f64(), want.factor, b.backward) <= 1.0,
                    "{profile} {dt} row {i} ({p}), c = {}: ({:?}, {:?}) against ({}, {})",
                    cos[k],
                    out[k],
                    grad[k],
                    want.out,
                    want.factor
                );
            }
        }
    }
    let g = gpu("cuda_gpu::gpu_per_row_params_match_reference");
    run::<f32>(&g);
    run::<f64>(&g);
}

/// The modulated margin layer on the device (`cm_curricular_*`, `cm_intertopk_*`, through
/// `Gpu::margin_forward_modulated` / `margin_backward_modulated`) against the reference: each
/// row checked by `cuda_host::check_modulated_row` (the reference's plan, either side inside
/// its tie band, every value within budget), every preset, f32 and f64, with scalar and
/// per-row parameters.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_modulated_layer_matches_reference() {
    use crate::cuda_host::{check_modulated_row, per_row_params, topk_rows, ModulatedRow};
    use combined_margin::compare::Reference;
    use combined_margin::modulation::{
        Curricular, CurricularGradient, CurricularMask, InterTopK, Modulation,
    };
    fn run<T: KernelFloat>(gpu: &Gpu) -> (u64, Vec<String>) {
        let dt = T::DTYPE;
        let c = 9usize;
        let rows_p = per_row_params(dt);
        let n = rows_p.len();
        let pool: Vec<f64> = (0..=100)
            .map(|k| dt.round(-1.0 + k as f64 / 50.0))
            .collect();
        let cos: Vec<f64> = topk_rows(&pool, n, c, 0x5eed).concat();
        let labels: Vec<i64> = (0..n).map(|i| (i % c) as i64).collect();
        let ones = vec![T::of(1.0); n * c];
        let mods = [
            Modulation::Curricular(Curricular {
                t: dt.round(0.3),
                t_other: None,
                mask: CurricularMask::MarginBranch,
                gradient: CurricularGradient::Full,
            }),
            Modulation::InterTopK(InterTopK {
                k: 3,
                m: 0.06,
                active: true,
            }),
            Modulation::InterTopK(InterTopK {
                k: 2,
                m: 0.2,
                active: false,
            }),
            Modulation::InterTopK(InterTopK {
                k: c + 1,
                m: 0.1,
                active: true,
            }),
        ];
        let scalar = params_as(&Params::new(1.0, 0.5, 0.0), dt);
        let (mut entries, mut failures) = (0u64, Vec::new());
        for profile in Profile::presets() {
            for m in &mods {
                for per_row in [false, true] {
                    let rows = per_row.then_some(rows_p.as_slice());
                    let x = to_t::<T>(&cos);
                    let fwd =
                        gpu.margin_forward_modulated(&x, &labels, c, &profile, &scalar, rows, m);
                    let bwd = gpu.margin_backward_modulated(
                        &x, &labels, &ones, c, &profile, &scalar, rows, m,
                    );
                    let (out, grad) = match (fwd, bwd) {
                        (Ok(o), Ok(g)) => (o, g),
                        (f, b) => {
                            failures.push(format!("{profile} {dt}: {:?} / {:?}", f.err(), b.err()));
                            continue;
                        }
                    };
                    let wide = |v: &[T]| v.iter().map(|x| x.f64()).collect::<Vec<f64>>();
                    for i in 0..n {
                        let p = if per_row { rows_p[i] } else { scalar };
                        let r = Reference::new(&profile, &p, dt);
                        let span = i * c..(i + 1) * c;
                        let seen = ModulatedRow {
                            row: &cos[span.clone()],
                            y: labels[i] as usize,
                            out: &wide(&out[span.clone()]),
                            factor: &wide(&grad[span]),
                            top: None,
                        };
                        entries += c as u64;
                        for e in check_modulated_row(&r, m, &seen) {
                            failures.push(format!(
                                "{profile} {dt} {} (per-row {per_row}, {p}): {e}",
                                m.describe()
                            ));
                        }
                    }
                }
            }
        }
        (entries, failures)
    }
    let g = gpu("cuda_gpu::gpu_modulated_layer_matches_reference");
    for (dt, (entries, failures)) in [("f32", run::<f32>(&g)), ("f64", run::<f64>(&g))] {
        say(&format!(
            "cuda_gpu: modulated layer {dt}: {entries} entries, {} failures",
            failures.len()
        ));
        assert!(
            failures.is_empty(),
            "{} failures:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
    }
}

/// Per-row margins in the fused loss (`Gpu::fused_rows`): row i of a batch with per-row
/// parameters is, bit for bit, row i of the scalar fused loss of the same batch at row i's
/// parameters (the same block computation: the per-row constants are `KernelProfile::new`'s at
/// that row), the scalar path being checked against the reference by
/// `gpu_fused_*_matches_reference`. Rows with different s are refused.
#[test]
#[ignore = "needs a CUDA GPU: scripts/gpu-check.sh runs it with --include-ignored"]
fn gpu_fused_per_row_params_match_scalar_rows() {
    fn run<T: KernelFloat>(gpu: &Gpu) {
        let dt = T::DTYPE;
        let rows = crate::cuda_host::per_row_params(dt);
        let (n, c) = (rows.len(), 37usize);
        let (cos, labels) = fused_inputs(n, c, 5, dt);
        let x = to_t::<T>(&cos);
        for profile in Profile::presets() {
            let got = match gpu.fused_rows(&x, &labels, c, &profile, &rows) {
                Ok(o) => o,
                // The fused kernel refuses profiles that transform non-targets, as `fused`.
                Err(e) => {
                    let p = rows[0];
                    assert!(
                        gpu.fused(&x, &labels, c, &profile, &p).is_err(),
                        "{profile}: {e}"
                    );
                    continue;
                }
            };
            for (i, p) in rows.iter().enumerate() {
                let want = gpu
                    .fused(&x, &labels, c, &profile, p)
                    .expect("scalar fused");
                let span = i * c..(i + 1) * c;
                assert!(
                    same_bits(got.row_loss[i], want.row_loss[i])
                        && got.grad[span.clone()]
                            .iter()
                            .zip(&want.grad[span])
                            .all(|(a, b)| same_bits(*a, *b)),
                    "{profile} {dt} row {i} ({p}): per-row and scalar differ"
                );
            }
        }
        let mut mixed = rows.clone();
        mixed[1].s = mixed[0].s * 2.0;
        let profile = Profile::preset("analytic").unwrap();
        assert!(gpu.fused_rows(&x, &labels, c, &profile, &mixed).is_err());
    }
    let g = gpu("cuda_gpu::gpu_fused_per_row_params_match_scalar_rows");
    run::<f32>(&g);
    run::<f64>(&g);
}
