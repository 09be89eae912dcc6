//! `--profile auto`: outputs produced under a profile drawn from the policy space are
//! fingerprinted back to that profile, or to one the search reports as indistinguishable on
//! those inputs; on edge inputs (the catalogue and the kinks of both profiles) nothing that
//! an input could tell apart may remain tied (teeth: a one-axis neighbour must not fit).

use combined_margin::catalogue::edge_cases;
use combined_margin::fixture::LayerCase;
use combined_margin::kinks;
use combined_margin::rng::SplitMix64;
use combined_margin::space::{self, Axis};
use combined_margin::verdict::search as fingerprint;
use combined_margin::{layer, Dtype, Params, Profile};
use ndarray::Array2;

/// One row per input, target in column 0 (column 1 a plain non-target), under `truth`.
pub fn outputs_of(truth: &Profile, p: Params, dt: Dtype, xs: &[f64]) -> LayerCase {
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
        row_params: None,
        modulation: combined_margin::modulation::Modulation::None,
        lambda: None,
        subcenters: None,
    }
}

/// Edge inputs for a pair of profiles: both catalogues, ±4 floats around every kink of both,
/// and a uniform sweep.
fn edge_inputs(a: &Profile, b: &Profile, p: &Params, dt: Dtype) -> Vec<f64> {
    let mut xs = edge_cases(a, p, dt);
    xs.extend(edge_cases(b, p, dt));
    for prof in [a, b] {
        for k in kinks::kinks(prof, p, dt) {
            let mut x = dt.round(k.c);
            for _ in 0..4 {
                x = dt.round(x - dt.ulp(x));
            }
            for _ in 0..9 {
                xs.push(x);
                x = dt.round(x + dt.ulp(x));
            }
        }
    }
    xs.extend((0..200).map(|i| dt.round(-1.0 + 2.0 * i as f64 / 199.0)));
    xs
}

/// A profile of the space at random: a preset with one or two axes changed (target-touching
/// axes; the label and op-math axes need other inputs).
fn random_profile(rng: &mut SplitMix64) -> Profile {
    let presets = Profile::presets();
    let mut p = presets[rng.below(presets.len() as u64) as usize].clone();
    let axes: Vec<Axis> = Axis::ALL
        .into_iter()
        .filter(|a| a.touches_targets())
        .collect();
    for _ in 0..1 + rng.below(2) {
        let axis = axes[rng.below(axes.len() as u64) as usize];
        let vals = axis.values(&p);
        p = vals[rng.below(vals.len() as u64) as usize].clone();
    }
    p
}

/// Draws of the space (at most two axes from a preset, with their seed constants) the local
/// search may fail to reach, out of 36: where every single move from each start worsens the
/// share (SPEC.md §3.8, "Search limits"). Measured: 1 (a sine guard hidden by a clip, below).
const UNREACHED_DRAWS_MAX: usize = 2;

#[test]
fn space_profiles_are_recognised_or_reported_indistinguishable() {
    let mut rng = SplitMix64::new(0x5eed_f1a9);
    let configs = [(1.0, 0.5, 0.0), (1.0, 0.3, 0.2), (1.35, 0.0, 0.0)];
    let (mut exact, mut tied, mut unreached, mut total) = (0, 0, Vec::new(), 0);
    for draw in 0..36 {
        let truth = random_profile(&mut rng);
        let (m1, m2, m3) = configs[draw % configs.len()];
        let p = Params::new(m1, m2, m3);
        let dt = if draw % 2 == 0 {
            Dtype::F64
        } else {
            Dtype::F32
        };
        let xs = edge_inputs(&truth, &truth, &p, dt);
        let case = outputs_of(&truth, p, dt, &xs);
        let search = fingerprint::search(std::slice::from_ref(&case), dt).unwrap();
        let best = search.best();
        total += 1;
        if best.share < 1.0 {
            // Not reached: the search says no point it visited explains every element (never
            // a wrong point claimed to fit). The truth itself does fit, so this is the search's
            // limit, counted below.
            let mut scorer = fingerprint::Scorer::new(std::slice::from_ref(&case), dt);
            let own = scorer.score(&truth, 0).unwrap().unwrap();
            assert_eq!(
                own.share, 1.0,
                "draw {draw}: the truth {} does not fit its own outputs",
                truth.name
            );
            unreached.push(format!(
                "draw {draw}: {} (best found: {}, {:.3}% within)",
                truth.name,
                best.profile.name,
                100.0 * best.share
            ));
            continue;
        }
        if best.profile.same_policies(&truth) {
            exact += 1;
            continue;
        }
        // Not the truth: then the truth fits as well, and no catalogue or kink input
        // separates it from the answer (the inputs held all of them).
        let sep =
            fingerprint::separating_input(std::slice::from_ref(&case), &best.profile, &truth, dt);
        assert_eq!(
            sep,
            None,
            "draw {draw}: outputs of {:?} fingerprinted as {} although c = {:?} tells them apart",
            space::differences(&best.profile, &truth),
            best.profile.name,
            sep
        );
        tied += 1;
    }
    println!(
        "fingerprint: {total} random profiles of the space ({} in all): {exact} recognised exactly, {tied} indistinguishable on every edge input, {} not reached",
        space::size(),
        unreached.len()
    );
    for u in &unreached {
        println!("  not reached: {u}");
    }
    // Many one- or two-axis changes are invisible at a given parameter set (a shortcut away
    // from (1, 0), a clip the factor never reaches): those are the ties, verified above.
    assert!(exact > 0 && exact + tied + unreached.len() == total);
    assert!(
        unreached.len() <= UNREACHED_DRAWS_MAX,
        "{} draws not reached (at most {UNREACHED_DRAWS_MAX}):\n{}",
        unreached.len(),
        unreached.join("\n")
    );
}

/// Teeth: for a few presets, every one-axis neighbour that an edge input separates scores
/// below 1, and the search returns the preset itself.
#[test]
fn presets_are_recognised_and_separable_neighbours_do_not_fit() {
    let p = Params::new(1.0, 0.5, 0.0);
    for name in [
        "caffe-gpu",
        "analytic",
        "recommended",
        "oneflow-cpu",
        "textbook",
    ] {
        let truth = Profile::preset(name).unwrap();
        let xs = edge_inputs(&truth, &truth, &p, Dtype::F64);
        let case = outputs_of(&truth, p, Dtype::F64, &xs);
        let search = fingerprint::search(std::slice::from_ref(&case), Dtype::F64).unwrap();
        assert!(
            search.best().profile.same_policies(&truth),
            "outputs of {name} fingerprinted as {}",
            search.best().profile.name
        );
        let mut scorer = fingerprint::Scorer::new(std::slice::from_ref(&case), Dtype::F64);
        for axis in Axis::ALL.into_iter().filter(|a| a.touches_targets()) {
            for rival in axis.values(&truth).into_iter().skip(1) {
                let sep = fingerprint::separating_input(
                    std::slice::from_ref(&case),
                    &truth,
                    &rival,
                    Dtype::F64,
                );
                let fit = scorer.score(&rival, 1).unwrap().unwrap();
                if sep.is_some() {
                    assert!(
                        fit.share < 1.0,
                        "{name}: the neighbour {} fits although c = {sep:?} separates",
                        rival.name
                    );
                }
            }
        }
    }
}
