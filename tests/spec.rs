//! SPEC.md must say what the crate computes: its kink table is the crate's output, not a copy
//! that can drift.

use combined_margin::params::PAPER_CONFIGS;
use combined_margin::{kinks, Dtype, Profile};

#[test]
fn spec_kink_table_is_current() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).unwrap();
    let begin = "<!-- kink-table:begin -->\n";
    let start = spec
        .find(begin)
        .expect("SPEC.md has a kink-table:begin marker")
        + begin.len();
    let end = spec
        .find("<!-- kink-table:end -->")
        .expect("SPEC.md has a kink-table:end marker");
    let want = kinks::table(&Profile::presets(), &PAPER_CONFIGS, Dtype::F64);
    assert_eq!(
        &spec[start..end],
        want,
        "regenerate with `cargo run --release -- kinks`"
    );
}
