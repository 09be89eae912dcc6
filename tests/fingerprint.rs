//! `--profile auto`: outputs produced under a known profile are recognised as that profile,
//! including a policy variant the presets do not name (teeth: a neighbour that differs in
//! one policy does not fit every element).

use combined_margin::catalogue::edge_cases;
use combined_margin::fingerprint;
use combined_margin::fixture::LayerCase;
use combined_margin::profile::InputDomain;
use combined_margin::{layer, Dtype, Params, Profile};
use ndarray::Array2;

/// One row per catalogue value (and a uniform sweep), target in column 0, under `truth`.
fn outputs_of(truth: &Profile, p: Params, dt: Dtype) -> LayerCase {
    let mut xs = edge_cases(&Profile::caffe_gpu(), &p, dt);
    xs.extend((0..200).map(|i| dt.round(-1.0 + 2.0 * i as f64 / 199.0)));
    let (n, c) = (xs.len(), 2);
    let cos: Vec<f64> = xs.iter().flat_map(|&x| [x, 0.25]).collect();
    let top: Vec<f64> = (0..n * c)
        .map(|i| dt.round(0.5 + 0.001 * (i % 7) as f64))
        .collect();
    let labels = vec![0i64; n];
    let cos_a = Array2::from_shape_vec((n, c), cos.clone()).unwrap();
    let top_a = Array2::from_shape_vec((n, c), top.clone()).unwrap();
    let fwd = layer::forward(cos_a.view(), &labels, &p, truth, dt).unwrap();
    let bwd = layer::backward(cos_a.view(), &labels, top_a.view(), &p, truth, dt).unwrap();
    LayerCase {
        name: format!("{}_{dt}", truth.name),
        params: p,
        params_effective: p,
        scaled: false,
        easy_margin: None,
        n,
        c,
        cos,
        labels,
        top_diff: Some(top),
        forward: Some(fwd.iter().map(|&v| dt.round(v)).collect()),
        backward: Some(bwd.iter().map(|&v| dt.round(v)).collect()),
    }
}

#[test]
fn recognises_presets_and_a_clamp_variant() {
    let p = Params::new(1.0, 0.5, 0.0);
    let variant = Profile {
        domain: InputDomain::Clamp { eps: 1e-3 },
        ..Profile::caffe_gpu()
    };
    // (truth, the name the fingerprint must give, a neighbour that must not fit every element)
    for (truth, want, rival) in [
        (
            Profile::caffe_gpu(),
            "caffe-gpu",
            "caffe-gpu with eps = 1e-3",
        ),
        (Profile::analytic(), "analytic", "arcface-thmm"),
        (Profile::recommended(), "recommended", "caffe-gpu"),
        (variant, "caffe-gpu with eps = 1e-3", "caffe-gpu"),
    ] {
        let case = outputs_of(&truth, p, Dtype::F64);
        let ranked = fingerprint::rank(std::slice::from_ref(&case), Dtype::F64).unwrap();
        assert_eq!(ranked[0].profile.name, want, "outputs of {}", truth.name);
        assert_eq!(ranked[0].share, 1.0);
        let r = ranked.iter().find(|f| f.profile.name == rival).unwrap();
        assert!(
            r.share < 1.0,
            "{want}: the rival {rival} fits too ({})",
            r.share
        );
    }
}
