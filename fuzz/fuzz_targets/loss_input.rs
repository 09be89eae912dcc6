//! Arbitrary bytes into `cmargin loss --input`'s reader (the same limit-checked NPY/NPZ
//! reader as `fixture_npz`), then, for what it accepts, the fused loss and its gradient:
//! a value or a located error, never a panic, never an allocation sized by a declared shape.
#![no_main]

use combined_margin::fixture::loss_input::{read_loss_input_bytes, Arrays};
use combined_margin::fixture::Limits;
use combined_margin::pipeline::{fused, reference, LossConfig};
use combined_margin::{Dtype, Params, Profile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_elements: 1 << 16,
        max_file_bytes: 1 << 20,
    };
    let Ok(input) = read_loss_input_bytes("fuzz.npz", data, limits) else {
        return;
    };
    let [m1, m2, m3] = input.params.unwrap_or([1.0, 0.3, 0.2]);
    let p = Params::new(m1, m2, m3).with_scale(input.s.unwrap_or(64.0));
    if p.validate().is_err() {
        return;
    }
    let profile = input
        .profile
        .as_deref()
        .and_then(|n| Profile::preset(n).ok())
        .unwrap_or_else(Profile::recommended);
    let cfg = LossConfig::exact(p, profile, Dtype::F64, 0.0);
    let cos = match input.arrays {
        Arrays::Cos(c) => c,
        Arrays::FeaturesWeights(x, w) => {
            match reference::forward(x.view(), w.view(), &input.labels, &cfg) {
                Ok(f) => f.head.cos,
                Err(_) => return,
            }
        }
    };
    let mut grad = ndarray::Array2::<f64>::zeros(cos.dim());
    let _ = fused::forward_backward(cos.view(), &input.labels, &cfg, grad.view_mut());
});
