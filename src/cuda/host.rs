//! The per-entry math of the kernels (`kernels/combined_margin.cuh`) compiled for the host by
//! build.rs (`kernels/host_shim.cpp`): the same text the device compiles, callable without a GPU.
//! Differences from the device are confined to the math library (glibc here, the CUDA Math
//! API there); the tolerance model budgets the larger of the two documented errors.

use super::{KernelFloat, KernelInterTopK, KernelProfile, KernelRows, KERNEL_PROFILE_SIZE};
use crate::margin::Branch;

mod ffi {
    use super::{KernelProfile, KernelRows};
    use std::os::raw::{c_int, c_longlong};

    extern "C" {
        pub fn cm_host_eval_f32(
            c: f32,
            pr: *const KernelProfile,
            out: *mut f32,
            factor: *mut f32,
            branch: *mut c_int,
        );
        pub fn cm_host_eval_f64(
            c: f64,
            pr: *const KernelProfile,
            out: *mut f64,
            factor: *mut f64,
            branch: *mut c_int,
        );
        pub fn cm_host_eval_row_f32(
            c: f32,
            pr: *const KernelProfile,
            rows: *const KernelRows,
            i: c_longlong,
            out: *mut f32,
            factor: *mut f32,
            branch: *mut c_int,
        );
        pub fn cm_host_eval_row_f64(
            c: f64,
            pr: *const KernelProfile,
            rows: *const KernelRows,
            i: c_longlong,
            out: *mut f64,
            factor: *mut f64,
            branch: *mut c_int,
        );
        pub fn cm_host_subcenter_max_f32(
            cos: *const f32,
            cells: c_longlong,
            k: c_longlong,
            out: *mut f32,
            arg: *mut c_longlong,
        );
        pub fn cm_host_subcenter_max_f64(
            cos: *const f64,
            cells: c_longlong,
            k: c_longlong,
            out: *mut f64,
            arg: *mut c_longlong,
        );
        pub fn cm_host_subcenter_backward_f32(
            d_cos: *const f32,
            arg: *const c_longlong,
            cells: c_longlong,
            k: c_longlong,
            grad: *mut f32,
        );
        pub fn cm_host_subcenter_backward_f64(
            d_cos: *const f64,
            arg: *const c_longlong,
            cells: c_longlong,
            k: c_longlong,
            grad: *mut f64,
        );
        pub fn cm_host_curricular_tau_f32(c_target: f32, pr: *const KernelProfile) -> f32;
        pub fn cm_host_curricular_tau_f64(c_target: f64, pr: *const KernelProfile) -> f64;
        pub fn cm_host_curricular_f32(
            c: f32,
            t: f32,
            tau: f32,
            pr: *const KernelProfile,
            out: *mut f32,
            factor: *mut f32,
            hard: *mut c_int,
        );
        pub fn cm_host_curricular_f64(
            c: f64,
            t: f64,
            tau: f64,
            pr: *const KernelProfile,
            out: *mut f64,
            factor: *mut f64,
            hard: *mut c_int,
        );
        pub fn cm_host_intertopk_row_f32(
            x: *const f32,
            c: c_longlong,
            y: c_longlong,
            k: c_longlong,
            cos_mp: f32,
            sin_mp: f32,
            pr: *const KernelProfile,
            out: *mut f32,
            factor: *mut f32,
            top: *mut c_int,
        );
        pub fn cm_host_intertopk_row_f64(
            x: *const f64,
            c: c_longlong,
            y: c_longlong,
            k: c_longlong,
            cos_mp: f64,
            sin_mp: f64,
            pr: *const KernelProfile,
            out: *mut f64,
            factor: *mut f64,
            top: *mut c_int,
        );
        pub fn cm_host_order_key_f32(x: f32) -> u64;
        pub fn cm_host_order_key_f64(x: f64) -> u64;
        pub fn cm_host_rows_layout(offsets: *mut usize, capacity: usize) -> usize;
        pub fn cm_host_row_status(label: c_longlong, classes: c_longlong, labels: c_int) -> c_int;
        pub fn cm_host_non_target_f32(
            c: f32,
            pr: *const KernelProfile,
            out: *mut f32,
            factor: *mut f32,
        );
        pub fn cm_host_non_target_f64(
            c: f64,
            pr: *const KernelProfile,
            out: *mut f64,
            factor: *mut f64,
        );
        pub fn cm_host_profile_layout(offsets: *mut usize, capacity: usize) -> usize;
    }
}

/// One target entry as the kernel math computes it in T.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostEntry<T> {
    pub out: T,
    pub factor: T,
    pub branch: Branch,
}

fn branch(code: i32) -> Branch {
    match code {
        super::code::BRANCH_FALLBACK => Branch::Fallback,
        super::code::BRANCH_SHORTCUT => Branch::Shortcut,
        _ => Branch::Margin,
    }
}

/// One row as the inter-top-k kernels evaluate it (`cm_intertopk_*`): every column's output
/// and factor d out / d c (the target's from the margin), and which columns the top k took.
#[derive(Clone, Debug, PartialEq)]
pub struct HostRow<T> {
    pub out: Vec<T>,
    pub factor: Vec<T>,
    pub top: Vec<bool>,
}

type IntertopkRow<T> = unsafe extern "C" fn(
    *const T,
    i64,
    i64,
    i64,
    T,
    T,
    *const KernelProfile,
    *mut T,
    *mut T,
    *mut i32,
);

/// `intertopk_row` of the host shim on `x` (one row, target `y`).
fn intertopk_row_with<T: KernelFloat>(
    f: IntertopkRow<T>,
    x: &[T],
    y: usize,
    m: &KernelInterTopK<T>,
    pr: &KernelProfile,
) -> HostRow<T> {
    assert!(y < x.len(), "target {y} outside a row of {}", x.len());
    let c = x.len();
    let mut out = vec![T::poison(); c];
    let mut factor = vec![T::poison(); c];
    let mut top = vec![-1i32; c];
    // SAFETY: x, out, factor and top hold c values each; y < c; pr is a live KernelProfile.
    unsafe {
        f(
            x.as_ptr(),
            c as i64,
            y as i64,
            m.k,
            m.cos_mp,
            m.sin_mp,
            pr,
            out.as_mut_ptr(),
            factor.as_mut_ptr(),
            top.as_mut_ptr(),
        )
    };
    HostRow {
        out,
        factor,
        top: top.into_iter().map(|t| t != 0).collect(),
    }
}

type SubcenterMax<T> = unsafe extern "C" fn(*const T, i64, i64, *mut T, *mut i64);
type SubcenterBackward<T> = unsafe extern "C" fn(*const T, *const i64, i64, i64, *mut T);

/// `cm_subcenter_max_cell` over every cell of `cos` ([cells, K], k fastest).
fn subcenter_max_with<T: KernelFloat>(
    f: SubcenterMax<T>,
    cos: &[T],
    k: usize,
) -> (Vec<T>, Vec<usize>) {
    assert!(
        k > 0 && cos.len().is_multiple_of(k),
        "cos of {} values is not [cells, {k}]",
        cos.len()
    );
    let cells = cos.len() / k;
    let mut out = vec![T::of(0.0); cells];
    let mut arg = vec![0i64; cells];
    // SAFETY: cos holds cells·k values, out and arg hold cells each.
    unsafe {
        f(
            cos.as_ptr(),
            cells as i64,
            k as i64,
            out.as_mut_ptr(),
            arg.as_mut_ptr(),
        )
    };
    (out, arg.into_iter().map(|a| a as usize).collect())
}

/// `cm_subcenter_backward_cell` over every cell: [cells] -> [cells, K].
fn subcenter_backward_with<T: KernelFloat>(
    f: SubcenterBackward<T>,
    d_cos: &[T],
    arg: &[usize],
    k: usize,
) -> Vec<T> {
    // An arg outside [0, K) is passed on (as i64: usize::MAX is −1): the header makes that
    // cell NaN without indexing outside it.
    assert!(k > 0 && d_cos.len() == arg.len());
    let arg: Vec<i64> = arg.iter().map(|&a| a as i64).collect();
    let mut grad = vec![T::poison(); d_cos.len() * k];
    // SAFETY: d_cos and arg hold cells values (every arg < k), grad cells·k.
    unsafe {
        f(
            d_cos.as_ptr(),
            arg.as_ptr(),
            arg.len() as i64,
            k as i64,
            grad.as_mut_ptr(),
        )
    };
    grad
}

/// The kernels' per-entry math in T, on the host.
pub trait HostEval: KernelFloat {
    fn host_eval(c: Self, pr: &KernelProfile) -> HostEntry<Self>;
    /// `cm_eval` at row `i` of a per-row case: under `cm_row_profile(pr, rows, i)`.
    ///
    /// # Safety
    /// Every non-null pointer of `rows` must be valid for reading at `i * stride` (a
    /// [`super::RowTable::host_rows`] of a live table with more than `i` rows, or stride 0).
    unsafe fn host_eval_row(
        c: Self,
        pr: &KernelProfile,
        rows: &KernelRows,
        i: usize,
    ) -> HostEntry<Self>;
    /// `cm_non_target`: (out, factor) of a non-target entry.
    fn host_non_target(c: Self, pr: &KernelProfile) -> (Self, Self);
    /// CurricularFace's mask threshold τ = cos(m1·θ_y + m2) − m3 of a row whose target input
    /// is `c_target` (the margin branch before any fallback).
    fn host_curricular_tau(c_target: Self, pr: &KernelProfile) -> Self;
    /// CurricularFace on one non-target entry at running statistic `t` and threshold `tau`:
    /// (out, factor, hard), factor = d out / d c (top_diff = 1).
    fn host_curricular(c: Self, t: Self, tau: Self, pr: &KernelProfile) -> (Self, Self, bool);
    /// Inter-top-k on one row `x` with target `y` (`cm_mod_setup` / `cm_mod_entry` of the
    /// header, in column order, as the `cm_intertopk_*` kernels).
    fn host_intertopk_row(
        x: &[Self],
        y: usize,
        m: &KernelInterTopK<Self>,
        pr: &KernelProfile,
    ) -> HostRow<Self>;
    /// `cm_order_key`: the header's ranking key of a value (the IEEE total order).
    fn host_order_key(x: Self) -> u64;
    /// The sub-centre max of the header: `cos` [cells, K] (k fastest) -> the max of each cell
    /// and its first arg-max (`layer::subcenter_max`).
    fn host_subcenter_max(cos: &[Self], k: usize) -> (Vec<Self>, Vec<usize>);
    /// Its backward: `d_cos` [cells] scattered to the arg-max of each cell of [cells, K]
    /// (`layer::subcenter_backward`); a cell whose arg is outside [0, K) is all NaN.
    fn host_subcenter_backward(d_cos: &[Self], arg: &[usize], k: usize) -> Vec<Self>;
}

impl HostEval for f32 {
    fn host_eval(c: f32, pr: &KernelProfile) -> HostEntry<f32> {
        let (mut out, mut factor, mut b) = (0.0f32, 0.0f32, 0i32);
        // SAFETY: pr points to a live KernelProfile with the C layout (checked by
        // `profile_layout`); the out-pointers are valid locals.
        unsafe { ffi::cm_host_eval_f32(c, pr, &mut out, &mut factor, &mut b) };
        HostEntry {
            out,
            factor,
            branch: branch(b),
        }
    }
    unsafe fn host_eval_row(
        c: f32,
        pr: &KernelProfile,
        rows: &KernelRows,
        i: usize,
    ) -> HostEntry<f32> {
        let (mut out, mut factor, mut b) = (0.0f32, 0.0f32, 0i32);
        // SAFETY: the caller's contract on `rows`; the rest as host_eval.
        unsafe { ffi::cm_host_eval_row_f32(c, pr, rows, i as i64, &mut out, &mut factor, &mut b) };
        HostEntry {
            out,
            factor,
            branch: branch(b),
        }
    }
    fn host_curricular_tau(c_target: f32, pr: &KernelProfile) -> f32 {
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_curricular_tau_f32(c_target, pr) }
    }
    fn host_curricular(c: f32, t: f32, tau: f32, pr: &KernelProfile) -> (f32, f32, bool) {
        let (mut out, mut factor, mut hard) = (0.0f32, 0.0f32, 0i32);
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_curricular_f32(c, t, tau, pr, &mut out, &mut factor, &mut hard) };
        (out, factor, hard != 0)
    }
    fn host_intertopk_row(
        x: &[f32],
        y: usize,
        m: &KernelInterTopK<f32>,
        pr: &KernelProfile,
    ) -> HostRow<f32> {
        intertopk_row_with(ffi::cm_host_intertopk_row_f32, x, y, m, pr)
    }
    fn host_order_key(x: f32) -> u64 {
        // SAFETY: a pure function of one value.
        unsafe { ffi::cm_host_order_key_f32(x) }
    }
    fn host_subcenter_max(cos: &[f32], k: usize) -> (Vec<f32>, Vec<usize>) {
        subcenter_max_with(ffi::cm_host_subcenter_max_f32, cos, k)
    }
    fn host_subcenter_backward(d_cos: &[f32], arg: &[usize], k: usize) -> Vec<f32> {
        subcenter_backward_with(ffi::cm_host_subcenter_backward_f32, d_cos, arg, k)
    }
    fn host_non_target(c: f32, pr: &KernelProfile) -> (f32, f32) {
        let (mut out, mut factor) = (0.0f32, 0.0f32);
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_non_target_f32(c, pr, &mut out, &mut factor) };
        (out, factor)
    }
}

impl HostEval for f64 {
    fn host_eval(c: f64, pr: &KernelProfile) -> HostEntry<f64> {
        let (mut out, mut factor, mut b) = (0.0f64, 0.0f64, 0i32);
        // SAFETY: as for f32.
        unsafe { ffi::cm_host_eval_f64(c, pr, &mut out, &mut factor, &mut b) };
        HostEntry {
            out,
            factor,
            branch: branch(b),
        }
    }
    unsafe fn host_eval_row(
        c: f64,
        pr: &KernelProfile,
        rows: &KernelRows,
        i: usize,
    ) -> HostEntry<f64> {
        let (mut out, mut factor, mut b) = (0.0f64, 0.0f64, 0i32);
        // SAFETY: the caller's contract on `rows`; the rest as host_eval.
        unsafe { ffi::cm_host_eval_row_f64(c, pr, rows, i as i64, &mut out, &mut factor, &mut b) };
        HostEntry {
            out,
            factor,
            branch: branch(b),
        }
    }
    fn host_curricular_tau(c_target: f64, pr: &KernelProfile) -> f64 {
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_curricular_tau_f64(c_target, pr) }
    }
    fn host_curricular(c: f64, t: f64, tau: f64, pr: &KernelProfile) -> (f64, f64, bool) {
        let (mut out, mut factor, mut hard) = (0.0f64, 0.0f64, 0i32);
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_curricular_f64(c, t, tau, pr, &mut out, &mut factor, &mut hard) };
        (out, factor, hard != 0)
    }
    fn host_intertopk_row(
        x: &[f64],
        y: usize,
        m: &KernelInterTopK<f64>,
        pr: &KernelProfile,
    ) -> HostRow<f64> {
        intertopk_row_with(ffi::cm_host_intertopk_row_f64, x, y, m, pr)
    }
    fn host_order_key(x: f64) -> u64 {
        // SAFETY: a pure function of one value.
        unsafe { ffi::cm_host_order_key_f64(x) }
    }
    fn host_subcenter_max(cos: &[f64], k: usize) -> (Vec<f64>, Vec<usize>) {
        subcenter_max_with(ffi::cm_host_subcenter_max_f64, cos, k)
    }
    fn host_subcenter_backward(d_cos: &[f64], arg: &[usize], k: usize) -> Vec<f64> {
        subcenter_backward_with(ffi::cm_host_subcenter_backward_f64, d_cos, arg, k)
    }
    fn host_non_target(c: f64, pr: &KernelProfile) -> (f64, f64) {
        let (mut out, mut factor) = (0.0f64, 0.0f64);
        // SAFETY: as host_eval.
        unsafe { ffi::cm_host_non_target_f64(c, pr, &mut out, &mut factor) };
        (out, factor)
    }
}

/// `cm_row_status` of the header: how a kernel classifies a row's label
/// ([`super::code::ROW_TARGET`], `ROW_IGNORED`, `ROW_NO_TARGET` or `ROW_BAD_LABEL`) under the
/// label policy code `labels` (`KernelProfile::labels`).
pub fn row_status(label: i64, classes: i64, labels: i32) -> i32 {
    // SAFETY: a pure function of three integers.
    unsafe { ffi::cm_host_row_status(label, classes, labels) }
}

/// The size of `cm_profile` and its field offsets as the C++ compiler laid it out.
pub fn profile_layout() -> (usize, Vec<usize>) {
    let mut offsets = vec![0usize; super::KERNEL_PROFILE_FIELDS.len()];
    // SAFETY: the buffer holds `capacity` elements.
    let size = unsafe { ffi::cm_host_profile_layout(offsets.as_mut_ptr(), offsets.len()) };
    (size, offsets)
}

/// The size of `cm_rows` and its field offsets as the C++ compiler laid it out.
pub fn rows_layout() -> (usize, Vec<usize>) {
    let mut offsets = vec![0usize; super::KERNEL_ROWS_FIELDS.len()];
    // SAFETY: the buffer holds `capacity` elements.
    let size = unsafe { ffi::cm_host_rows_layout(offsets.as_mut_ptr(), offsets.len()) };
    (size, offsets)
}

/// Whether the C++ compiler's layout of `cm_rows` is `KernelRows`'.
pub fn rows_layout_matches() -> bool {
    let (size, offsets) = rows_layout();
    size == std::mem::size_of::<KernelRows>() && offsets == KernelRows::field_offsets()
}

/// Whether a C layout (size, field offsets) is `KernelProfile`'s.
pub fn layout_equal(size: usize, offsets: &[usize]) -> bool {
    size == KERNEL_PROFILE_SIZE && offsets == KernelProfile::field_offsets()
}

/// Whether the C++ compiler's layout of `cm_profile` is `KernelProfile`'s.
pub fn layout_matches() -> bool {
    let (size, offsets) = profile_layout();
    layout_equal(size, &offsets)
}
