//! A bounded, in-process random-mutation run over the three readers the fuzz targets drive
//! (fuzz/: `fixture_json`, `fixture_npz`, `loss_input`), on every run of the suite: seed files
//! (generated fixtures, numpy's stored and deflated files), each mutated by byte flips,
//! insertions, deletions, truncation and large numbers written over NPY header digits. Every
//! outcome must be a value or a located error naming the file; a panic fails the test (and an
//! abort, e.g. an allocation sized by a declared shape, kills it). cargo-fuzz explores far more
//! (SPEC.md §7.6); this keeps the readers honest where nightly is not at hand.

use combined_margin::fixture::loss_input::read_loss_input_bytes;
use combined_margin::fixture::{read_dump_str, read_layer_npz_bytes, Limits};
use combined_margin::rng::SplitMix64;
use std::path::Path;

/// Mutated inputs per seed file.
const MUTATIONS: usize = 400;

fn limits() -> Limits {
    Limits {
        max_elements: 1 << 16,
        max_file_bytes: 1 << 20,
        ..Limits::default()
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut out: Vec<Vec<u8>> = ["numpy_savez_filled.npz", "numpy_savez_compressed.npz"]
        .iter()
        .map(|n| std::fs::read(data.join(n)).unwrap())
        .collect();
    let dir = crate::common::ScratchDir::new("mutations");
    let (json, npz) = (dir.join("s.json"), dir.join("s.npz"));
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_cmargin"))
        .args([
            "generate", "--shape", "3,4", "--inputs", "edges", "--force", "-o",
        ])
        .arg(&json)
        .arg("-o")
        .arg(&npz)
        .output()
        .unwrap();
    assert!(st.status.success());
    out.push(std::fs::read(&json).unwrap());
    out.push(std::fs::read(&npz).unwrap());
    out
}

fn mutate(seed: &[u8], rng: &mut SplitMix64) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = b.len().max(1) as u64;
        let at = rng.below(len) as usize;
        match rng.below(6) {
            0 if !b.is_empty() => b[at] ^= 1 << rng.below(8),
            1 => b.insert(at.min(b.len()), rng.below(256) as u8),
            2 if !b.is_empty() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            4 => {
                // A large number over the digits of an NPY header or JSON shape.
                if let Some(p) = b.windows(2).skip(at).position(|w| w[0].is_ascii_digit()) {
                    let big = ["999999999999", "4294967296", "18446744073709551615"]
                        [rng.below(3) as usize];
                    let p = at + p;
                    b.splice(p..p + 1, big.bytes());
                }
            }
            _ if !b.is_empty() => b[at] = rng.below(256) as u8,
            _ => {}
        }
    }
    b
}

#[test]
fn mutated_inputs_give_a_value_or_a_located_error() {
    let mut rng = SplitMix64::new(0x5EED_0010);
    let (mut runs, mut accepted) = (0usize, 0usize);
    for seed in seeds() {
        for _ in 0..MUTATIONS {
            let b = mutate(&seed, &mut rng);
            runs += 2;
            match read_layer_npz_bytes("m.npz", &b, limits()) {
                Ok(_) => accepted += 1,
                Err(e) => assert_eq!(e.file, "m.npz"),
            }
            match read_loss_input_bytes("m.npz", &b, limits()) {
                Ok(_) => accepted += 1,
                Err(e) => assert_eq!(e.file, "m.npz"),
            }
            if let Ok(text) = std::str::from_utf8(&b) {
                runs += 1;
                match read_dump_str("m.json", text, limits()).and_then(|d| d.layer_cases()) {
                    Ok(_) => accepted += 1,
                    Err(e) => assert_eq!(e.file, "m.json"),
                }
            }
        }
    }
    eprintln!("reader_mutations: {runs} reader runs, {accepted} accepted, no panic");
    assert!(accepted > 0, "some mutations keep a valid file");
}
