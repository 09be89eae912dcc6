//! `cmargin generate`: fixture files (golden-dump JSON and/or `.npz`) with the reference
//! forward and backward of a profile (SPEC.md §7).

use combined_margin::fixture::generate::{
    generate_within, rows_for, EntryLimit, Family, Inputs, MarginParam, RowMargin, RowValues, Spec,
    TopDiff,
};
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
    /// Per-row margins (SPEC.md §11.1): "[PARAM=]drawn:LO,HI" draws each row's PARAM
    /// (m1, m2 or m3; default m2) uniform on [LO, HI) from the seeded stream after top_diff;
    /// "[PARAM=]file:PATH" reads N values from a .npy (float, shape (N,)) or a text file
    /// (numbers separated by whitespace or commas).
    #[arg(long, allow_hyphen_values = true)]
    row_margins: Option<String>,
    /// K sub-centres per class (SPEC.md §11.2): cos_subcenters [N, C, K] whose max over K is
    /// cos, with an exact tie in column 0 of every row; backward_subcenters [N, C, K].
    #[arg(long, allow_hyphen_values = true)]
    subcenters: Option<String>,
    /// CurricularFace's t (SPEC.md §11.3): hard negatives become c·(t + c); written as t_used.
    #[arg(long, allow_hyphen_values = true)]
    curricular_t: Option<String>,
    /// Inter-top-k "k,m'" (SPEC.md §11.3), active: the k hardest non-targets get cos(θ − m').
    #[arg(long, allow_hyphen_values = true)]
    intertopk: Option<String>,
    /// A-Softmax's annealing weight λ >= 0 (SPEC.md §11.4): target (λ·c + ψ(θ))/(1 + λ).
    #[arg(long, allow_hyphen_values = true)]
    lambda: Option<String>,
    /// Output file(s); the format follows the extension (.json or .npz). Repeatable.
    #[arg(short, long, required = true)]
    out: Vec<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
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
    let family = family(&a, n)?;
    // .npz alone is read by a reader whose limit follows memory; JSON by one with a fixed cap.
    let limit = if formats.iter().all(|f| *f == Format::Npz) {
        EntryLimit::npz_memory()
    } else {
        EntryLimit::json()
    };
    let g = generate_within(&spec, &family, &limit).map_err(|e| e.to_string())?;
    if inputs == Inputs::Edges && g.catalogue_placed < g.catalogue_len {
        eprintln!(
            "cmargin: note: {} of the {} catalogue values have a row; omit --shape or use N >= {}",
            g.catalogue_placed,
            g.catalogue_len,
            rows_for(g.catalogue_len, a.ignore_every).unwrap_or(g.catalogue_len)
        );
    }
    for (path, fmt) in a.out.iter().zip(formats) {
        let written = match fmt {
            Format::Json => write_atomic(path, g.to_json().as_bytes(), a.force),
            // Streamed to the file: a large fixture is never encoded whole in memory.
            Format::Npz => g.write_npz(path, a.force),
        };
        written.map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                e.to_string()
            } else {
                format!("{}: cannot write: {e}", path.display())
            }
        })?;
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        println!(
            "wrote {} ({} bytes): {} {}x{} {}",
            path.display(),
            bytes,
            g.case.name,
            n,
            c,
            spec.params
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The family flags (SPEC.md §7.5, §11); every refusal is one line naming the flag and value.
fn family(a: &Args, n: usize) -> Result<Family, String> {
    let number = |flag: &str, text: &str| -> Result<f64, String> {
        text.trim()
            .parse::<f64>()
            .map_err(|_| format!("{flag} {text:?}: expected a number"))
    };
    let row_margin = match &a.row_margins {
        None => None,
        Some(text) => Some(row_margins(text, n)?),
    };
    let subcenters = match &a.subcenters {
        None => None,
        Some(t) => match t.trim().parse::<usize>() {
            Ok(k) if k >= 1 => Some(k),
            _ => {
                return Err(format!(
                    "--subcenters {t:?}: expected a whole number K >= 1"
                ))
            }
        },
    };
    let curricular_t = a
        .curricular_t
        .as_deref()
        .map(|t| number("--curricular-t", t))
        .transpose()?;
    let intertopk = match &a.intertopk {
        None => None,
        Some(t) => {
            let parts: Vec<&str> = t.split(',').collect();
            let k = parts.first().and_then(|k| k.trim().parse::<usize>().ok());
            let m = parts.get(1).and_then(|m| m.trim().parse::<f64>().ok());
            match (parts.len(), k, m) {
                (2, Some(k), Some(m)) => Some((k, m)),
                _ => {
                    return Err(format!(
                        "--intertopk {t:?}: expected \"k,m'\" (a count k >= 0, then m' in radians)"
                    ))
                }
            }
        }
    };
    let lambda = a
        .lambda
        .as_deref()
        .map(|t| number("--lambda", t))
        .transpose()?;
    Ok(Family {
        row_margin,
        subcenters,
        curricular_t,
        intertopk,
        lambda,
    })
}

/// `--row-margins [PARAM=]drawn:LO,HI` or `[PARAM=]file:PATH` (PARAM m1, m2 or m3; m2
/// where omitted).
fn row_margins(text: &str, n: usize) -> Result<RowMargin, String> {
    let flag = "--row-margins";
    let (param, rest) = match text.split_once('=') {
        Some((p, rest)) => (
            MarginParam::parse(p.trim()).ok_or_else(|| {
                format!("{flag} {text:?}: unknown parameter {p:?} (expected m1, m2 or m3)")
            })?,
            rest,
        ),
        None => (MarginParam::M2, text),
    };
    let values = if let Some(range) = rest.strip_prefix("drawn:") {
        let v: Vec<f64> = list(flag, range, 2)
            .map_err(|_| format!("{flag} {text:?}: expected drawn:LO,HI with two numbers"))?;
        RowValues::Drawn { lo: v[0], hi: v[1] }
    } else if let Some(path) = rest.strip_prefix("file:") {
        RowValues::Given(
            row_values_file(std::path::Path::new(path))
                .map_err(|e| format!("{flag} {text:?}: {e}"))?,
        )
    } else {
        return Err(format!(
            "{flag} {text:?}: expected [m1=|m2=|m3=]drawn:LO,HI or [m1=|m2=|m3=]file:PATH"
        ));
    };
    if let RowValues::Given(v) = &values {
        if v.len() != n {
            return Err(format!(
                "{flag} {text:?}: the file holds {} values, expected N = {n} (one per row)",
                v.len()
            ));
        }
    }
    Ok(RowMargin { param, values })
}

/// N per-row values from a `.npy` (float32 or float64, shape (N,)) or a text file.
fn row_values_file(path: &std::path::Path) -> Result<Vec<f64>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.starts_with(b"\x93NUMPY") {
        return combined_margin::fixture::npz::npy_floats_1d(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| format!("{}: neither a .npy nor UTF-8 text", path.display()))?;
    text.split(|ch: char| ch.is_whitespace() || ch == ',')
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, w)| {
            w.parse::<f64>()
                .map_err(|_| format!("{}: value {i} {w:?} is not a number", path.display()))
        })
        .collect()
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
