//! Shared test support: proptest strategies over profiles, parameters and inputs, mixing
//! uniform draws with the edge-case catalogue (`combined_margin::catalogue`).

#![allow(dead_code)]

use combined_margin::catalogue::edge_cases;
use combined_margin::params::PAPER_CONFIGS;
use combined_margin::{Dtype, Params, Profile};
use proptest::prelude::*;

/// The proptest configuration every property uses: `cases` cases, no failure files, and a
/// fixed RNG seed so that CI is reproducible. Set PROPTEST_RNG_SEED to explore other seeds.
pub fn config(cases: u32) -> ProptestConfig {
    let mut c = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x00C0_FFEE_2026_1129);
    }
    c
}

/// Every preset.
pub fn profiles() -> impl Strategy<Value = Profile> {
    prop::sample::select(Profile::presets())
}

/// The presets satisfying `pred` (so properties about a subset need no rejection sampling).
pub fn profiles_where(pred: fn(&Profile) -> bool) -> impl Strategy<Value = Profile> {
    let v: Vec<Profile> = Profile::presets().into_iter().filter(pred).collect();
    assert!(!v.is_empty(), "no preset satisfies the predicate");
    prop::sample::select(v)
}

/// The paper configurations, and random (m1, m2, m3) in m1 ∈ [0.5, 4], m2 ∈ [0, 1], m3 ∈ [0, 0.5].
pub fn params() -> impl Strategy<Value = Params> {
    prop_oneof![
        prop::sample::select(PAPER_CONFIGS.to_vec()).prop_map(|(a, b, c)| Params::new(a, b, c)),
        (0.5f64..4.0, 0.0f64..1.0, 0.0f64..0.5).prop_map(|(a, b, c)| Params::new(a, b, c)),
    ]
}

pub fn dtypes() -> impl Strategy<Value = Dtype> {
    prop::sample::select(vec![Dtype::F32, Dtype::F64])
}

/// A cos value for `profile` at `p` in `dtype`: uniform on [−1, 1] half of the time, else an
/// entry of the edge catalogue (±1, ±(1 − ε), ±0, the kinks and their neighbouring floats,
/// values just outside [−1, 1]).
pub fn cos_for(profile: &Profile, p: &Params, dtype: Dtype) -> BoxedStrategy<f64> {
    let edges = edge_cases(profile, p, dtype);
    prop_oneof![
        (-1.0f64..=1.0).prop_map(move |x| dtype.round(x)),
        prop::sample::select(edges),
    ]
    .boxed()
}

/// (profile, params, dtype, c): the usual input of a per-entry property.
pub fn entry() -> impl Strategy<Value = (Profile, Params, Dtype, f64)> {
    (profiles(), params(), dtypes()).prop_flat_map(|(prof, p, dt)| {
        let c = cos_for(&prof, &p, dt);
        (Just(prof), Just(p), Just(dt), c)
    })
}

/// A batch: cos [N, C] (mixing uniform and edge values), labels (some −1), top_diff.
pub fn batch(
    profile: Profile,
    p: Params,
    dtype: Dtype,
) -> impl Strategy<Value = (usize, usize, Vec<f64>, Vec<i64>, Vec<f64>)> {
    (1usize..8, 1usize..12).prop_flat_map(move |(n, c)| {
        let cos = prop::collection::vec(cos_for(&profile, &p, dtype), n * c);
        let labels = prop::collection::vec(prop_oneof![1 => Just(-1i64), 4 => 0..c as i64], n);
        let top = prop::collection::vec((-1.0f64..1.0).prop_map(move |x| dtype.round(x)), n * c);
        (Just(n), Just(c), cos, labels, top)
    })
}

/// A scratch directory `cmargin-<tag>-XXXXXX` in the temp dir (tempfile): it and everything
/// in it are removed when this drops, so a test run leaves nothing behind. Derefs to its path.
pub struct ScratchDir(tempfile::TempDir);

impl ScratchDir {
    pub fn new(tag: &str) -> ScratchDir {
        ScratchDir(
            tempfile::Builder::new()
                .prefix(&format!("cmargin-{tag}-"))
                .tempdir()
                .expect("a scratch directory in the temp dir"),
        )
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::path::Path> for ScratchDir {
    fn as_ref(&self) -> &std::path::Path {
        self.0.path()
    }
}

impl AsRef<std::ffi::OsStr> for ScratchDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.path().as_os_str()
    }
}

/// A scratch file path `name` in a directory of its own, removed (with the file) when this
/// drops. Derefs to the path; `s()` gives it as text.
pub struct Scratch {
    _dir: ScratchDir,
    path: std::path::PathBuf,
    text: String,
}

impl Scratch {
    pub fn new(tag: &str, name: &str) -> Scratch {
        let dir = ScratchDir::new(tag);
        let path = dir.join(name);
        let text = path.display().to_string();
        Scratch {
            _dir: dir,
            path,
            text,
        }
    }

    pub fn s(&self) -> &str {
        &self.text
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

/// Whether `python3` can import numpy (the numpy-driven tests are ignored by default and
/// assert this when run with `--ignored`).
pub fn numpy_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// An `.npz` fixture from `cmargin generate GENERATE_ARGS`, filled in by the numpy
/// implementation `tests/data/SCRIPT` (run as `python3 SCRIPT NAME FIXTURE SCRIPT_ARGS…`; it
/// writes `impl_forward`/`impl_backward`), read back as a layer case. The scratch directory
/// is removed before returning.
pub fn numpy_filled(
    generate_args: &[&str],
    script: &str,
    name: &str,
    script_args: &[String],
) -> combined_margin::fixture::LayerCase {
    let dir = ScratchDir::new("numpy");
    let path = dir.join(format!("{name}.npz"));
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .arg("generate")
        .args(generate_args)
        .args(["--force", "-o"])
        .arg(&path)
        .output()
        .unwrap();
    succeeded(&st);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(script);
    let st = std::process::Command::new("python3")
        .arg(script)
        .arg(name)
        .arg(&path)
        .args(script_args)
        .output()
        .unwrap();
    succeeded(&st);
    combined_margin::fixture::npz::read_layer_npz(
        &path,
        combined_margin::fixture::Limits::default(),
    )
    .unwrap()
    .case
}

/// Asserts that a child process exited 0, showing its stderr otherwise.
fn succeeded(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
