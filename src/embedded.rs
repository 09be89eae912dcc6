//! The files of `fixtures/golden/` (dumps, the expected-deviations table, their READMEs),
//! embedded in the library at build time (build.rs lists them, `include_bytes!` embeds them),
//! so that `cmargin check` with no file prints the conformance matrix from any working
//! directory, with no path compiled in. About 13 MB; `--fixtures DIR` reads another directory.
//!
//! Only the files: which of them are dumps and which is the expected-deviations table is
//! [`crate::conformance`]'s business (`embedded_dumps`, `embedded_expected`).

/// Every embedded file as (path relative to `fixtures/golden/` with `/` separators, bytes),
/// sorted by path.
pub static FILES: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/golden_files.rs"));

/// The label errors and reports name an embedded file by: `fixtures/golden/<rel> (embedded)`.
pub fn label(rel: &str) -> String {
    format!("fixtures/golden/{rel} (embedded)")
}
