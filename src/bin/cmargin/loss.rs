//! `cmargin loss`: the loss and its breakdown, for given inputs (.npz) or synthetic
//! random-initialization inputs, with the closed-form random-init estimate (SPEC.md §8.6).

use combined_margin::pipeline::{estimate, fused, reference, synthetic, LossConfig};
use combined_margin::{Dtype, Params, Profile};
use ndarray::{Array1, Array2, Ix1, Ix2};
use ndarray_npy::NpzReader;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// An .npz with `features` [N, D], `weights` [C, D] and `labels` [N], or `cos` [N, C] and
    /// `labels` [N] (float32 or float64; labels int32/int64, -1 = ignore).
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
    /// Margin "m1,m2,m3".
    #[arg(long, default_value = "1,0.3,0.2")]
    params: String,
    /// Logit scale s.
    #[arg(long, default_value_t = 64.0)]
    scale: f64,
    /// Numerics profile (a preset name).
    #[arg(long, default_value = "recommended")]
    profile: String,
    /// eps of the normalization y = x / sqrt(|x|² + eps) for .npz features/weights.
    #[arg(long, default_value_t = 0.0)]
    norm_eps: f64,
}

struct Inputs {
    what: String,
    cos: Array2<f64>,
    labels: Vec<i64>,
    d: Option<usize>,
}

fn read_npz(path: &PathBuf, eps: f64, cfg: &LossConfig) -> Result<Inputs, String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("{}: cannot open: {e}", path.display()))?;
    let mut z =
        NpzReader::new(file).map_err(|e| format!("{}: not an .npz: {e}", path.display()))?;
    let names = z.names().map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |field: &str, e: &dyn std::fmt::Display| {
        format!("{}: array {field:?}: {e}", path.display())
    };
    let f2 = |z: &mut NpzReader<std::fs::File>, name: &str| -> Result<Array2<f64>, String> {
        match z.by_name::<ndarray::OwnedRepr<f64>, Ix2>(name) {
            Ok(a) => Ok(a),
            Err(_) => z
                .by_name::<ndarray::OwnedRepr<f32>, Ix2>(name)
                .map(|a| a.mapv(|v| v as f64))
                .map_err(|e| {
                    at(
                        name,
                        &format!("{e} (expected a 2-D float32 or float64 array)"),
                    )
                }),
        }
    };
    let labels: Array1<i64> = match z.by_name::<ndarray::OwnedRepr<i64>, Ix1>("labels") {
        Ok(a) => a,
        Err(_) => z
            .by_name::<ndarray::OwnedRepr<i32>, Ix1>("labels")
            .map(|a| a.mapv(|v| v as i64))
            .map_err(|e| {
                at(
                    "labels",
                    &format!("{e} (expected a 1-D int32 or int64 array)"),
                )
            })?,
    };
    let labels = labels.to_vec();
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("cos") {
        let cos = f2(&mut z, "cos")?;
        Ok(Inputs {
            what: format!("{} (cos)", path.display()),
            cos,
            labels,
            d: None,
        })
    } else if has("features") && has("weights") {
        let x = f2(&mut z, "features")?;
        let w = f2(&mut z, "weights")?;
        let cfg = LossConfig {
            norm_eps: eps,
            ..cfg.clone()
        };
        let f = reference::forward(x.view(), w.view(), &labels, &cfg)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Inputs {
            what: format!("{} (features, weights)", path.display()),
            cos: f.head.cos,
            labels,
            d: Some(x.ncols()),
        })
    } else {
        Err(format!(
            "{}: needs arrays \"cos\" and \"labels\", or \"features\", \"weights\" and \"labels\"; found {names:?}",
            path.display()
        ))
    }
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let profile = Profile::preset(&a.profile).map_err(|e| format!("--profile: {e}"))?;
    let m: Vec<f64> = a
        .params
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("--params {:?}: {e}", a.params))?;
    if m.len() != 3 {
        return Err(format!(
            "--params {:?}: expected three numbers m1,m2,m3",
            a.params
        ));
    }
    let p = Params::new(m[0], m[1], m[2]).with_scale(a.scale);
    p.validate().map_err(|e| format!("--params/--scale: {e}"))?;
    let cfg = LossConfig::exact(p, profile.clone(), Dtype::F64, a.norm_eps);
    let mut timings = Vec::new();
    let inputs = if a.synthetic {
        let t0 = Instant::now();
        let syn =
            synthetic::generate(a.n, a.c, a.d, a.seed).map_err(|e| format!("--synthetic: {e}"))?;
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
        }
    } else if let Some(path) = &a.input {
        read_npz(path, a.norm_eps, &cfg)?
    } else {
        return Err("give --input FILE.npz or --synthetic".into());
    };

    let t0 = Instant::now();
    let out = fused::forward(inputs.cos.view(), &inputs.labels, &cfg)
        .map_err(|e| format!("{}: {e}", inputs.what))?;
    timings.push(("fused loss (f64)", t0.elapsed().as_secs_f64()));

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
        "  profile {profile}, {p}; {n} rows ({} valid), {c} classes",
        out.valid
    );
    println!();
    let row = |what: &str, value: f64, unit: &str| println!("  {what:<52} {value:>12.4} {unit}");
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
    if !timings.is_empty() {
        println!();
        for (what, secs) in &timings {
            row(what, *secs, "s");
        }
    }
    Ok(ExitCode::SUCCESS)
}
