//! `cmargin loss`: the loss and its breakdown, for given inputs (.npz) or synthetic
//! random-initialization inputs, with the closed-form random-init estimate (SPEC.md §8.6).
//!
//! `--input` is read by [`combined_margin::fixture::loss_input`] (the crate's one
//! limit-checked `.npz` reader); the `params`, `s` and `profile` a fixture records are used
//! (a flag that disagrees is refused). Values print with 17 significant digits (enough to tell any two f64 apart).

use combined_margin::fixture::loss_input::{read_loss_input, Arrays};
use combined_margin::fixture::Limits;
use combined_margin::pipeline::{estimate, fused, reference, synthetic, LossConfig};
use combined_margin::{Dtype, Params, Profile};
use ndarray::{Array2, ArrayView2};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Margin when neither `--params` nor the input file gives one.
const DEFAULT_PARAMS: [f64; 3] = [1.0, 0.3, 0.2];
/// Scale when neither `--scale` nor the input file gives one.
const DEFAULT_SCALE: f64 = 64.0;
/// Profile when neither `--profile` nor the input file gives one.
const DEFAULT_PROFILE: &str = "recommended";

#[derive(clap::Args)]
pub struct Args {
    /// An .npz with `features` [N, D], `weights` [C, D] and `labels` [N], or `cos` [N, C] and
    /// `labels` [N] (float32 or float64; labels int32/int64, -1 = ignore). A fixture's
    /// `params` [3], `s` [] and `profile` are used (a disagreeing flag is refused).
    #[arg(long, conflicts_with = "synthetic")]
    input: Option<PathBuf>,
    /// Random-initialization inputs: features and weights from isotropic normals, normalized.
    #[arg(long)]
    synthetic: bool,
    /// Synthetic batch size N.
    #[arg(long, default_value_t = 128)]
    n: usize,
    /// Synthetic number of classes C.
    #[arg(long, default_value_t = 180_855)]
    c: usize,
    /// Synthetic feature dimension D.
    #[arg(long, default_value_t = 512)]
    d: usize,
    /// Synthetic RNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Margin "m1,m2,m3" (default: the input file's `params`, else 1,0.3,0.2).
    #[arg(long, allow_hyphen_values = true)]
    params: Option<String>,
    /// Logit scale s (default: the input file's `s`, else 64).
    #[arg(long, allow_negative_numbers = true)]
    scale: Option<f64>,
    /// Numerics profile, a preset name (default: the input file's `profile`, else recommended).
    #[arg(long)]
    profile: Option<String>,
    /// eps of the normalization y = x / sqrt(|x|² + eps) for .npz features/weights.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    norm_eps: f64,
}

struct Inputs {
    what: String,
    cos: Array2<f64>,
    labels: Vec<i64>,
    d: Option<usize>,
    /// ‖d loss / d x‖ and ‖d loss / d w‖ (Frobenius) where features and weights were given.
    feature_grads: Option<(f64, f64)>,
}

/// Equal as given, or equal once both are rounded to f32 (a float32 `params` array).
fn same(a: f64, b: f64) -> bool {
    a == b || (a as f32) == (b as f32)
}

/// One setting from the flag, the file, or the default; a flag that disagrees with the file
/// is refused (exit 2): the fixture's outputs were computed with the file's value.
fn resolve<T: Clone>(
    flag: Option<(T, &str)>,
    file: Option<T>,
    default: T,
    agree: impl Fn(&T, &T) -> bool,
    conflict: impl Fn(&T, &str) -> String,
) -> Result<(T, &'static str), String> {
    match (flag, file) {
        (Some((f, text)), Some(v)) => {
            if agree(&f, &v) {
                Ok((f, "flag, same as the file"))
            } else {
                Err(conflict(&v, text))
            }
        }
        (Some((f, _)), None) => Ok((f, "flag")),
        (None, Some(v)) => Ok((v, "file")),
        (None, None) => Ok((default, "default")),
    }
}

fn parse_params(text: &str) -> Result<[f64; 3], String> {
    let m: Vec<f64> = text
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--params {text:?}: {e}"))?;
    match m.as_slice() {
        [a, b, c] => Ok([*a, *b, *c]),
        _ => Err(format!(
            "--params {text:?}: expected three numbers m1,m2,m3"
        )),
    }
}

/// The reference forward from features and weights: cos, and the Frobenius norms of
/// d loss / d features and d loss / d weights (the weight gradient `cfg` asks for).
fn features_pass(
    x: ArrayView2<f64>,
    w: ArrayView2<f64>,
    labels: &[i64],
    cfg: &LossConfig,
) -> combined_margin::Result<(Array2<f64>, (f64, f64))> {
    let f = reference::forward(x, w, labels, cfg)?;
    let b = reference::backward(&f, labels, cfg)?;
    let norms = (
        norm(b.d_features.iter().copied()),
        norm(b.d_weights.iter().copied()),
    );
    Ok((f.head.cos, norms))
}

/// ‖v‖₂ of a flat array, scaled against overflow.
fn norm(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let big = v.clone().fold(0.0f64, |a, x| a.max(x.abs()));
    if big == 0.0 || !big.is_finite() {
        return big;
    }
    big * v.map(|x| (x / big) * (x / big)).sum::<f64>().sqrt()
}

/// A number for people: positional decimals (`47.91526067841412`) with the shortest digit
/// string that reads back as the same f64 (so every digit that tells two f64 apart is there:
/// SPEC.md §8.6's figures compare to other implementations' f64 results digit for digit);
/// the exponent form (`1.25e-7`, again the shortest that round-trips) only where positional
/// would be long: |v| < 1e-4 or |v| ≥ 1e16.
pub(crate) fn decimal(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e16).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let file = match (&a.input, a.synthetic) {
        (Some(path), _) => Some((
            path.display().to_string(),
            read_loss_input(path, Limits::default()).map_err(|e| e.to_string())?,
        )),
        (None, true) => None,
        (None, false) => return Err("give --input FILE.npz or --synthetic".into()),
    };
    let label = file.as_ref().map_or("", |(l, _)| l.as_str());
    let fi = file.as_ref().map(|(_, f)| f);
    let flag_m = a.params.as_deref().map(parse_params).transpose()?;
    let (m, m_from) = resolve(
        flag_m.map(|m| (m, a.params.as_deref().unwrap_or(""))),
        fi.and_then(|f| f.params),
        DEFAULT_PARAMS,
        |x, y| x.iter().zip(y).all(|(a, b)| same(*a, *b)),
        |v, text| {
            format!(
                "{label}: field \"params\": the file records ({}, {}, {}) and --params {text} disagrees; drop the flag to use the file's values",
                v[0], v[1], v[2]
            )
        },
    )?;
    let scale_text = a.scale.map(|s| s.to_string()).unwrap_or_default();
    let (s, s_from) = resolve(
        a.scale.map(|s| (s, scale_text.as_str())),
        fi.and_then(|f| f.s),
        DEFAULT_SCALE,
        |x, y| same(*x, *y),
        |v, text| {
            format!(
                "{label}: field \"s\": the file records {v} and --scale {text} disagrees; drop the flag to use the file's value"
            )
        },
    )?;
    let (profile_name, profile_from) = resolve(
        a.profile
            .clone()
            .map(|n| (n, a.profile.as_deref().unwrap_or(""))),
        fi.and_then(|f| f.profile.clone()),
        DEFAULT_PROFILE.to_string(),
        |x, y| x == y,
        |v, text| {
            format!(
                "{label}: field \"profile\": the file records {v:?} and --profile {text} disagrees; drop the flag to use the file's profile"
            )
        },
    )?;
    let profile = Profile::preset(&profile_name).map_err(|e| match profile_from {
        "file" => format!("{label}: field \"profile\": {e}"),
        _ => format!("--profile: {e}"),
    })?;
    let p = Params::new(m[0], m[1], m[2]).with_scale(s);
    p.validate().map_err(|e| match (m_from, s_from) {
        ("file", _) | (_, "file") => format!("{label}: fields \"params\"/\"s\": {e}"),
        _ => format!("--params/--scale: {e}"),
    })?;
    let cfg = LossConfig::exact(p, profile.clone(), Dtype::F64, a.norm_eps);
    let mut timings = Vec::new();
    let inputs = match file {
        None => {
            let t0 = Instant::now();
            let syn = synthetic::generate(a.n, a.c, a.d, a.seed)
                .map_err(|e| format!("--synthetic: {e}"))?;
            timings.push((
                "draw + normalize + cos matmul (f32), wall",
                t0.elapsed().as_secs_f64(),
            ));
            timings.push(("  of which weight draws, thread-seconds", syn.draw_thread_s));
            timings.push((
                "  of which matmul (ndarray dot), thread-seconds",
                syn.matmul_thread_s,
            ));
            let t0 = Instant::now();
            let cos = syn.cos.mapv(|v| v as f64);
            timings.push(("widen cos to f64", t0.elapsed().as_secs_f64()));
            Inputs {
                what: format!(
                    "synthetic random initialization, N = {}, C = {}, D = {}, seed {}",
                    a.n, a.c, a.d, a.seed
                ),
                cos,
                labels: syn.labels,
                d: Some(a.d),
                feature_grads: None,
            }
        }
        Some((label, f)) => match f.arrays {
            Arrays::Cos(cos) => Inputs {
                what: format!("{label} (cos)"),
                cos,
                labels: f.labels,
                d: None,
                feature_grads: None,
            },
            Arrays::FeaturesWeights(x, w) => {
                let (fwd, bwd) = features_pass(x.view(), w.view(), &f.labels, &cfg)
                    .map_err(|e| format!("{label}: {e}"))?;
                Inputs {
                    what: format!("{label} (features, weights)"),
                    cos: fwd,
                    labels: f.labels,
                    d: Some(x.ncols()),
                    feature_grads: Some(bwd),
                }
            }
        },
    };

    let t0 = Instant::now();
    let mut grad = Array2::<f64>::zeros(inputs.cos.dim());
    let out = fused::forward_backward(inputs.cos.view(), &inputs.labels, &cfg, grad.view_mut())
        .map_err(|e| format!("{}: {e}", inputs.what))?;
    timings.push((
        "fused loss and d loss / d cos (f64)",
        t0.elapsed().as_secs_f64(),
    ));

    let (n, c) = inputs.cos.dim();
    let unscaled = Params { s: 1.0, ..p };
    let mut sum_cos = 0.0;
    let mut sum_margin = 0.0;
    let mut sum_lse = 0.0;
    let mut max_row = f64::NEG_INFINITY;
    for (i, &l) in inputs.labels.iter().enumerate() {
        if let Some(rl) = out.row_loss[i] {
            let cy = inputs.cos[[i, l as usize]];
            sum_cos += cy;
            sum_margin += combined_margin::margin::forward(cy, &unscaled, &profile, Dtype::F64);
            sum_lse += out.lse[i];
            max_row = max_row.max(rl);
        }
    }
    let v = out.valid.max(1) as f64;
    let s = p.s;
    println!("cmargin loss: {}", inputs.what);
    println!(
        "  profile {profile} (from {profile_from}), {p} (params from {m_from}, s from {s_from}); {n} rows ({} valid), {c} classes",
        out.valid
    );
    println!();
    let row =
        |what: &str, value: f64, unit: &str| println!("  {what:<52} {:>24} {unit}", decimal(value));
    row("loss (mean over valid rows)", out.loss, "nats");
    row("largest row loss", max_row, "nats");
    row("mean target cos", sum_cos / v, "");
    row(
        "mean target logit before the margin, s*cos",
        s * sum_cos / v,
        "logit",
    );
    row(
        "mean target logit after the margin, s*m(cos)",
        s * sum_margin / v,
        "logit",
    );
    row("mean log-sum-exp over the C logits", sum_lse / v, "nats");
    row(
        "  (loss = mean lse - mean target logit)",
        sum_lse / v - s * sum_margin / v,
        "nats",
    );
    if let Some(d) = inputs.d {
        let e = estimate::random_init(c, d, &p, &profile);
        println!();
        println!("  closed-form estimate at random initialization (SPEC.md 8.6):");
        row("  ln C", e.log_classes, "nats");
        row("  s^2/(2D)", e.spread, "nats");
        row(
            "  -s*t(pi/2), t = margin at cos 0",
            -s * e.target_margin_logit,
            "nats",
        );
        row("  estimate = ln(C e^{s^2/2D}) - s*t(pi/2)", e.loss, "nats");
        row("  measured - estimate", out.loss - e.loss, "nats");
        row(
            "  neglected: sphere 4th cumulant -s^4/(4D^2(D+2))",
            e.sphere_correction,
            "nats",
        );
        row(
            "  neglected: margin curvature -s*t''(0)/(2D)",
            e.curvature_correction,
            "nats",
        );
    }
    println!();
    println!("  gradients of the loss (the mean over valid rows), Frobenius norms:");
    row(
        "  |d loss / d cos|_2",
        norm(grad.iter().copied()),
        "per unit cos",
    );
    row(
        "  max |d loss / d cos_ij|",
        grad.iter().fold(0.0f64, |m, g| m.max(g.abs())),
        "per unit cos",
    );
    if let Some((gx, gw)) = inputs.feature_grads {
        row("  |d loss / d features|_2", gx, "per unit x");
        row("  |d loss / d weights|_2", gw, "per unit w");
    }
    if !timings.is_empty() {
        println!();
        for (what, secs) in &timings {
            // Wall-clock figures: 4 decimals are all a timing means.
            println!("  {what:<52} {secs:>24.4} s");
        }
    }
    Ok(ExitCode::SUCCESS)
}
