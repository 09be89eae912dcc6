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

/// SPEC.md §4.3, the half-precision degeneracy tables, are `degeneracy::table`'s output
/// (what `cmargin kinks --dtype f16|bf16` prints after the kink table).
#[test]
fn spec_degeneracy_tables_are_current() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).unwrap();
    for dt in [Dtype::F16, Dtype::BF16] {
        let begin = format!("<!-- degeneracy-table-{dt}:begin -->\n");
        let end_marker = format!("<!-- degeneracy-table-{dt}:end -->");
        let start = spec
            .find(&begin)
            .unwrap_or_else(|| panic!("SPEC.md has a {begin:?} marker"))
            + begin.len();
        let end = spec
            .find(&end_marker)
            .unwrap_or_else(|| panic!("SPEC.md has a {end_marker:?} marker"));
        let want = combined_margin::degeneracy::table(&Profile::presets(), &PAPER_CONFIGS, &[dt]);
        assert_eq!(
            &spec[start..end],
            want,
            "regenerate with `cargo run --release -- kinks --dtype {dt}`"
        );
    }
}
