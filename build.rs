//! Build steps, one module each:
//! 1. `build/abi.rs`: the Rust side of the kernel ABI, generated from `kernels/cm_abi.h`;
//! 2. `build/golden.rs`: the table of golden dumps that `src/embedded.rs` embeds;
//! 3. here: the per-entry math of the CUDA kernels (kernels/combined_margin.cuh) compiled as host
//!    C++, so that the test suite checks it against the f64 reference without a GPU.

#[path = "build/abi.rs"]
mod abi;
#[path = "build/golden.rs"]
mod golden;

fn main() {
    abi::generate();
    golden::embed();
    println!("cargo:rerun-if-changed=kernels/combined_margin.cuh");
    println!("cargo:rerun-if-changed=kernels/host_shim.cpp");
    cc::Build::new()
        .cpp(true)
        .file("kernels/host_shim.cpp")
        .include("kernels")
        // IEEE semantics as the device build (NVRTC, --fmad=false): no contraction into FMA,
        // no fast-math, so the host build performs the same rounded operations.
        .flag_if_supported("-ffp-contract=off")
        .flag_if_supported("-fno-fast-math")
        .flag_if_supported("-std=c++17")
        .warnings(true)
        .extra_warnings(true)
        .compile("cm_host_shim");
}
