//! The files of `fixtures/golden/` (dumps, the expected-deviations table, their READMEs),
//! embedded in the library at build time (build.rs lists them, `include_bytes!` embeds them),
//! so that `cmargin check` with no file prints the conformance matrix from any working
//! directory, with no path compiled in. About 5 MB; `--fixtures DIR` reads another directory.

use crate::conformance::EXPECTED_FILE;

/// Every embedded file as (path relative to `fixtures/golden/` with `/` separators, bytes),
/// sorted by path.
pub static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/golden_files.rs"));

/// The label errors and reports name an embedded file by: `fixtures/golden/<rel> (embedded)`.
pub fn label(rel: &str) -> String {
    format!("fixtures/golden/{rel} (embedded)")
}

/// The embedded golden dumps: every `*.json` except the expected-deviations table, as
/// (relative path, bytes), sorted by path (the order [`crate::conformance::golden_files`] gives).
pub fn dumps() -> Vec<(&'static str, &'static [u8])> {
    FILES
        .iter()
        .filter(|(rel, _)| rel.ends_with(".json") && rel.rsplit('/').next() != Some(EXPECTED_FILE))
        .copied()
        .collect()
}

/// The embedded expected-deviations table, if the golden directory had one at build time.
pub fn expected() -> Option<&'static [u8]> {
    FILES
        .iter()
        .find(|(rel, _)| *rel == EXPECTED_FILE)
        .map(|(_, b)| *b)
}
