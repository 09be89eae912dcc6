//! The kernels on a GPU: compiled at run time by NVRTC from the text embedded in this binary
//! (`include_str!`, so a test binary built on one machine runs on another), loaded and launched
//! with cudarc's driver API.
//!
//! cudarc loads libcuda and libnvrtc dynamically; its calls panic when a library is absent, so
//! every entry point here checks [`driver_present`] / [`nvrtc_present`] first and reports
//! absence as a value, never a panic.

use super::{code, KernelFloat, KernelInterTopK, KernelProfile, KernelRows, RowTable};
use crate::error::Error;
use crate::layer;
use crate::modulation::{CurricularGradient, CurricularMask, Modulation};
use crate::params::Params;
use crate::profile::Profile;
use cudarc::driver::{
    CudaContext, CudaModule, CudaSlice, CudaStream, CudaView, CudaViewMut, DevicePtr, LaunchConfig,
    PushKernelArg, SyncOnDrop,
};
use cudarc::nvrtc::{CompileOptions, Ptx};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `kernels/combined_margin.cuh`, embedded.
pub const HEADER: &str = include_str!("../../kernels/combined_margin.cuh");
/// `kernels/combined_margin.cu`, embedded.
pub const SOURCE: &str = include_str!("../../kernels/combined_margin.cu");
/// The line of [`SOURCE`] that [`program_text`] replaces by [`HEADER`] (NVRTC gets one text
/// and no include path: nothing is read from disk at run time).
pub const INCLUDE_LINE: &str = "#include \"combined_margin.cuh\"";
/// `kernels/cm_abi.h`, embedded: the header's include of it is replaced the same way.
pub const ABI: &str = include_str!("../../kernels/cm_abi.h");
/// The line of [`HEADER`] that [`program_text`] replaces by [`ABI`].
pub const ABI_INCLUDE_LINE: &str = "#include \"cm_abi.h\"";

/// Every `extern "C"` kernel of [`SOURCE`].
pub const KERNELS: [&str; 25] = [
    "cm_margin_forward_f32",
    "cm_margin_forward_f64",
    "cm_margin_backward_f32",
    "cm_margin_backward_f64",
    "cm_margin_forward_f16",
    "cm_margin_forward_bf16",
    "cm_margin_backward_f16",
    "cm_margin_backward_bf16",
    "cm_curricular_forward_f32",
    "cm_curricular_forward_f64",
    "cm_curricular_backward_f32",
    "cm_curricular_backward_f64",
    "cm_intertopk_forward_f32",
    "cm_intertopk_forward_f64",
    "cm_intertopk_backward_f32",
    "cm_intertopk_backward_f64",
    "cm_subcenter_max_f32",
    "cm_subcenter_max_f64",
    "cm_subcenter_backward_f32",
    "cm_subcenter_backward_f64",
    "cm_fused_f32",
    "cm_fused_f64",
    "cm_count_valid",
    "cm_mean_loss_f32",
    "cm_mean_loss_f64",
];

/// Threads per block of `cm_fused_*` (`CM_FUSED_THREADS`, its `__launch_bounds__`).
pub const FUSED_THREADS: u32 = 512;
/// Threads of the one-block kernels (`CM_SMALL_THREADS`; a power of two for their tree sums).
pub const SMALL_THREADS: u32 = 1024;
/// Threads per block of the margin kernels (one thread per row).
pub const MARGIN_THREADS: u32 = 256;

/// The architecture CI compiles for (H100/H200).
pub const CI_ARCH: &str = "compute_90";

/// NVRTC options besides the architecture. `--fmad=false`: no FMA contraction, so the device
/// performs the rounded operations the host build (and SPEC.md §9) lists; the math library
/// keeps its own internal FMAs either way.
pub const NVRTC_FLAGS: [&str; 1] = ["--fmad=false"];

/// Errors of the device path.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error("libnvrtc not found: install it (pip install --target .cuda nvidia-cuda-nvrtc==13.0.88) and put its lib directory (.cuda/nvidia/cu13/lib) on LD_LIBRARY_PATH")]
    NvrtcAbsent,
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    #[error("NVRTC compile failed: {0}")]
    Compile(String),
    #[error("CUDA driver error in {what}: {err}")]
    Driver {
        what: &'static str,
        err: cudarc::driver::DriverError,
    },
    #[error(transparent)]
    Input(#[from] Error),
}

fn drv(what: &'static str) -> impl FnOnce(cudarc::driver::DriverError) -> CudaError {
    move |err| CudaError::Driver { what, err }
}

/// Whether libnvrtc can be loaded (searched on LD_LIBRARY_PATH by cudarc's name list,
/// `libnvrtc.so.13` among them).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to dlopen candidate names; loads nothing else.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether libcuda (the driver) can be loaded. Without it `CudaContext::new` panics.
pub fn driver_present() -> bool {
    // SAFETY: as above.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The program NVRTC compiles: [`SOURCE`] with its one include line replaced by [`HEADER`].
pub fn program_text() -> String {
    debug_assert_eq!(SOURCE.matches(INCLUDE_LINE).count(), 1);
    debug_assert_eq!(HEADER.matches(ABI_INCLUDE_LINE).count(), 1);
    SOURCE.replacen(INCLUDE_LINE, &HEADER.replacen(ABI_INCLUDE_LINE, ABI, 1), 1)
}

/// Compiles every kernel to PTX for `arch` (e.g. `compute_90`); returns the PTX and the
/// NVRTC compile time.
pub fn compile(arch: &str) -> Result<(Ptx, Duration), CudaError> {
    compile_text(&program_text(), arch)
}

/// Compiles a program text with the kernels' NVRTC options (tests feed it broken text).
pub fn compile_text(text: &str, arch: &str) -> Result<(Ptx, Duration), CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::NvrtcAbsent);
    }
    let mut options: Vec<String> = NVRTC_FLAGS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={arch}"));
    let opts = CompileOptions {
        options,
        name: Some("combined_margin.cu".into()),
        ..Default::default()
    };
    let t0 = Instant::now();
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(text, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => {
            CudaError::Compile(log.to_string_lossy().into_owned())
        }
        other => CudaError::Compile(format!("{other:?}")),
    })?;
    Ok((ptx, t0.elapsed()))
}

/// Register use per kernel as ptxas reports it: the program compiled by NVRTC for a real
/// architecture (`sm_90`) with `--ptxas-options=-v`. Returns (kernel, registers, spill/stack
/// note) per entry, from NVRTC's log. No GPU needed.
pub fn ptxas_registers(sm: &str) -> Result<Vec<(String, u32, String)>, CudaError> {
    use cudarc::nvrtc::result;
    use std::ffi::{CStr, CString};
    if !nvrtc_present() {
        return Err(CudaError::NvrtcAbsent);
    }
    let src = CString::new(program_text()).expect("no NUL in the kernel text");
    let name = CString::new("combined_margin.cu").expect("no NUL");
    let mut options: Vec<String> = NVRTC_FLAGS.iter().map(|s| s.to_string()).collect();
    options.push(format!("--gpu-architecture={sm}"));
    options.push("--ptxas-options=-v".into());
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| CudaError::Compile(format!("nvrtcCreateProgram: {e:?}")))?;
    // SAFETY: `prog` is a live program; it is destroyed once, below, on every path.
    let compiled = unsafe { result::compile_program(prog, &options) };
    let log = unsafe { result::get_program_log(prog) };
    let _ = unsafe { result::destroy_program(prog) };
    let log = log.map_err(|e| CudaError::Compile(format!("nvrtcGetProgramLog: {e:?}")))?;
    // SAFETY: NVRTC's log is NUL-terminated.
    let log = unsafe { CStr::from_ptr(log.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    compiled.map_err(|_| CudaError::Compile(log.clone()))?;
    Ok(parse_ptxas_log(&log))
}

/// (kernel, registers, the rest of ptxas's "Used …" line) per "Compiling entry function".
pub fn parse_ptxas_log(log: &str) -> Vec<(String, u32, String)> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            current = rest.split('\'').next().map(str::to_string);
        } else if let Some(rest) = line.split("Used ").nth(1) {
            let regs = rest.split(' ').next().and_then(|r| r.parse().ok());
            if let (Some(k), Some(regs)) = (current.take(), regs) {
                let note = rest.split_once(", ").map_or("", |x| x.1).trim().to_string();
                out.push((k, regs, note));
            }
        }
    }
    out
}

/// The newest PTX ISA the CUDA 13.0 driver (580) loads: NVRTC 13.0 emits 9.0; NVRTC 13.5
/// emits 9.5, which that driver rejects — hence the pinned nvidia-cuda-nvrtc==13.0.88.
pub const MAX_PTX_ISA: (u32, u32) = (9, 0);

/// The `.version major.minor` line of a PTX text.
pub fn ptx_isa(ptx: &str) -> Option<(u32, u32)> {
    let v = ptx
        .lines()
        .find_map(|l| l.trim().strip_prefix(".version "))?;
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The names of the `.entry` functions of a PTX text, in order.
pub fn ptx_entries(ptx: &str) -> Vec<String> {
    ptx.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix(".visible .entry ")?;
            Some(rest.split('(').next()?.trim().to_string())
        })
        .collect()
}

/// The PTX text of one `.entry` function (from its header to the next entry).
pub fn ptx_entry_body<'a>(ptx: &'a str, name: &str) -> Option<&'a str> {
    let start = ptx.find(&format!(".visible .entry {name}("))?;
    let rest = &ptx[start + 1..];
    let end = rest
        .find(".visible .entry ")
        .map_or(ptx.len(), |e| start + 1 + e);
    Some(&ptx[start..end])
}

/// The `extern "C"` kernel names declared in a CUDA source text, in order.
pub fn source_kernels(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("extern \"C\" __global__ void") {
        rest = &rest[i + "extern \"C\" __global__ void".len()..];
        let decl = rest.split('(').next().unwrap_or("");
        // `__launch_bounds__(...)` precedes the name: skip past its parentheses.
        let decl = if decl.trim() == "__launch_bounds__" {
            let close = rest.find(')').map_or(rest.len(), |c| c + 1);
            rest[close..].split('(').next().unwrap_or("")
        } else {
            decl
        };
        names.push(decl.trim().to_string());
    }
    names
}

/// A device with the kernels loaded.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    module: Arc<CudaModule>,
    /// Device name as the driver reports it.
    pub name: String,
    /// Compute capability (major, minor).
    pub capability: (i32, i32),
    /// The architecture the kernels were compiled for.
    pub arch: String,
    /// NVRTC compile time of [`SOURCE`].
    pub compile_time: Duration,
}

/// Why no GPU is usable, when none is (for the one line a skipped test prints).
pub fn unavailable_reason() -> Option<String> {
    if !driver_present() {
        return Some("libcuda not found (no NVIDIA driver)".into());
    }
    match CudaContext::device_count() {
        Ok(n) if n > 0 => {}
        Ok(_) => return Some("the driver reports 0 devices".into()),
        Err(e) => return Some(format!("the driver reports no device ({e})")),
    }
    if !nvrtc_present() {
        return Some(CudaError::NvrtcAbsent.to_string());
    }
    None
}

impl Gpu {
    /// Opens device 0 and compiles the kernels for its architecture.
    pub fn open() -> Result<Gpu, CudaError> {
        if let Some(why) = unavailable_reason() {
            return Err(if nvrtc_present() {
                CudaError::NoDevice(why)
            } else if driver_present() {
                CudaError::NvrtcAbsent
            } else {
                CudaError::NoDevice(why)
            });
        }
        let ctx = CudaContext::new(0).map_err(drv("cuCtx (device 0)"))?;
        let name = ctx.name().map_err(drv("cuDeviceGetName"))?;
        let capability = ctx
            .compute_capability()
            .map_err(drv("compute capability"))?;
        let arch = format!("compute_{}{}", capability.0, capability.1);
        let (ptx, compile_time) = compile(&arch)?;
        let module = ctx.load_module(ptx).map_err(drv("cuModuleLoadData"))?;
        let stream = ctx.default_stream();
        Ok(Gpu {
            ctx,
            stream,
            module,
            name,
            capability,
            arch,
            compile_time,
        })
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn function(&self, name: &str) -> Result<cudarc::driver::CudaFunction, CudaError> {
        self.module
            .load_function(name)
            .map_err(drv("cuModuleGetFunction"))
    }

    /// Launches `cm_margin_forward_*`: `logits` ([n, c], cos on entry) has each valid row's
    /// target replaced by the margin; `status` ([n]) gets every row's status. `rows`: per-row
    /// parameters (None: the profile's scalars for every row).
    #[allow(clippy::too_many_arguments)]
    pub fn launch_margin_forward<T: KernelFloat>(
        &self,
        logits: &mut CudaViewMut<T>,
        labels: &CudaView<i64>,
        status: &mut CudaViewMut<i32>,
        n: usize,
        c: usize,
        kp: &KernelProfile,
        rows: Option<&DeviceRows>,
    ) -> Result<(), CudaError> {
        let none = KernelModulation::None;
        self.launch_modulated_forward(logits, labels, status, n, c, kp, rows, &none)
    }

    /// Launches `cm_margin_backward_*`: `grad` ([n, c], top_diff on entry) has each valid row's
    /// target multiplied by the factor at `cos`.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_margin_backward<T: KernelFloat>(
        &self,
        cos: &CudaView<T>,
        grad: &mut CudaViewMut<T>,
        labels: &CudaView<i64>,
        status: &mut CudaViewMut<i32>,
        n: usize,
        c: usize,
        kp: &KernelProfile,
        rows: Option<&DeviceRows>,
    ) -> Result<(), CudaError> {
        let none = KernelModulation::None;
        self.launch_modulated_backward(cos, grad, labels, status, n, c, kp, rows, &none)
    }

    /// Launches the margin layer's forward under the non-target modulation `m` (SPEC.md §11.3):
    /// `cm_margin_forward_*` (none), `cm_curricular_forward_*` or `cm_intertopk_forward_*`, as
    /// [`Gpu::launch_margin_forward`] plus the modulation of each row with a target.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_modulated_forward<T: KernelFloat>(
        &self,
        logits: &mut CudaViewMut<T>,
        labels: &CudaView<i64>,
        status: &mut CudaViewMut<i32>,
        n: usize,
        c: usize,
        kp: &KernelProfile,
        rows: Option<&DeviceRows>,
        m: &KernelModulation<T>,
    ) -> Result<(), CudaError> {
        check_device_shapes(n, c, logits.len(), labels.len(), status.len())?;
        check_rows(rows, n)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.function(&m.kernel("forward", T::SUFFIX))?;
        let (rows, _guards) = self.kernel_rows(rows);
        let (n64, c64) = (n as i64, c as i64);
        let mut b = self.stream.launch_builder(&f);
        b.arg(logits).arg(labels).arg(status).arg(&n64).arg(&c64);
        m.push_args(&mut b);
        b.arg(kp).arg(&rows);
        // SAFETY: argument types and order are the kernel's (the modulation's between c and
        // the profile); the kernel indexes only [0, n·c) of logits (labels checked in it) and
        // [0, n) of labels and status, and the views hold at least that many elements
        // (checked above).
        unsafe { b.launch(rows_config(n)?) }.map_err(drv("cm_*_forward"))?;
        Ok(())
    }

    /// Launches the margin layer's backward under the modulation `m`, as
    /// [`Gpu::launch_modulated_forward`]: `grad` (top_diff on entry) times each entry's factor
    /// at `cos`.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_modulated_backward<T: KernelFloat>(
        &self,
        cos: &CudaView<T>,
        grad: &mut CudaViewMut<T>,
        labels: &CudaView<i64>,
        status: &mut CudaViewMut<i32>,
        n: usize,
        c: usize,
        kp: &KernelProfile,
        rows: Option<&DeviceRows>,
        m: &KernelModulation<T>,
    ) -> Result<(), CudaError> {
        check_device_shapes(n, c, grad.len(), labels.len(), status.len())?;
        check_len("cos", n * c, cos.len())?;
        check_rows(rows, n)?;
        if n == 0 {
            return Ok(());
        }
        let f = self.function(&m.kernel("backward", T::SUFFIX))?;
        let (rows, _guards) = self.kernel_rows(rows);
        let (n64, c64) = (n as i64, c as i64);
        let mut b = self.stream.launch_builder(&f);
        b.arg(cos)
            .arg(grad)
            .arg(labels)
            .arg(status)
            .arg(&n64)
            .arg(&c64);
        m.push_args(&mut b);
        b.arg(kp).arg(&rows);
        // SAFETY: as launch_modulated_forward, plus [0, n·c) of cos.
        unsafe { b.launch(rows_config(n)?) }.map_err(drv("cm_*_backward"))?;
        Ok(())
    }

    /// Launches `cm_subcenter_max_*` (SPEC.md §11.2): `cos` [cells, K] (k fastest) -> `out`
    /// [cells], the max of each cell, and `arg` [cells], its first arg-max.
    pub fn launch_subcenter_max<T: KernelFloat>(
        &self,
        cos: &CudaView<T>,
        out: &mut CudaViewMut<T>,
        arg: &mut CudaViewMut<i64>,
        cells: usize,
        k: usize,
    ) -> Result<(), CudaError> {
        let lens = [cos.len(), out.len(), arg.len()];
        let Some((f, cells64, k64)) = self.subcenter_call::<T>("max", cells, k, lens)? else {
            return Ok(());
        };
        let mut b = self.stream.launch_builder(&f);
        b.arg(cos).arg(out).arg(arg).arg(&cells64).arg(&k64);
        // SAFETY: thread `cell` < cells reads cos [cell·k, (cell+1)·k) and writes out[cell],
        // arg[cell]; the views hold cells·k and cells elements (checked above).
        unsafe { b.launch(rows_config(cells)?) }.map_err(drv("cm_subcenter_max"))?;
        Ok(())
    }

    /// Launches `cm_subcenter_backward_*`: `d_cos` [cells] scattered to the arg-max `arg`
    /// [cells] of each cell of `grad` [cells, K], +0 elsewhere. An arg outside [0, K) (not
    /// from `cm_subcenter_max`) makes that cell NaN; it never indexes outside the cell.
    pub fn launch_subcenter_backward<T: KernelFloat>(
        &self,
        d_cos: &CudaView<T>,
        arg: &CudaView<i64>,
        grad: &mut CudaViewMut<T>,
        cells: usize,
        k: usize,
    ) -> Result<(), CudaError> {
        let lens = [grad.len(), d_cos.len(), arg.len()];
        let Some((f, cells64, k64)) = self.subcenter_call::<T>("backward", cells, k, lens)? else {
            return Ok(());
        };
        let mut b = self.stream.launch_builder(&f);
        b.arg(d_cos).arg(arg).arg(grad).arg(&cells64).arg(&k64);
        // SAFETY: thread `cell` < cells reads d_cos[cell] and arg[cell] and writes grad
        // [cell·k, (cell+1)·k) only (an arg outside [0, k) is not used as an index); the views
        // hold cells and cells·k elements (checked above).
        unsafe { b.launch(rows_config(cells)?) }.map_err(drv("cm_subcenter_backward"))?;
        Ok(())
    }

    /// The checks of a sub-centre launch (`lens`: the [cells, K] view's length, then the two
    /// [cells] views'), and its kernel `cm_subcenter_<which>_*` with cells and K as kernel
    /// arguments; None where there is no cell to launch for.
    #[allow(clippy::type_complexity)]
    fn subcenter_call<T: KernelFloat>(
        &self,
        which: &str,
        cells: usize,
        k: usize,
        lens: [usize; 3],
    ) -> Result<Option<(cudarc::driver::CudaFunction, i64, i64)>, CudaError> {
        check_subcenter_shapes(cells, k, lens[0], lens[1], lens[2])?;
        if cells == 0 {
            return Ok(None);
        }
        let f = self.function(&format!("cm_subcenter_{which}{}", T::SUFFIX))?;
        Ok(Some((f, cells as i64, k as i64)))
    }

    /// Launches the fused loss: `cm_count_valid`, `cm_fused_*` (one block per row), then
    /// `cm_mean_loss_*`. Writes `n_valid` ([1]), `grad` and `row_loss` (every element),
    /// `status` ([n]) and `loss` ([1], the VALID-normalized mean, f64). `rows`: per-row
    /// parameters (None: the profile's scalars for every row); s stays the profile's.
    #[allow(clippy::too_many_arguments)]
    pub fn launch_fused<T: KernelFloat>(
        &self,
        cos: &CudaView<T>,
        labels: &CudaView<i64>,
        bufs: &mut FusedBuffers<'_, T>,
        n: usize,
        c: usize,
        kp: &KernelProfile,
        rows: Option<&DeviceRows>,
    ) -> Result<(), CudaError> {
        check_device_shapes(n, c, bufs.grad.len(), labels.len(), bufs.status.len())?;
        check_rows(rows, n)?;
        check_len("cos", n * c, cos.len())?;
        check_len("row_loss", n, bufs.row_loss.len())?;
        check_len("n_valid", 1, bufs.n_valid.len())?;
        check_len("loss", 1, bufs.loss.len())?;
        if kp.clamp_all_entries != 0 || kp.round_trip_non_targets != 0 || kp.whole_matrix != 0 {
            return Err(Error::Invalid(
                "the fused loss kernel takes only profiles that leave non-targets unchanged (no clamp of every entry, no round trip of non-targets)".into(),
            )
            .into());
        }
        if c == 0 {
            return Err(
                Error::Invalid("the fused loss needs at least one class (C = 0)".into()).into(),
            );
        }
        let (n64, c64) = (n as i64, c as i64);
        let one_block = |threads: u32| LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };

        let f = self.function("cm_count_valid")?;
        let mut b = self.stream.launch_builder(&f);
        b.arg(labels)
            .arg(&n64)
            .arg(&c64)
            .arg(&kp.labels)
            .arg(&mut bufs.n_valid);
        // SAFETY: reads labels[0, n), writes n_valid[0].
        unsafe { b.launch(one_block(SMALL_THREADS)) }.map_err(drv("cm_count_valid"))?;

        if n > 0 {
            let grid = u32::try_from(n)
                .ok()
                .filter(|&g| g <= i32::MAX as u32)
                .ok_or_else(|| Error::Invalid(format!("N = {n} rows exceed the grid limit")))?;
            let f = self.function(&format!("cm_fused{}", T::SUFFIX))?;
            let (rows, _guards) = self.kernel_rows(rows);
            let n_valid = bufs.n_valid.as_view();
            let mut b = self.stream.launch_builder(&f);
            b.arg(cos)
                .arg(labels)
                .arg(&n_valid)
                .arg(&mut bufs.grad)
                .arg(&mut bufs.row_loss)
                .arg(&mut bufs.status)
                .arg(&c64)
                .arg(kp)
                .arg(&rows);
            let cfg = LaunchConfig {
                grid_dim: (grid, 1, 1),
                block_dim: (FUSED_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            // SAFETY: block i reads cos and writes grad in row i only ([i·c, (i+1)·c)), reads
            // cos[i, y] only for y in [0, c), writes row_loss[i] and status[i].
            unsafe { b.launch(cfg) }.map_err(drv("cm_fused"))?;
        }

        let f = self.function(&format!("cm_mean_loss{}", T::SUFFIX))?;
        let (row_loss, status, n_valid) = (
            bufs.row_loss.as_view(),
            bufs.status.as_view(),
            bufs.n_valid.as_view(),
        );
        let mut b = self.stream.launch_builder(&f);
        b.arg(&row_loss)
            .arg(&status)
            .arg(&n64)
            .arg(&n_valid)
            .arg(&mut bufs.loss);
        // SAFETY: reads row_loss and status [0, n) and n_valid[0]; writes loss[0].
        unsafe { b.launch(one_block(SMALL_THREADS)) }.map_err(drv("cm_mean_loss"))?;
        Ok(())
    }

    /// Uploads the columns of a per-row table (SPEC.md §9.2) for the margin launches.
    pub fn upload_rows(&self, table: &RowTable) -> Result<DeviceRows, CudaError> {
        let mut columns = Vec::with_capacity(8);
        for col in table.columns() {
            columns.push(self.upload(col)?);
        }
        Ok(DeviceRows {
            columns,
            stride: table.stride(),
        })
    }

    /// The kernel argument for `rows` (None: all pointers null), with the guards that order the
    /// columns' use on this stream: keep them until the launch is queued.
    fn kernel_rows<'a>(
        &'a self,
        rows: Option<&'a DeviceRows>,
    ) -> (KernelRows, Vec<SyncOnDrop<'a>>) {
        let Some(r) = rows else {
            return (KernelRows::scalar(), Vec::new());
        };
        let mut guards = Vec::with_capacity(8);
        let mut ptrs = [0u64; 8];
        for (p, col) in ptrs.iter_mut().zip(&r.columns) {
            let (ptr, guard) = col.device_ptr(&self.stream);
            *p = ptr;
            guards.push(guard);
        }
        (KernelRows::at(ptrs, r.stride), guards)
    }

    /// The sub-centre max on host data (`cm_subcenter_max_*`, SPEC.md §11.2): `cos` [cells, K]
    /// (k fastest) -> the max of each cell and its first arg-max, as `layer::subcenter_max`.
    pub fn subcenter_max<T: KernelFloat>(
        &self,
        cos: &[T],
        k: usize,
    ) -> Result<(Vec<T>, Vec<usize>), CudaError> {
        if k == 0 || !cos.len().is_multiple_of(k) {
            return Err(Error::Invalid(format!(
                "cos of {} values is not [cells, K = {k}]",
                cos.len()
            ))
            .into());
        }
        let cells = cos.len() / k;
        if cells == 0 {
            return Ok((Vec::new(), Vec::new()));
        }
        let d_cos = self.upload(cos)?;
        let mut d_out = self.upload(&vec![T::poison(); cells])?;
        let mut d_arg = self.upload(&vec![-1i64; cells])?;
        self.launch_subcenter_max(
            &d_cos.as_view(),
            &mut d_out.as_view_mut(),
            &mut d_arg.as_view_mut(),
            cells,
            k,
        )?;
        let arg = self.download(&d_arg)?;
        Ok((
            self.download(&d_out)?,
            arg.into_iter().map(|a| a as usize).collect(),
        ))
    }

    /// The sub-centre backward on host data (`cm_subcenter_backward_*`, SPEC.md §11.2):
    /// `d_cos` [cells] to the arg-max `arg` [cells] of each cell of [cells, K], +0 elsewhere,
    /// as `layer::subcenter_backward`. An arg outside [0, K) is an error.
    pub fn subcenter_backward<T: KernelFloat>(
        &self,
        d_cos: &[T],
        arg: &[usize],
        k: usize,
    ) -> Result<Vec<T>, CudaError> {
        check_subcenter_count(k)?;
        check_len("arg (one per cell)", d_cos.len(), arg.len())?;
        if let Some((cell, &a)) = arg.iter().enumerate().find(|&(_, &a)| a >= k) {
            return Err(Error::Invalid(format!(
                "arg[{cell}] = {a} is not a sub-centre of K = {k}"
            ))
            .into());
        }
        let cells = d_cos.len();
        let grad_len = cells
            .checked_mul(k)
            .ok_or_else(|| Error::Invalid(format!("cells·K = {cells}·{k} overflows")))?;
        if cells == 0 {
            return Ok(Vec::new());
        }
        let d_d = self.upload(d_cos)?;
        let arg: Vec<i64> = arg.iter().map(|&a| a as i64).collect();
        let d_arg = self.upload(&arg)?;
        let mut d_grad = self.upload(&vec![T::poison(); grad_len])?;
        self.launch_subcenter_backward(
            &d_d.as_view(),
            &d_arg.as_view(),
            &mut d_grad.as_view_mut(),
            cells,
            k,
        )?;
        self.download(&d_grad)
    }

    /// The margin layer's forward on host data: a copy of `cos` ([n, c]) with each valid row's
    /// target replaced. A label outside [0, C) that is not the ignore value is an error
    /// naming the first such row (the kernel leaves that row untouched).
    pub fn margin_forward<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        p: &Params,
    ) -> Result<Vec<T>, CudaError> {
        let none = KernelModulation::None;
        self.margin_forward_with(cos, labels, classes, profile, p, None, &none)
    }

    /// [`Gpu::margin_forward`] with per-row parameters: row i evaluates at `rows[i]` (one
    /// per row; SPEC.md §9.2).
    pub fn margin_forward_rows<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        rows: &[Params],
    ) -> Result<Vec<T>, CudaError> {
        let (p, d_rows) = self.row_call::<T>(labels.len(), profile, rows)?;
        let none = KernelModulation::None;
        self.margin_forward_with(cos, labels, classes, profile, &p, Some(&d_rows), &none)
    }

    /// [`Gpu::margin_backward`] with per-row parameters, as [`Gpu::margin_forward_rows`].
    pub fn margin_backward_rows<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        top_diff: &[T],
        classes: usize,
        profile: &Profile,
        rows: &[Params],
    ) -> Result<Vec<T>, CudaError> {
        let (p, d_rows) = self.row_call::<T>(labels.len(), profile, rows)?;
        let none = KernelModulation::None;
        self.margin_backward_with(
            cos,
            labels,
            top_diff,
            classes,
            profile,
            &p,
            Some(&d_rows),
            &none,
        )
    }

    /// The margin layer's forward on host data under a non-target modulation (SPEC.md §11.3:
    /// CurricularFace, inter-top-k; [`Modulation::None`] is [`Gpu::margin_forward`]), with
    /// per-row parameters where `rows` is given (one per row).
    #[allow(clippy::too_many_arguments)]
    pub fn margin_forward_modulated<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        p: &Params,
        rows: Option<&[Params]>,
        m: &Modulation,
    ) -> Result<Vec<T>, CudaError> {
        let km = KernelModulation::<T>::new(m)?;
        match rows {
            None => self.margin_forward_with(cos, labels, classes, profile, p, None, &km),
            Some(rows) => {
                let (p, d_rows) = self.row_call::<T>(labels.len(), profile, rows)?;
                self.margin_forward_with(cos, labels, classes, profile, &p, Some(&d_rows), &km)
            }
        }
    }

    /// The backward of [`Gpu::margin_forward_modulated`]: `top_diff` times each entry's factor.
    #[allow(clippy::too_many_arguments)]
    pub fn margin_backward_modulated<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        top_diff: &[T],
        classes: usize,
        profile: &Profile,
        p: &Params,
        rows: Option<&[Params]>,
        m: &Modulation,
    ) -> Result<Vec<T>, CudaError> {
        let km = KernelModulation::<T>::new(m)?;
        let (p, d_rows) = match rows {
            None => (*p, None),
            Some(rows) => {
                let (p, d) = self.row_call::<T>(labels.len(), profile, rows)?;
                (p, Some(d))
            }
        };
        self.margin_backward_with(
            cos,
            labels,
            top_diff,
            classes,
            profile,
            &p,
            d_rows.as_ref(),
            &km,
        )
    }

    /// Checks one parameter set per row, uploads their table; returns row 0's parameters
    /// (the scalar argument the per-row values override) and the device columns.
    fn row_call<T: KernelFloat>(
        &self,
        n: usize,
        profile: &Profile,
        rows: &[Params],
    ) -> Result<(Params, DeviceRows), CudaError> {
        check_len("per-row parameters (one per row)", n, rows.len())?;
        for p in rows {
            p.validate()?;
        }
        let table = RowTable::new(profile, rows, T::DTYPE);
        let p = rows.first().copied().unwrap_or(Params::new(1.0, 0.0, 0.0));
        Ok((p, self.upload_rows(&table)?))
    }

    #[allow(clippy::too_many_arguments)]
    fn margin_forward_with<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        p: &Params,
        rows: Option<&DeviceRows>,
        m: &KernelModulation<T>,
    ) -> Result<Vec<T>, CudaError> {
        let kp = host_call::<T>(p, profile, labels.len(), classes, &[("cos", cos.len())])?;
        let mut d_logits = self.upload(cos)?;
        self.with_row_status(labels, classes, profile, |d_labels, d_status| {
            self.launch_modulated_forward(
                &mut d_logits.as_view_mut(),
                d_labels,
                d_status,
                labels.len(),
                classes,
                &kp,
                rows,
                m,
            )
        })?;
        self.download(&d_logits)
    }

    /// The margin layer's backward on host data: `top_diff` with each valid row's target
    /// multiplied by the factor at `cos`.
    pub fn margin_backward<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        top_diff: &[T],
        classes: usize,
        profile: &Profile,
        p: &Params,
    ) -> Result<Vec<T>, CudaError> {
        let none = KernelModulation::None;
        self.margin_backward_with(cos, labels, top_diff, classes, profile, p, None, &none)
    }

    #[allow(clippy::too_many_arguments)]
    fn margin_backward_with<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        top_diff: &[T],
        classes: usize,
        profile: &Profile,
        p: &Params,
        rows: Option<&DeviceRows>,
        m: &KernelModulation<T>,
    ) -> Result<Vec<T>, CudaError> {
        let kp = host_call::<T>(
            p,
            profile,
            labels.len(),
            classes,
            &[("cos", cos.len()), ("top_diff", top_diff.len())],
        )?;
        let d_cos = self.upload(cos)?;
        let mut d_grad = self.upload(top_diff)?;
        self.with_row_status(labels, classes, profile, |d_labels, d_status| {
            self.launch_modulated_backward(
                &d_cos.as_view(),
                &mut d_grad.as_view_mut(),
                d_labels,
                d_status,
                labels.len(),
                classes,
                &kp,
                rows,
                m,
            )
        })?;
        self.download(&d_grad)
    }

    /// The fused loss on host data: the VALID-normalized mean loss, the per-row losses and
    /// d loss / d cos ([n, c]).
    pub fn fused<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        p: &Params,
    ) -> Result<FusedOutput<T>, CudaError> {
        self.fused_with(cos, labels, classes, profile, p, None)
    }

    /// [`Gpu::fused`] with per-row margins: row i's target at `rows[i]` (one per row; SPEC.md
    /// §9.2). The scale s is one for the batch: every row's s must equal row 0's.
    pub fn fused_rows<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        rows: &[Params],
    ) -> Result<FusedOutput<T>, CudaError> {
        let (p, d_rows) = self.row_call::<T>(labels.len(), profile, rows)?;
        if let Some((i, q)) = rows.iter().enumerate().find(|(_, q)| q.s != p.s) {
            return Err(Error::Invalid(format!(
                "the fused loss takes one scale s: row {i} has s = {}, row 0 s = {}",
                q.s, p.s
            ))
            .into());
        }
        self.fused_with(cos, labels, classes, profile, &p, Some(&d_rows))
    }

    fn fused_with<T: KernelFloat>(
        &self,
        cos: &[T],
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        p: &Params,
        rows: Option<&DeviceRows>,
    ) -> Result<FusedOutput<T>, CudaError> {
        let n = labels.len();
        let kp = host_call::<T>(p, profile, n, classes, &[("cos", cos.len())])?;
        let d_cos = self.upload(cos)?;
        let d_labels = self.upload(labels)?;
        let mut owned = FusedOwned::<T>::new(self, n, classes)?;
        self.launch_fused(
            &d_cos.as_view(),
            &d_labels.as_view(),
            &mut owned.buffers(),
            n,
            classes,
            &kp,
            rows,
        )?;
        let status = self.download(&owned.status)?;
        check_status(&status, labels, classes, profile)?;
        Ok(FusedOutput {
            loss: self.download(&owned.loss)?[0],
            n_valid: self.download(&owned.n_valid)?[0],
            row_loss: self.download(&owned.row_loss)?,
            grad: self.download(&owned.grad)?,
        })
    }

    /// Uploads `labels` and a status buffer (−1: unwritten), runs `launch` on them, and turns
    /// the row statuses into the reference's typed error for the first bad label.
    fn with_row_status(
        &self,
        labels: &[i64],
        classes: usize,
        profile: &Profile,
        launch: impl FnOnce(&CudaView<i64>, &mut CudaViewMut<i32>) -> Result<(), CudaError>,
    ) -> Result<(), CudaError> {
        let d_labels = self.upload(labels)?;
        let mut d_status = self.upload(&vec![-1i32; labels.len()])?;
        launch(&d_labels.as_view(), &mut d_status.as_view_mut())?;
        let status = self.download(&d_status)?;
        check_status(&status, labels, classes, profile)?;
        Ok(())
    }

    /// Copies host data to a new device buffer.
    pub fn upload<T: cudarc::driver::DeviceRepr>(
        &self,
        host: &[T],
    ) -> Result<CudaSlice<T>, CudaError> {
        if host.is_empty() {
            return self.stream.null().map_err(drv("cuMemAlloc (empty)"));
        }
        self.stream.clone_htod(host).map_err(drv("cuMemcpyHtoD"))
    }

    /// Copies a device buffer to the host (synchronizes the stream).
    pub fn download<T: cudarc::driver::DeviceRepr>(
        &self,
        dev: &CudaSlice<T>,
    ) -> Result<Vec<T>, CudaError> {
        if dev.is_empty() {
            return Ok(Vec::new());
        }
        self.stream.clone_dtoh(dev).map_err(drv("cuMemcpyDtoH"))
    }
}

/// Device outputs of the fused loss, as views (the canary tests pass views into guarded
/// buffers).
pub struct FusedBuffers<'a, T> {
    pub n_valid: CudaViewMut<'a, i64>,
    pub grad: CudaViewMut<'a, T>,
    pub row_loss: CudaViewMut<'a, T>,
    pub status: CudaViewMut<'a, i32>,
    pub loss: CudaViewMut<'a, f64>,
}

/// Owned device outputs of the fused loss, poisoned (NaN with a payload; −1 status) so that
/// an element the kernels fail to write is visible.
pub struct FusedOwned<T> {
    n: usize,
    c: usize,
    pub n_valid: CudaSlice<i64>,
    pub grad: CudaSlice<T>,
    pub row_loss: CudaSlice<T>,
    pub status: CudaSlice<i32>,
    pub loss: CudaSlice<f64>,
}

impl<T: KernelFloat> FusedOwned<T> {
    pub fn new(gpu: &Gpu, n: usize, c: usize) -> Result<Self, CudaError> {
        let alloc_poisoned = |len: usize| gpu.upload(&vec![T::poison(); len.max(1)]);
        Ok(FusedOwned {
            n,
            c,
            n_valid: gpu.upload(&[-1i64])?,
            grad: alloc_poisoned(n * c)?,
            row_loss: alloc_poisoned(n)?,
            status: gpu.upload(&vec![-1i32; n.max(1)])?,
            loss: gpu.upload(&[f64::poison()])?,
        })
    }

    pub fn buffers(&mut self) -> FusedBuffers<'_, T> {
        // The allocations hold at least one element; the views are exactly [n, c] and [n].
        let (n, nc) = (self.n, self.n * self.c);
        FusedBuffers {
            n_valid: self.n_valid.as_view_mut(),
            grad: self.grad.slice_mut(0..nc),
            row_loss: self.row_loss.slice_mut(0..n),
            status: self.status.slice_mut(0..n),
            loss: self.loss.as_view_mut(),
        }
    }
}

/// What the fused loss returns to the host.
#[derive(Clone, Debug)]
pub struct FusedOutput<T> {
    /// Σ row_loss over valid rows / max(n_valid, 1), summed in f64 on the device.
    pub loss: f64,
    pub n_valid: i64,
    /// `lse − z_y` per row; 0 for ignored rows.
    pub row_loss: Vec<T>,
    /// d loss / d cos, [n, c].
    pub grad: Vec<T>,
}

/// The checks every host-data entry point makes before touching the device: valid
/// parameters and [n, classes] host arrays (`(name, length)` each); returns the kernel profile.
fn host_call<T: KernelFloat>(
    p: &Params,
    profile: &Profile,
    n: usize,
    classes: usize,
    arrays: &[(&str, usize)],
) -> Result<KernelProfile, Error> {
    p.validate()?;
    for &(what, len) in arrays {
        check_len(what, n * classes, len)?;
    }
    Ok(KernelProfile::new(profile, p, T::DTYPE))
}

fn check_len(what: &str, expected: usize, got: usize) -> Result<(), Error> {
    if expected != got {
        return Err(Error::ShapeMismatch {
            what: what.into(),
            expected,
            got,
        });
    }
    Ok(())
}

/// The non-target modulation of a margin launch (SPEC.md §11.3), as the kernels take it: it
/// picks the kernel family and the arguments between `c` and the profile.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelModulation<T> {
    /// `cm_margin_*`: the profile's non-target treatment only.
    None,
    /// `cm_curricular_*`: CurricularFace at the running statistic t the forward used (rounded
    /// to T).
    Curricular { t: T },
    /// `cm_intertopk_*`: the k hardest non-targets get cos(θ − m′).
    InterTopK(KernelInterTopK<T>),
}

impl<T: KernelFloat> KernelModulation<T> {
    /// The kernel arguments of `m`. The kernels implement the sources' CurricularFace (mask on
    /// the target's margin branch, gradient t + 2c); the detector's variants are an error.
    pub fn new(m: &Modulation) -> Result<KernelModulation<T>, Error> {
        match m {
            Modulation::None => Ok(KernelModulation::None),
            Modulation::Curricular(cv) => {
                let mask = match cv.mask {
                    CurricularMask::MarginBranch => None,
                    CurricularMask::AfterFallback => Some("a mask after the fallback"),
                };
                let gradient = match cv.gradient {
                    CurricularGradient::Full => None,
                    CurricularGradient::OneFactor => Some("the one-factor gradient t + c"),
                };
                match mask.or(gradient) {
                    None => Ok(KernelModulation::Curricular { t: T::of(cv.t) }),
                    Some(what) => Err(Error::Invalid(format!(
                        "the CurricularFace kernels implement the sources' form (mask on the \
                         margin branch, gradient t + 2c), not {what}"
                    ))),
                }
            }
            Modulation::InterTopK(x) => Ok(KernelModulation::InterTopK(KernelInterTopK::new(x)?)),
        }
    }

    /// The kernel's name: `cm_<family>_<direction><suffix>`.
    fn kernel(&self, direction: &str, suffix: &str) -> String {
        let family = match self {
            KernelModulation::None => "margin",
            KernelModulation::Curricular { .. } => "curricular",
            KernelModulation::InterTopK(_) => "intertopk",
        };
        format!("cm_{family}_{direction}{suffix}")
    }

    /// Pushes the modulation's kernel arguments (after `c`, before the profile).
    fn push_args<'a>(&'a self, b: &mut cudarc::driver::LaunchArgs<'a>) {
        match self {
            KernelModulation::None => {}
            KernelModulation::Curricular { t } => {
                b.arg(t);
            }
            KernelModulation::InterTopK(x) => {
                b.arg(&x.k).arg(&x.cos_mp).arg(&x.sin_mp);
            }
        }
    }
}

/// K ≥ 1 sub-centres per cell.
fn check_subcenter_count(k: usize) -> Result<(), Error> {
    if k == 0 {
        return Err(Error::Invalid("sub-centres need K >= 1 (K = 0)".into()));
    }
    Ok(())
}

/// [cells, K] and [cells] views for the sub-centre kernels: K ≥ 1, cells·K without overflow.
fn check_subcenter_shapes(
    cells: usize,
    k: usize,
    wide_len: usize,
    cells_len_a: usize,
    cells_len_b: usize,
) -> Result<(), Error> {
    check_subcenter_count(k)?;
    let wide = cells
        .checked_mul(k)
        .filter(|&v| v <= i64::MAX as usize)
        .ok_or_else(|| Error::Invalid(format!("cells·K = {cells}·{k} overflows")))?;
    check_len("[cells, K] buffer", wide, wide_len)?;
    check_len("[cells] buffer", cells, cells_len_a)?;
    check_len("[cells] buffer", cells, cells_len_b)
}

/// Per-row parameters on the device: the columns of a [`RowTable`] ([`Gpu::upload_rows`]).
pub struct DeviceRows {
    columns: Vec<CudaSlice<f64>>,
    stride: i64,
}

/// Per-row columns must cover the n rows (stride 0: one value for all).
fn check_rows(rows: Option<&DeviceRows>, n: usize) -> Result<(), Error> {
    let Some(r) = rows else { return Ok(()) };
    let need = if r.stride == 0 { 1 } else { n };
    for col in &r.columns {
        if n > 0 && col.len() < need {
            return Err(Error::ShapeMismatch {
                what: "per-row parameters (one per row)".into(),
                expected: need,
                got: col.len(),
            });
        }
    }
    Ok(())
}

/// The device views must hold exactly [n, c], [n] and [n] elements, and n·c must not overflow.
fn check_device_shapes(
    n: usize,
    c: usize,
    nc_len: usize,
    labels_len: usize,
    status_len: usize,
) -> Result<(), Error> {
    let nc = n
        .checked_mul(c)
        .filter(|&v| v <= i64::MAX as usize)
        .ok_or_else(|| Error::Invalid(format!("N·C = {n}·{c} overflows")))?;
    check_len("logits/grad", nc, nc_len)?;
    check_len("labels", n, labels_len)?;
    check_len("status", n, status_len)
}

fn rows_config(n: usize) -> Result<LaunchConfig, Error> {
    let blocks = n.div_ceil(MARGIN_THREADS as usize);
    let blocks = u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| Error::Invalid(format!("N = {n} rows exceed the grid limit")))?;
    Ok(LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (MARGIN_THREADS, 1, 1),
        shared_mem_bytes: 0,
    })
}

/// Turns the kernels' row statuses into the reference's typed error for the first bad label.
/// A status that is none of the three codes means the kernel did not write it: an error too.
pub fn check_status(
    status: &[i32],
    labels: &[i64],
    classes: usize,
    profile: &Profile,
) -> Result<(), Error> {
    for (row, (&st, &label)) in status.iter().zip(labels).enumerate() {
        match st {
            code::ROW_TARGET | code::ROW_IGNORED | code::ROW_NO_TARGET => {}
            code::ROW_BAD_LABEL => {
                return Err(Error::LabelOutOfRange {
                    row,
                    label,
                    classes,
                    allows_ignore: profile.labels.allows_ignore(),
                })
            }
            other => {
                return Err(Error::Invalid(format!(
                    "row {row}: the kernel left status {other} (not written)"
                )))
            }
        }
    }
    // The kernels and the reference classify labels alike; a disagreement is a kernel bug.
    if let Err(e) = layer::targets(labels.len(), classes, labels, profile) {
        return Err(Error::Invalid(format!(
            "the kernel accepted every label but the reference did not: {e}"
        )));
    }
    Ok(())
}
