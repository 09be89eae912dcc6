//! `cmargin sweep`: an implementation's worst error over every float input of a dtype
//! (SPEC.md §10). The engine is `combined_margin::sweep`; this file parses, shows progress,
//! handles Ctrl-C and writes the reports.

use combined_margin::sweep::{self, grid, impls, report, Options, Spec};
use combined_margin::{Dtype, Params, Profile};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// Numerics profile (a preset name).
    #[arg(long)]
    profile: String,
    /// Margin "m1,m2,m3".
    #[arg(long, allow_hyphen_values = true)]
    params: String,
    /// Dtype whose floats are swept (f32; f64 only with --range or a large --stride).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Implementation: host-kernel (kernels/combined_margin.cuh built for the host),
    /// reference-rounded, fused-target (the fused CPU loss's target logit).
    #[arg(long = "impl", default_value = "host-kernel")]
    imp: String,
    /// Sweep only the floats in [lo, hi] ("lo,hi"); no outside band.
    #[arg(long, allow_hyphen_values = true)]
    range: Option<String>,
    /// Every k-th float of [-1, 1] (or of --range); the outside band and the floats within
    /// --kink-ulps of each kink are always whole.
    #[arg(long, default_value_t = 1)]
    stride: u64,
    /// Floats beyond each of -1 and 1 (without --range).
    #[arg(long, default_value_t = grid::DEFAULT_BAND)]
    band: u64,
    /// Half-width of a kink's region, in ulps.
    #[arg(long, default_value_t = sweep::DEFAULT_KINK_ULPS)]
    kink_ulps: u64,
    /// Worker threads (default: all cores). The result does not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Write the JSON report here (atomically); "-" prints it instead of the table.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Overwrite the --json file if it exists.
    #[arg(long)]
    force: bool,
}

fn parse_list(what: &str, s: &str, n: usize) -> Result<Vec<f64>, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| {
            x.trim()
                .parse::<f64>()
                .map_err(|e| format!("--{what} {s:?}: {x:?} is not a number ({e})"))
        })
        .collect::<Result<_, _>>()?;
    if v.len() != n {
        return Err(format!(
            "--{what} {s:?}: expected {n} comma-separated numbers, got {}",
            v.len()
        ));
    }
    Ok(v)
}

/// Set by Ctrl-C; the engine checks it between chunks. A second Ctrl-C exits at once.
static CANCEL: AtomicBool = AtomicBool::new(false);

pub fn run(a: Args) -> Result<ExitCode, String> {
    let profile = Profile::preset(&a.profile).map_err(|e| format!("--profile: {e}"))?;
    let m = parse_list("params", &a.params, 3)?;
    let params = Params::new(m[0], m[1], m[2]);
    params.validate().map_err(|e| format!("--params: {e}"))?;
    let dtype = Dtype::parse(&a.dtype)
        .ok_or_else(|| format!("--dtype {:?}: expected f32 or f64", a.dtype))?;
    let g = grid::grid_of(dtype);
    let range = match &a.range {
        Some(r) => {
            let v = parse_list("range", r, 2)?;
            Some((v[0], v[1]))
        }
        None => None,
    };
    if a.kink_ulps > grid::MAX_BAND {
        return Err(format!(
            "--kink-ulps {}: at most {}",
            a.kink_ulps,
            grid::MAX_BAND
        ));
    }
    let inputs = grid::InputSet::new(g, range, a.stride, a.band).map_err(|e| e.to_string())?;
    let imp = impls::by_name(&a.imp, &profile, &params, g).map_err(|e| e.to_string())?;
    let mut spec = Spec {
        profile,
        params,
        grid: g,
        inputs,
        kink_ulps: a.kink_ulps,
    };
    spec.densify_kinks();
    if let Some(t) = a.threads {
        if t == 0 {
            return Err("--threads 0: need at least one thread".into());
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads.unwrap_or(0))
        .build()
        .map_err(|e| format!("thread pool: {e}"))?;

    ctrlc::set_handler(|| {
        if CANCEL.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;

    let planned = spec.inputs.len();
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(Some(planned), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {percent:>3}% {human_pos}/{human_len} inputs, ETA {eta}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let progress = |n: u64| bar.inc(n);
    let opts = Options {
        chunk: None,
        cancel: Some(&CANCEL),
        progress: Some(&progress),
    };
    let t0 = Instant::now();
    let result = pool.install(|| sweep::run(&spec, imp.as_ref(), &opts));
    let secs = t0.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let s = result.map_err(|e| e.to_string())?;

    let runinfo = serde_json::json!({
        "seconds": secs,
        "threads": pool.current_num_threads(),
        "inputs_per_second": s.evaluated() as f64 / secs.max(1e-9),
    });
    let text = report::table(&s, Some(secs));
    match &a.json {
        Some(p) if p.as_os_str() == "-" => {
            let j = report::to_json(&s, runinfo);
            println!(
                "{}",
                serde_json::to_string_pretty(&j).map_err(|e| e.to_string())?
            );
        }
        Some(p) => {
            let j = report::to_json(&s, runinfo);
            let mut bytes = serde_json::to_vec_pretty(&j).map_err(|e| e.to_string())?;
            bytes.push(b'\n');
            combined_margin::fixture::write_atomic(p, &bytes, a.force)
                .map_err(|e| format!("--json {}: {e}", p.display()))?;
            print!("{text}");
        }
        None => print!("{text}"),
    }
    Ok(ExitCode::from(s.verdict().exit_code()))
}
