//! Arbitrary bytes into the `.npz` layer reader: a value or a located error, never a
//! panic, and never an allocation sized by a declared shape over the limits.
#![no_main]

use combined_margin::fixture::{read_layer_npz_bytes, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_elements: 1 << 16,
        max_file_bytes: 1 << 20,
    };
    let _ = read_layer_npz_bytes("fuzz.npz", data, limits);
});
