//! `cmargin kinks`: the kink table for the presets and the paper configurations.

use combined_margin::params::PAPER_CONFIGS;
use combined_margin::{degeneracy, kinks, Dtype, Params, Profile};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Profiles to list (default: every preset).
    #[arg(long, value_delimiter = ',')]
    profile: Vec<String>,
    /// One configuration "m1,m2,m3" instead of the paper configurations.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    params: Option<Vec<f64>>,
    /// Dtype whose rounding of the profile constants to use.
    #[arg(long, default_value = "f64")]
    dtype: String,
}

pub fn run(a: Args) -> Result<ExitCode, String> {
    let profiles = if a.profile.is_empty() {
        Profile::presets()
    } else {
        a.profile
            .iter()
            .map(|n| Profile::preset(n).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    let dtype = Dtype::parse(&a.dtype)
        .ok_or_else(|| format!("--dtype {:?}: expected f64, f32, f16 or bf16", a.dtype))?;
    let configs: Vec<(f64, f64, f64)> = match a.params {
        Some(v) => {
            if v.len() != 3 {
                return Err(format!(
                    "--params: expected three numbers \"m1,m2,m3\", got {}",
                    v.len()
                ));
            }
            let p = Params::new(v[0], v[1], v[2]);
            p.validate().map_err(|e| format!("--params: {e}"))?;
            vec![(v[0], v[1], v[2])]
        }
        None => PAPER_CONFIGS.to_vec(),
    };
    print!("{}", kinks::table(&profiles, &configs, dtype));
    if dtype != Dtype::F64 {
        // What the rounding of the constants does in this dtype (SPEC.md §4.3).
        println!("\nConstants rounded to {dtype} (exact -> rounded, effect; inputs of the {dtype} grid affected):");
        print!("{}", degeneracy::table(&profiles, &configs, &[dtype]));
    }
    Ok(ExitCode::SUCCESS)
}
