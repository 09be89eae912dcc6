//! Lists every file under fixtures/golden/ into `$OUT_DIR/golden_files.rs` for
//! `src/embedded.rs` to embed (`include_bytes!`), so that an installed `cmargin check` has the
//! golden dumps wherever it runs.

use std::path::{Path, PathBuf};

/// Every file under `dir`, as (path relative to `dir` with `/` separators, full path), sorted.
fn files_under(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .expect("under dir")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    out
}

pub fn embed() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let dir = root.join("fixtures/golden");
    // A directory: cargo rescans it, so an added or edited dump re-embeds.
    println!("cargo:rerun-if-changed=fixtures/golden");
    let mut table = String::from("&[\n");
    // Paths relative to the crate root, resolved when the library compiles: the generated
    // table holds no absolute path, so it stays right if the checkout moves.
    for (rel, _) in files_under(&dir) {
        table.push_str(&format!(
            "    ({rel:?}, include_bytes!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?})) as &[u8]),\n",
            format!("/fixtures/golden/{rel}")
        ));
    }
    table.push_str("]\n");
    let out =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it")).join("golden_files.rs");
    std::fs::write(&out, table).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}
