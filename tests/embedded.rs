//! The golden dumps embedded in the binary (`src/embedded.rs`, listed by build.rs): every file
//! of fixtures/golden, byte for byte, and `cmargin check` with no file works from a directory
//! that is not the source tree, with no path of the source tree compiled into the binary.

use combined_margin::{conformance, embedded};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// Every file under `dir`, keyed by its path relative to `dir` with `/` separators.
fn walk(dir: &Path, base: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, base, out);
        } else {
            let rel = p
                .strip_prefix(base)
                .unwrap()
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.insert(rel, std::fs::read(&p).unwrap());
        }
    }
}

#[test]
fn every_golden_file_is_embedded_byte_for_byte() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden");
    let mut on_disk = BTreeMap::new();
    walk(&dir, &dir, &mut on_disk);
    let embedded: BTreeMap<String, Vec<u8>> = embedded::FILES
        .iter()
        .map(|(rel, b)| (rel.to_string(), b.to_vec()))
        .collect();
    assert_eq!(
        embedded.keys().collect::<Vec<_>>(),
        on_disk.keys().collect::<Vec<_>>()
    );
    for (rel, bytes) in &on_disk {
        assert!(
            embedded[rel] == *bytes,
            "{rel} differs from its embedded copy"
        );
    }
    let dumps: Vec<&str> = conformance::embedded_dumps()
        .iter()
        .map(|(r, _)| *r)
        .collect();
    assert!(dumps.contains(&"caffe/layer_cpu_f32.json"), "{dumps:?}");
    for folder in ["catalyst/", "fastreid/", "nemo/", "adaface/"] {
        assert!(
            dumps.iter().any(|r| r.starts_with(folder)),
            "{folder}: {dumps:?}"
        );
    }
    assert!(!dumps
        .iter()
        .any(|r| r.ends_with("expected_deviations.json")));
    assert!(conformance::embedded_expected().is_some());
}

#[test]
fn check_without_files_prints_the_matrix_from_any_directory() {
    let elsewhere = crate::common::ScratchDir::new("elsewhere");
    let out = Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .arg("check")
        .current_dir(&elsewhere)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("Conformance of the golden dumps embedded in this binary"),
        "{text}"
    );
    // The same table as reading the directory (everything after the heading line).
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden");
    let from_dir = Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .arg("check")
        .arg("--fixtures")
        .arg(&dir)
        .output()
        .unwrap();
    let from_dir = String::from_utf8_lossy(&from_dir.stdout);
    let body = |t: &str| t.lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&text), body(&from_dir));
    // Nothing in the binary points back at the source tree (an installed binary outlives it).
    let exe = std::fs::read(env!("CARGO_BIN_EXE_cmargin")).unwrap();
    let root = env!("CARGO_MANIFEST_DIR").as_bytes();
    assert!(
        !exe.windows(root.len()).any(|w| w == root),
        "the binary contains the path {}",
        env!("CARGO_MANIFEST_DIR")
    );
}
