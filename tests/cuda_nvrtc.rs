//! The kernels compile with NVRTC 13.0 for compute_90, from the text embedded in the binary,
//! into PTX the CUDA 13.0 driver loads. The tests that need libnvrtc (no GPU) are
//! `#[ignore = "needs NVRTC …"]`, so `cargo test` without it reports them as ignored; `.ci/run`
//! installs the pinned wheel and runs them with `--ignored`, and there an absent NVRTC fails.

use combined_margin::cuda::device::{self, CudaError};
use std::io::Write;

/// Panics with the reason when NVRTC is not loadable (the test was asked to run).
pub fn require_nvrtc(test: &str) {
    if !device::nvrtc_present() {
        panic!("{test}: needs NVRTC: {}", CudaError::NvrtcAbsent);
    }
}

#[test]
#[ignore = "needs NVRTC 13.0 (libnvrtc on LD_LIBRARY_PATH): .ci/run runs it with --ignored"]
fn kernels_compile_for_compute_90() {
    require_nvrtc("cuda_nvrtc::kernels_compile_for_compute_90");
    let (ptx, first) = device::compile(device::CI_ARCH)
        .unwrap_or_else(|e| panic!("combined_margin.cu does not compile: {e}"));
    let (_, second) = device::compile(device::CI_ARCH).expect("compiles twice");
    let text = ptx.to_src();
    let isa = device::ptx_isa(&text).expect("PTX has a .version line");
    let _ = writeln!(
        std::io::stderr().lock(),
        "cuda_nvrtc: {} kernels, {} lines of CUDA -> {} bytes of PTX ISA {}.{} for {}; NVRTC compile {:.0} ms (first call, incl. library load), {:.0} ms (second)",
        device::KERNELS.len(),
        device::program_text().lines().count(),
        text.len(),
        isa.0,
        isa.1,
        device::CI_ARCH,
        first.as_secs_f64() * 1e3,
        second.as_secs_f64() * 1e3,
    );

    assert!(
        isa <= device::MAX_PTX_ISA,
        "PTX ISA {isa:?} is newer than the CUDA 13.0 driver accepts ({:?}): is NVRTC the pinned 13.0?",
        device::MAX_PTX_ISA
    );
    let mut entries = device::ptx_entries(&text);
    entries.sort();
    let mut want: Vec<String> = device::KERNELS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(entries, want, "PTX entries vs device::KERNELS");

    // The fused kernels move the row in 16-byte vectors: loads in both passes, stores in pass 2.
    for (name, vec) in [("cm_fused_f32", "v4.f32"), ("cm_fused_f64", "v2.f64")] {
        let body = device::ptx_entry_body(&text, name).expect("entry present");
        for op in [
            format!("ld.global.nc.{vec}"),
            format!("ld.global.cs.{vec}"),
            format!("st.global.cs.{vec}"),
        ] {
            assert!(body.contains(&op), "{name}: no `{op}` in its PTX");
        }
    }
}

/// A compile error comes back as a typed error carrying NVRTC's log, and the kernel file on its
/// own (its #include unresolved) does not compile: nothing is read from disk at run time.
#[test]
#[ignore = "needs NVRTC 13.0 (libnvrtc on LD_LIBRARY_PATH): .ci/run runs it with --ignored"]
fn compile_errors_carry_the_log() {
    require_nvrtc("cuda_nvrtc::compile_errors_carry_the_log");
    let broken =
        device::program_text().replace("cm_eval<T>(row[y], pr).out", "cm_eval<T>(row[y], pr).nope");
    match device::compile_text(&broken, device::CI_ARCH) {
        Err(CudaError::Compile(log)) => assert!(log.contains("nope"), "log: {log}"),
        other => panic!("expected a compile error, got {:?}", other.map(|_| ())),
    }
    match device::compile_text(device::SOURCE, device::CI_ARCH) {
        Err(CudaError::Compile(log)) => {
            assert!(log.contains("combined_margin.cuh"), "log: {log}")
        }
        other => panic!("the bare .cu compiled: {:?}", other.map(|_| ())),
    }
}

/// What NVRTC compiles is the .cu with its one include replaced by the header, once.
#[test]
fn program_text_embeds_the_header_once() {
    assert_eq!(device::SOURCE.matches(device::INCLUDE_LINE).count(), 1);
    let text = device::program_text();
    assert!(!text.contains(device::INCLUDE_LINE));
    assert_eq!(text.matches("#define COMBINED_MARGIN_CUH").count(), 1);
    assert!(!text.contains(device::ABI_INCLUDE_LINE));
    assert_eq!(text.matches("#define CM_ABI_H").count(), 1);
    assert_eq!(
        text.len(),
        device::SOURCE.len() - device::INCLUDE_LINE.len() + device::HEADER.len()
            - device::ABI_INCLUDE_LINE.len()
            + device::ABI.len()
    );
}

/// `device::KERNELS` lists exactly the source's kernels (the launches load them by name).
#[test]
fn kernel_list_matches_the_source() {
    let found = device::source_kernels(device::SOURCE);
    assert_eq!(found, device::KERNELS.to_vec());
    // The parser sees a kernel added to the text.
    let more = format!(
        "{}\nextern \"C\" __global__ void cm_extra(int* x) {{}}\n",
        device::SOURCE
    );
    assert_eq!(
        device::source_kernels(&more).len(),
        device::KERNELS.len() + 1
    );
}

/// The ISA gate rejects the PTX the unpinned NVRTC 13.5 writes.
#[test]
fn ptx_isa_gate_rejects_newer_ptx() {
    let isa = |v: &str| device::ptx_isa(&format!("//\n.version {v}\n.target sm_90\n"));
    assert_eq!(isa("9.0"), Some((9, 0)));
    assert!(isa("9.0").unwrap() <= device::MAX_PTX_ISA);
    assert!(isa("9.5").unwrap() > device::MAX_PTX_ISA);
    assert!(isa("10.0").unwrap() > device::MAX_PTX_ISA);
    assert_eq!(device::ptx_isa(".target sm_90\n"), None);
}

/// Register use of every kernel for sm_90, from ptxas through NVRTC (reported, and bounded: the
/// f32 fused kernel must keep 4 blocks of 512 threads per SM, i.e. ≤ 32 registers, to hold
/// enough loads in flight).
#[test]
#[ignore = "needs NVRTC 13.0 (libnvrtc on LD_LIBRARY_PATH): .ci/run runs it with --ignored"]
fn kernel_registers_for_sm_90() {
    require_nvrtc("cuda_nvrtc::kernel_registers_for_sm_90");
    let regs = device::ptxas_registers("sm_90").unwrap_or_else(|e| panic!("{e}"));
    let mut lines = vec!["cuda_nvrtc: ptxas (sm_90) registers per thread".to_string()];
    for (k, r, note) in &regs {
        lines.push(format!("  {k:<24} {r:>3}  {note}"));
    }
    let _ = writeln!(std::io::stderr().lock(), "{}", lines.join("\n"));
    let mut names: Vec<&str> = regs.iter().map(|(k, _, _)| k.as_str()).collect();
    names.sort();
    let mut want = device::KERNELS.to_vec();
    want.sort();
    assert_eq!(names, want);
    let fused_f32 = regs.iter().find(|(k, _, _)| k == "cm_fused_f32").unwrap();
    assert!(
        fused_f32.1 <= 32,
        "cm_fused_f32 uses {} registers",
        fused_f32.1
    );
}

/// The log parser reads ptxas's lines (and so would notice a kernel missing from them).
#[test]
fn ptxas_log_parser_reads_entries() {
    let log = "ptxas info    : Compiling entry function 'cm_a' for 'sm_90'\n\
               ptxas info    : Used 32 registers, used 1 barriers, 264 bytes smem\n\
               ptxas info    : Compiling entry function 'cm_b' for 'sm_90'\n\
               ptxas info    : Used 58 registers, used 1 barriers, 40 bytes cumulative stack size\n";
    let got = device::parse_ptxas_log(log);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].0.as_str(), got[0].1), ("cm_a", 32));
    assert_eq!((got[1].0.as_str(), got[1].1), ("cm_b", 58));
    assert!(got[1].2.contains("stack"));
}
