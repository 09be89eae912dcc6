use combined_margin::pipeline::fused::{self, Real, Stream};
use std::time::Instant;
fn main() {
    let n = 100_000usize;
    let reps = 200;
    let x: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32) * 0.0004 - 0.2).collect();
    let mut y = vec![1f32; n];
    for round in 0..2 {
    let t0 = Instant::now();
    for _ in 0..reps { for (o, &v) in y.iter_mut().zip(&x) { *o = v.exp_fast(); } std::hint::black_box(&mut y); }
    println!("{round} exp_fast map: {:.3} ns/elem {}", t0.elapsed().as_secs_f64() * 1e9 / (n*reps) as f64, y[n/2]);
    let t0 = Instant::now();
    for _ in 0..reps { for (o, &v) in y.iter_mut().zip(&x) { *o = v.exp(); } std::hint::black_box(&mut y); }
    println!("libm exp map: {:.3} ns/elem {}", t0.elapsed().as_secs_f64() * 1e9 / (n*reps) as f64, y[n/2]);
    let t0 = Instant::now();
    let mut acc = Stream::empty();
    for _ in 0..reps { fused::stream_scaled(std::hint::black_box(&x), 64.0f32, &mut acc); }
    println!("stream: {:.3} ns/elem {:?}", t0.elapsed().as_secs_f64() * 1e9 / (n*reps) as f64, acc);
    let t0 = Instant::now();
    for _ in 0..reps { fused::write_probs_scaled(std::hint::black_box(&x), 64.0f32, 3.0, 0.5, &mut y); std::hint::black_box(&mut y); }
    println!("write: {:.3} ns/elem {}", t0.elapsed().as_secs_f64() * 1e9 / (n*reps) as f64, y[n/2]);
    let t0 = Instant::now();
    for _ in 0..reps { y.copy_from_slice(std::hint::black_box(&x)); std::hint::black_box(&mut y); }
    println!("copy: {:.3} ns/elem {}", t0.elapsed().as_secs_f64() * 1e9 / (n*reps) as f64, y[n/2]);
    }
}
