//! `cmargin plot`: an SVG of the target logit against θ and of the backward factor against
//! cos θ for chosen profiles, kinks marked (SPEC.md §7.5).

use crate::generate::list;
use combined_margin::fixture::write_atomic;
use combined_margin::plot::{render_svg, PlotSpec};
use combined_margin::{Dtype, Params, Profile};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Comma-separated presets (default: analytic,caffe-gpu,arcface-thmm,recommended).
    #[arg(long)]
    profile: Option<String>,
    /// "m1,m2,m3" (m2 in radians, m3 in cosine units).
    #[arg(long, default_value = "1,0.5,0", allow_hyphen_values = true)]
    params: String,
    /// Dtype whose rounding of the profile constants the curves use.
    #[arg(long, default_value = "f64")]
    dtype: String,
    /// "lo,hi": vertical range of the factor panel; values outside are drawn at its edge.
    #[arg(long, default_value = "-2,4", allow_hyphen_values = true)]
    factor_range: String,
    /// Output SVG file (the name must end in .svg: no other format is written).
    #[arg(short, long)]
    out: PathBuf,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let profiles = match &a.profile {
        None => PlotSpec::default_profiles(),
        Some(list) => list
            .split(',')
            .map(|n| Profile::preset(n.trim()).map_err(|e| format!("--profile: {e}")))
            .collect::<Result<_, _>>()?,
    };
    let dtype = Dtype::parse(&a.dtype)
        .ok_or_else(|| format!("--dtype {:?}: expected f64, f32, f16 or bf16", a.dtype))?;
    let p = list::<f64>("--params", &a.params, 3)?;
    let params = Params::new(p[0], p[1], p[2]);
    params.validate().map_err(|e| format!("--params: {e}"))?;
    let r = list::<f64>("--factor-range", &a.factor_range, 2)?;
    // SVG only: a PNG would need a rasterizer and fonts for the labels (resvg finds none on a
    // bare CI machine and drops the text), so another extension is refused, not mislabelled.
    if !a
        .out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("svg"))
    {
        return Err(format!(
            "--out {}: only SVG is written; name the file *.svg (convert it with e.g. rsvg-convert)",
            a.out.display()
        ));
    }
    if !a.force && a.out.exists() {
        return Err(format!(
            "{} exists; pass --force to overwrite it",
            a.out.display()
        ));
    }
    let svg = render_svg(&PlotSpec {
        profiles,
        params,
        dtype,
        factor_range: (r[0], r[1]),
    })
    .map_err(|e| e.to_string())?;
    write_atomic(&a.out, svg.as_bytes(), a.force)
        .map_err(|e| format!("{}: cannot write: {e}", a.out.display()))?;
    println!("wrote {} ({} bytes)", a.out.display(), svg.len());
    Ok(ExitCode::SUCCESS)
}
