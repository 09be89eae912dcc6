//! `cmargin generate`: fixture files (golden-dump JSON and/or `.npz`) with the reference
//! forward and backward of a profile (SPEC.md §7).

use combined_margin::fixture::generate::{generate, rows_for, Inputs, Spec, TopDiff};
use combined_margin::fixture::write_atomic;
use combined_margin::{Dtype, Params, Profile};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Profile preset the reference runs under.
    #[arg(long, default_value = "recommended")]
    profile: String,
    /// "m1,m2,m3" (m2 in radians, m3 in cosine units).
    #[arg(long, default_value = "1,0.5,0", allow_hyphen_values = true)]
    params: String,
    /// Scale s: forward and backward are multiplied by s and `params.s` is recorded.
    #[arg(long, allow_negative_numbers = true)]
    scale: Option<f64>,
    /// "N,C". Default 16,10; with --inputs edges, enough rows for the whole catalogue.
    #[arg(long, allow_hyphen_values = true)]
    shape: Option<String>,
    /// f64, f32, f16 or bf16: the precision the implementation under test runs in.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Round the cos inputs to a narrower grid (f16, bf16; f32 under --dtype f64), as autocast
    /// hands an f32 margin f16 matmul outputs. Default: the dtype's own grid.
    #[arg(long)]
    input_grid: Option<String>,
    /// Seed of the splitmix64 stream every draw comes from (SPEC.md §7.3).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// uniform, realistic or edges.
    #[arg(long, default_value = "uniform")]
    inputs: String,
    /// Embedding width D of --inputs realistic: cos ~ N(0, 1)/sqrt(D).
    #[arg(long, default_value_t = 512)]
    dim: u32,
    /// uniform or ones.
    #[arg(long, default_value = "uniform")]
    top_diff: String,
    /// Every K-th row (rows K-1, 2K-1, ...) is ignored (label -1); 0 for none.
    #[arg(long, default_value_t = 8)]
    ignore_every: usize,
    /// Output file(s); the format follows the extension (.json or .npz). Repeatable.
    #[arg(short, long, required = true)]
    out: Vec<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

enum Format {
    Json,
    Npz,
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let profile = Profile::preset(&a.profile).map_err(|e| format!("--profile: {e}"))?;
    let dtype = Dtype::parse(&a.dtype)
        .ok_or_else(|| format!("--dtype {:?}: expected f64, f32, f16 or bf16", a.dtype))?;
    let input_grid = match &a.input_grid {
        None => None,
        Some(g) => Some(
            Dtype::parse(g)
                .ok_or_else(|| format!("--input-grid {g:?}: expected f32, f16 or bf16"))?,
        ),
    };
    let pv: Vec<f64> = list("--params", &a.params, 3)?;
    let mut params = Params::new(pv[0], pv[1], pv[2]);
    if let Some(s) = a.scale {
        params.s = s;
    }
    params
        .validate()
        .map_err(|e| format!("--params/--scale: {e}"))?;
    let inputs = match a.inputs.as_str() {
        "uniform" => Inputs::Uniform,
        "realistic" => Inputs::Realistic { dim: a.dim },
        "edges" => Inputs::Edges,
        other => {
            return Err(format!(
                "--inputs {other:?}: expected uniform, realistic or edges"
            ))
        }
    };
    let top_diff = match a.top_diff.as_str() {
        "uniform" => TopDiff::Uniform,
        "ones" => TopDiff::Ones,
        other => return Err(format!("--top-diff {other:?}: expected uniform or ones")),
    };
    let formats = a
        .out
        .iter()
        .map(|p| match p.extension().and_then(|e| e.to_str()) {
            Some("json") => Ok(Format::Json),
            Some("npz") => Ok(Format::Npz),
            _ => Err(format!(
                "--out {}: the extension must be .json or .npz",
                p.display()
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Refuse before doing any work, so that no file of a multi-output run is written.
    if !a.force {
        if let Some(p) = a.out.iter().find(|p| p.exists()) {
            return Err(format!(
                "{} exists; pass --force to overwrite it",
                p.display()
            ));
        }
    }
    let (n, c) = match (&a.shape, inputs) {
        (Some(s), _) => {
            let d: Vec<usize> = list("--shape", s, 2)?;
            (d[0], d[1])
        }
        (None, Inputs::Edges) => {
            let grid = input_grid.unwrap_or(dtype);
            let len =
                combined_margin::fixture::generate::input_catalogue(&profile, &params, dtype, grid)
                    .len();
            (
                rows_for(len, a.ignore_every).map_err(|e| e.to_string())?,
                10,
            )
        }
        (None, _) => (16, 10),
    };
    let spec = Spec {
        profile,
        params,
        scaled: a.scale.is_some(),
        n,
        c,
        dtype,
        input_grid,
        seed: a.seed,
        inputs,
        top_diff,
        ignore_every: a.ignore_every,
    };
    let g = generate(&spec).map_err(|e| e.to_string())?;
    if inputs == Inputs::Edges && g.catalogue_placed < g.catalogue_len {
        eprintln!(
            "cmargin: note: {} of the {} catalogue values have a row; omit --shape or use N >= {}",
            g.catalogue_placed,
            g.catalogue_len,
            rows_for(g.catalogue_len, a.ignore_every).unwrap_or(g.catalogue_len)
        );
    }
    for (path, fmt) in a.out.iter().zip(formats) {
        let bytes = match fmt {
            Format::Json => g.to_json().into_bytes(),
            Format::Npz => g
                .to_npz()
                .map_err(|e| format!("{}: cannot encode: {e}", path.display()))?,
        };
        write_atomic(path, &bytes, a.force).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                e.to_string()
            } else {
                format!("{}: cannot write: {e}", path.display())
            }
        })?;
        println!(
            "wrote {} ({} bytes): {} {}x{} {}",
            path.display(),
            bytes.len(),
            g.case.name,
            n,
            c,
            spec.params
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses "a,b,c" into exactly `len` values (shared by the subcommands).
pub fn list<T: std::str::FromStr>(flag: &str, text: &str, len: usize) -> Result<Vec<T>, String> {
    let v: Vec<T> = text
        .split(',')
        .map(|x| x.trim().parse::<T>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{flag} {text:?}: expected {len} comma-separated numbers"))?;
    if v.len() != len {
        return Err(format!(
            "{flag} {text:?}: expected {len} comma-separated numbers, found {}",
            v.len()
        ));
    }
    Ok(v)
}
