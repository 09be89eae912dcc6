//! The fused head against the straightforward unfused head and a memcpy of the same bytes,
//! at the seed's shape (N = 128, C = 180,855, f32) and a small one (SPEC.md §8.5).
//!
//! Bytes: the floor of forward + backward is one read of cos and one write of the gradient,
//! 2·4·N·C bytes, which is what the memcpy moves (cos → a buffer of the same size). The fused
//! path reads cos twice (pass 1 stream, pass 2 gradient) and writes once; the second read hits
//! cache when a row (4·C bytes) stays there. The summary at the end times all three in the same
//! process, interleaved, and prints the ratios.

use combined_margin::pipeline::synthetic::SplitMix64;
use combined_margin::pipeline::{fused, unfused, LossConfig};
use combined_margin::{Dtype, Params, Profile};
use criterion::{black_box, BenchmarkId, Criterion, Throughput};
use ndarray::Array2;
use rayon::prelude::*;
use std::time::{Duration, Instant};

const SHAPES: [(&str, usize, usize); 2] = [
    ("seed_128x180855", 128, 180_855),
    ("small_64x1000", 64, 1000),
];

fn inputs(n: usize, c: usize) -> (Array2<f32>, Vec<i64>, LossConfig) {
    let mut r = SplitMix64::new(1);
    // Random-initialization-like cos (|cos| ≲ 0.2 at D = 512), uniform here: the kernels'
    // work does not depend on the values.
    let cos = Array2::from_shape_fn((n, c), |_| (0.4 * r.uniform() - 0.2) as f32);
    let labels = (0..n).map(|_| r.below(c as u64) as i64).collect();
    let cfg = LossConfig::exact(
        Params::new(1.0, 0.3, 0.2).with_scale(64.0),
        Profile::preset("recommended").unwrap(),
        Dtype::F32,
        0.0,
    );
    (cos, labels, cfg)
}

fn memcpy_par(src: &[f32], dst: &mut [f32]) {
    let chunk = src.len().div_ceil(rayon::current_num_threads()).max(1);
    dst.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(d, s)| d.copy_from_slice(s));
}

fn bench(c: &mut Criterion) {
    for (name, n, cl) in SHAPES {
        let (cos, labels, cfg) = inputs(n, cl);
        let mut grad = Array2::<f32>::zeros((n, cl));
        let mut g = c.benchmark_group(format!("pipeline/{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2))
            .throughput(Throughput::Bytes((2 * 4 * n * cl) as u64));
        g.bench_function(BenchmarkId::new("fused_fwd_bwd", "f32"), |b| {
            b.iter(|| fused::forward_backward(cos.view(), &labels, &cfg, grad.view_mut()).unwrap())
        });
        g.bench_function(BenchmarkId::new("unfused_fwd_bwd", "f32"), |b| {
            b.iter(|| unfused::forward_backward(cos.view(), &labels, &cfg).unwrap())
        });
        let mut ws = unfused::Workspace::new(n, cl);
        let mut grad_u = Array2::<f32>::zeros((n, cl));
        g.bench_function(BenchmarkId::new("unfused_reused_buffers", "f32"), |b| {
            b.iter(|| {
                unfused::forward_backward_with(
                    cos.view(),
                    &labels,
                    &cfg,
                    &mut ws,
                    grad_u.view_mut(),
                )
                .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("memcpy_par", "f32"), |b| {
            b.iter(|| memcpy_par(cos.as_slice().unwrap(), grad.as_slice_mut().unwrap()))
        });
        g.bench_function(BenchmarkId::new("memcpy_1thread", "f32"), |b| {
            b.iter(|| {
                grad.as_slice_mut()
                    .unwrap()
                    .copy_from_slice(cos.as_slice().unwrap())
            })
        });
        g.finish();
    }
}

/// Median seconds of `reps` runs of `f`, the candidates interleaved so that drifting load on a
/// shared machine hits them alike.
fn interleaved(reps: usize, fs: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut t = vec![Vec::new(); fs.len()];
    for _ in 0..reps {
        for (k, f) in fs.iter_mut().enumerate() {
            let t0 = Instant::now();
            f();
            t[k].push(t0.elapsed().as_secs_f64());
        }
    }
    t.into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// Seconds of CPU this thread has used (CLOCK_THREAD_CPUTIME_ID): unlike the wall clock, not
/// lengthened while other processes hold the core, so one-thread ratios survive a loaded machine
/// (the memory bandwidth they share still counts).
fn thread_cpu() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: t is a valid timespec; the clock id is a constant the kernel knows.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn summary() {
    println!();
    println!(
        "summary (median of interleaved runs, {} rayon threads)",
        rayon::current_num_threads()
    );
    println!(
        "{:<18} {:>9} {:>11} {:>11} {:>10} {:>11} {:>14} {:>14} {:>13}",
        "shape",
        "fused ms",
        "unfused ms",
        "unf.ws ms",
        "memcpy ms",
        "memcpy1 ms",
        "unfused/fused",
        "unf.ws/fused",
        "memcpy/fused"
    );
    for (name, n, cl) in SHAPES {
        let (cos, labels, cfg) = inputs(n, cl);
        let mut grad = Array2::<f32>::zeros((n, cl));
        let mut grad2 = Array2::<f32>::zeros((n, cl));
        let mut grad3 = Array2::<f32>::zeros((n, cl));
        let mut grad4 = Array2::<f32>::zeros((n, cl));
        let mut ws = unfused::Workspace::new(n, cl);
        let mut grad5 = Array2::<f32>::zeros((n, cl));
        let mut grad6 = Array2::<f32>::zeros((n, cl));
        let mut grad7 = Array2::<f32>::zeros((n, cl));
        // The unfused baseline is serial; the fused path on one thread separates fusion from
        // parallelism.
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let reps = if n * cl > 1_000_000 { 15 } else { 201 };
        let (mut cpu_fused, mut cpu_memcpy) = (Vec::new(), Vec::new());
        let t = interleaved(
            reps,
            &mut [
                &mut || {
                    black_box(
                        fused::forward_backward(cos.view(), &labels, &cfg, grad.view_mut())
                            .unwrap(),
                    );
                },
                &mut || {
                    black_box(unfused::forward_backward(cos.view(), &labels, &cfg).unwrap());
                },
                &mut || {
                    black_box(
                        unfused::forward_backward_with(
                            cos.view(),
                            &labels,
                            &cfg,
                            &mut ws,
                            grad4.view_mut(),
                        )
                        .unwrap(),
                    );
                },
                &mut || memcpy_par(cos.as_slice().unwrap(), grad2.as_slice_mut().unwrap()),
                &mut || {
                    grad3
                        .as_slice_mut()
                        .unwrap()
                        .copy_from_slice(cos.as_slice().unwrap())
                },
                &mut || {
                    one.install(|| {
                        black_box(
                            fused::forward_backward(cos.view(), &labels, &cfg, grad5.view_mut())
                                .unwrap(),
                        );
                    })
                },
                &mut || {
                    one.install(|| {
                        let t0 = thread_cpu();
                        black_box(
                            fused::forward_backward(cos.view(), &labels, &cfg, grad6.view_mut())
                                .unwrap(),
                        );
                        cpu_fused.push(thread_cpu() - t0);
                    })
                },
                &mut || {
                    one.install(|| {
                        let t0 = thread_cpu();
                        grad7
                            .as_slice_mut()
                            .unwrap()
                            .copy_from_slice(cos.as_slice().unwrap());
                        cpu_memcpy.push(thread_cpu() - t0);
                    })
                },
            ],
        );
        let (cf, cm) = (median(cpu_fused), median(cpu_memcpy));
        let gbs = |s: f64| (2 * 4 * n * cl) as f64 / s / 1e9;
        println!(
            "{:<18} {:>9.3} {:>11.3} {:>11.3} {:>10.3} {:>11.3} {:>14.2} {:>14.2} {:>12.0}%",
            name,
            t[0] * 1e3,
            t[1] * 1e3,
            t[2] * 1e3,
            t[3] * 1e3,
            t[4] * 1e3,
            t[1] / t[0],
            t[2] / t[0],
            100.0 * t[3] / t[0]
        );
        println!(
            "{:<18} {:>9} {:>11} {:>11} {:>10}  GB/s at 2*4*N*C = {:.1} MB",
            "",
            format!("{:.2}", gbs(t[0])),
            format!("{:.2}", gbs(t[1])),
            format!("{:.2}", gbs(t[2])),
            format!("{:.2}", gbs(t[3])),
            (2 * 4 * n * cl) as f64 / 1e6
        );
        println!(
            "{:<18} fused on 1 thread {:.3} ms: unfused/fused(1 thread) {:.2}, unf.ws/fused(1 thread) {:.2}, memcpy1/fused(1 thread) {:.0}%",
            "",
            t[5] * 1e3,
            t[1] / t[5],
            t[2] / t[5],
            100.0 * t[4] / t[5]
        );
        println!(
            "{:<18} thread CPU time, 1 thread each: fused {:.3} ms, memcpy {:.3} ms: memcpy/fused {:.0}%",
            "",
            cf * 1e3,
            cm * 1e3,
            100.0 * cm / cf
        );
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    summary();
}
