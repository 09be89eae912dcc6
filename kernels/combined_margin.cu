// CUDA kernels of the combined margin, for float (_f32) and double (_f64); the margin layer
// also for half storage with f32 math (_f16, _bf16).
//
// Layout: cos, logits and gradients are row-major [N, C] of T; labels are [N] of int64
// (PyTorch's torch.long, the reference's i64); cm_profile.labels is the label policy.
// Every kernel writes one int status per row (CM_ROW_TARGET, CM_ROW_IGNORED, CM_ROW_NO_TARGET,
// CM_ROW_BAD_LABEL): a label outside [0, C) never indexes memory; the host counts the
// CM_ROW_BAD_LABEL rows and reports the first as an error.
//
// Every margin kernel also takes a cm_rows (cm_abi.h): per-row m1, m2, m3 and the constants
// that depend on them, each a pointer and a row stride; all pointers null is the scalar
// profile. Row i evaluates under cm_row_profile(pr, rows, i).
//
// src/cuda/device.rs compiles this file with NVRTC at run time (the text is embedded in the
// binary; the #include below is replaced by the header's text), with --fmad=false.
#include "combined_margin.cuh"

// ---------------------------------------------------------------------------------------
// (a) The margin layer alone, unscaled (src/layer.rs): the target entry of each row, and the
// other entries where the profile transforms non-targets (cm_non_target). One thread per row.

// The thread's row i: writes its status; returns it (CM_ROW_IGNORED past the end), with y the
// label.
__device__ inline int cm_row(const long long* labels, int* status, long long n, long long c,
                             const cm_profile& pr, long long& i, long long& y) {
    i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return CM_ROW_IGNORED;
    y = labels[i];
    const int st = cm_row_status(y, c, pr.labels);
    status[i] = st;
    return st;
}

// cm_row, and where the row is evaluated (a target or none) pr = row i's profile under the
// per-row parameters (cm_row_profile).
__device__ inline int cm_row_with_profile(const long long* labels, int* status, long long n,
                                          long long c, const cm_profile& pr0,
                                          const cm_rows& rows, long long& i, long long& y,
                                          cm_profile& pr) {
    const int st = cm_row(labels, status, n, c, pr0, i, y);
    if (st != CM_ROW_IGNORED && st != CM_ROW_BAD_LABEL) pr = cm_row_profile(pr0, rows, i);
    return st;
}

// Forward, in place: `logits` holds cos on entry; each row's target becomes the margin, and
// its other entries get the non-target treatment. MOD (CM_MOD_*, the (a'') kernels): in a row
// with a target, the non-targets get the modulation `md` (cm_mod_entry), its row state set up
// from the row's input (cm_mod_setup) before anything is overwritten.
template <typename T, int MOD>
__device__ void cm_margin_forward(T* logits, const long long* labels, int* status, long long n,
                                  long long c, const cm_profile& pr0, const cm_rows& rows,
                                  const cm_mod_args<T>& md) {
    long long i, y;
    cm_profile pr;
    const int st = cm_row_with_profile(labels, status, n, c, pr0, rows, i, y, pr);
    if (st == CM_ROW_IGNORED || st == CM_ROW_BAD_LABEL) return;
    T* row = logits + i * c;
    const int mod = st == CM_ROW_TARGET ? MOD : CM_MOD_NONE;
    cm_mod_row<T> mr = cm_mod_setup<T>(mod, row, c, y, md, pr);
    if (mod != CM_MOD_NONE || cm_transforms_non_targets(pr)) {
        for (long long j = 0; j < c; ++j) {
            if (st == CM_ROW_TARGET && j == y) continue;
            int changed;
            row[j] = cm_mod_entry<T>(mod, row[j], md, &mr, pr, &changed).out;
        }
    }
    if (st == CM_ROW_TARGET) row[y] = cm_eval<T>(row[y], pr).out;
}

// Backward, in place: `grad` holds top_diff on entry; each row's target is multiplied by the
// factor d out / d c at cos[i, y], and its other entries by the non-target factor (under MOD,
// the modulation's).
template <typename T, int MOD>
__device__ void cm_margin_backward(const T* cos, T* grad, const long long* labels, int* status,
                                   long long n, long long c, const cm_profile& pr0,
                                   const cm_rows& rows, const cm_mod_args<T>& md) {
    long long i, y;
    cm_profile pr;
    const int st = cm_row_with_profile(labels, status, n, c, pr0, rows, i, y, pr);
    if (st == CM_ROW_IGNORED || st == CM_ROW_BAD_LABEL) return;
    const T* x = cos + i * c;
    T* g = grad + i * c;
    const int mod = st == CM_ROW_TARGET ? MOD : CM_MOD_NONE;
    cm_mod_row<T> mr = cm_mod_setup<T>(mod, x, c, y, md, pr);
    if (mod != CM_MOD_NONE || cm_transforms_non_targets(pr)) {
        for (long long j = 0; j < c; ++j) {
            if (st == CM_ROW_TARGET && j == y) continue;
            int changed;
            const T f = cm_mod_entry<T>(mod, x[j], md, &mr, pr, &changed).factor;
            if (f != T(1)) g[j] = g[j] * f;
        }
    }
    if (st == CM_ROW_TARGET) g[y] = g[y] * cm_eval<T>(x[y], pr).factor;
}

extern "C" __global__ void cm_margin_forward_f32(float* logits, const long long* labels,
                                                 int* status, long long n, long long c,
                                                 cm_profile pr, cm_rows rows) {
    cm_margin_forward<float, CM_MOD_NONE>(logits, labels, status, n, c, pr, rows,
                                          cm_no_mod<float>());
}
extern "C" __global__ void cm_margin_forward_f64(double* logits, const long long* labels,
                                                 int* status, long long n, long long c,
                                                 cm_profile pr, cm_rows rows) {
    cm_margin_forward<double, CM_MOD_NONE>(logits, labels, status, n, c, pr, rows,
                                           cm_no_mod<double>());
}
extern "C" __global__ void cm_margin_backward_f32(const float* cos, float* grad,
                                                  const long long* labels, int* status,
                                                  long long n, long long c, cm_profile pr,
                                                  cm_rows rows) {
    cm_margin_backward<float, CM_MOD_NONE>(cos, grad, labels, status, n, c, pr, rows,
                                           cm_no_mod<float>());
}
extern "C" __global__ void cm_margin_backward_f64(const double* cos, double* grad,
                                                  const long long* labels, int* status,
                                                  long long n, long long c, cm_profile pr,
                                                  cm_rows rows) {
    cm_margin_backward<double, CM_MOD_NONE>(cos, grad, labels, status, n, c, pr, rows,
                                            cm_no_mod<double>());
}

// (a') Half storage, f32 opmath (SPEC.md §5.5, §9.4): IEEE binary16 (`__half`'s layout) and
// bfloat16 (`__nv_bfloat16`'s) are loaded, widened exactly to float, evaluated by the same
// cm_eval<float> as the _f32 kernels, and the result rounded once (nearest even) to storage.
// The profile carries the constants and parameters rounded to the storage type
// (KernelProfile::new with Dtype::F16/BF16). The 16-bit values travel as unsigned short and
// are converted by PTX cvt, not through cuda_fp16.h / cuda_bf16.h: the pinned NVRTC wheel
// ships no headers and the program is compiled with no include path (src/cuda/device.rs).
struct cm_f16 {
    __device__ static inline float load(unsigned short h) {
        float f;
        asm("{ .reg .b16 t; mov.b16 t, %1; cvt.f32.f16 %0, t; }" : "=f"(f) : "h"(h));
        return f;
    }
    __device__ static inline unsigned short store(float f) {
        unsigned short h;
        asm("{ .reg .b16 t; cvt.rn.f16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
        return h;
    }
};
struct cm_bf16 {
    // bf16 is the upper half of an f32: widening is a shift.
    __device__ static inline float load(unsigned short h) {
        return __uint_as_float(((unsigned int)h) << 16);
    }
    __device__ static inline unsigned short store(float f) {
        unsigned short h;
        asm("{ .reg .b16 t; cvt.rn.bf16.f32 t, %1; mov.b16 %0, t; }" : "=h"(h) : "f"(f));
        return h;
    }
};

template <typename H>
__device__ void cm_margin_forward_half(unsigned short* logits, const long long* labels,
                                       int* status, long long n, long long c,
                                       const cm_profile& pr0, const cm_rows& rows) {
    long long i, y;
    cm_profile pr;
    const int st = cm_row_with_profile(labels, status, n, c, pr0, rows, i, y, pr);
    if (st == CM_ROW_IGNORED || st == CM_ROW_BAD_LABEL) return;
    unsigned short* row = logits + i * c;
    if (cm_transforms_non_targets(pr)) {
        for (long long j = 0; j < c; ++j) {
            if (st == CM_ROW_TARGET && j == y) continue;
            row[j] = H::store(cm_non_target<float>(H::load(row[j]), pr).out);
        }
    }
    if (st == CM_ROW_TARGET) row[y] = H::store(cm_eval<float>(H::load(row[y]), pr).out);
}

// The product top_diff·factor in f32, rounded once: one storage rounding per output.
template <typename H>
__device__ void cm_margin_backward_half(const unsigned short* cos, unsigned short* grad,
                                        const long long* labels, int* status, long long n,
                                        long long c, const cm_profile& pr0, const cm_rows& rows) {
    long long i, y;
    cm_profile pr;
    const int st = cm_row_with_profile(labels, status, n, c, pr0, rows, i, y, pr);
    if (st == CM_ROW_IGNORED || st == CM_ROW_BAD_LABEL) return;
    const unsigned short* x = cos + i * c;
    unsigned short* g = grad + i * c;
    if (cm_transforms_non_targets(pr)) {
        for (long long j = 0; j < c; ++j) {
            if (st == CM_ROW_TARGET && j == y) continue;
            const float f = cm_non_target<float>(H::load(x[j]), pr).factor;
            if (f != 1.0f) g[j] = H::store(H::load(g[j]) * f);
        }
    }
    if (st == CM_ROW_TARGET) g[y] = H::store(H::load(g[y]) * cm_eval<float>(H::load(x[y]), pr).factor);
}

extern "C" __global__ void cm_margin_forward_f16(unsigned short* logits, const long long* labels,
                                                 int* status, long long n, long long c,
                                                 cm_profile pr, cm_rows rows) {
    cm_margin_forward_half<cm_f16>(logits, labels, status, n, c, pr, rows);
}
extern "C" __global__ void cm_margin_forward_bf16(unsigned short* logits,
                                                  const long long* labels, int* status,
                                                  long long n, long long c, cm_profile pr,
                                                  cm_rows rows) {
    cm_margin_forward_half<cm_bf16>(logits, labels, status, n, c, pr, rows);
}
extern "C" __global__ void cm_margin_backward_f16(const unsigned short* cos, unsigned short* grad,
                                                  const long long* labels, int* status,
                                                  long long n, long long c, cm_profile pr,
                                                  cm_rows rows) {
    cm_margin_backward_half<cm_f16>(cos, grad, labels, status, n, c, pr, rows);
}
extern "C" __global__ void cm_margin_backward_bf16(const unsigned short* cos,
                                                   unsigned short* grad,
                                                   const long long* labels, int* status,
                                                   long long n, long long c, cm_profile pr,
                                                  cm_rows rows) {
    cm_margin_backward_half<cm_bf16>(cos, grad, labels, status, n, c, pr, rows);
}

// ---------------------------------------------------------------------------------------
// (a'') The margin layer under CurricularFace (SPEC.md §11.3): the (a) kernels with
// CM_MOD_CURRICULAR and the running statistic t the forward used. In a row with a target, the
// mask threshold tau comes from the target's input, each non-target gets cm_curricular (the
// profile's treatment, then c~*(t + c~) where hard), the target the margin. Rows without a
// target are as in (a).
extern "C" __global__ void cm_curricular_forward_f32(float* logits, const long long* labels,
                                                     int* status, long long n, long long c,
                                                     float t, cm_profile pr, cm_rows rows) {
    cm_margin_forward<float, CM_MOD_CURRICULAR>(logits, labels, status, n, c, pr, rows,
                                                cm_curricular_mod<float>(t));
}
extern "C" __global__ void cm_curricular_forward_f64(double* logits, const long long* labels,
                                                     int* status, long long n, long long c,
                                                     double t, cm_profile pr, cm_rows rows) {
    cm_margin_forward<double, CM_MOD_CURRICULAR>(logits, labels, status, n, c, pr, rows,
                                                 cm_curricular_mod<double>(t));
}
extern "C" __global__ void cm_curricular_backward_f32(const float* cos, float* grad,
                                                      const long long* labels, int* status,
                                                      long long n, long long c, float t,
                                                      cm_profile pr, cm_rows rows) {
    cm_margin_backward<float, CM_MOD_CURRICULAR>(cos, grad, labels, status, n, c, pr, rows,
                                                 cm_curricular_mod<float>(t));
}
extern "C" __global__ void cm_curricular_backward_f64(const double* cos, double* grad,
                                                      const long long* labels, int* status,
                                                      long long n, long long c, double t,
                                                      cm_profile pr, cm_rows rows) {
    cm_margin_backward<double, CM_MOD_CURRICULAR>(cos, grad, labels, status, n, c, pr, rows,
                                                  cm_curricular_mod<double>(t));
}

// ---------------------------------------------------------------------------------------
// (a''') The margin layer under inter-top-k (SPEC.md §11.3): the (a) kernels with the k hardest
// non-targets of each row with a target (largest c~; ties at the cut to the lower column)
// turned into cos(theta - m') (cm_intertopk). cos_mp, sin_mp: cos m' and sin m' of the m' in
// force (0 while the head is inactive), rounded to T by the host. One thread per row: the cut
// costs 8*sizeof(T) + 1 counting passes over the row before the write pass.
extern "C" __global__ void cm_intertopk_forward_f32(float* logits, const long long* labels,
                                                    int* status, long long n, long long c,
                                                    long long k, float cos_mp, float sin_mp,
                                                    cm_profile pr, cm_rows rows) {
    cm_margin_forward<float, CM_MOD_INTERTOPK>(logits, labels, status, n, c, pr, rows,
                                               cm_intertopk_mod<float>(k, cos_mp, sin_mp));
}
extern "C" __global__ void cm_intertopk_forward_f64(double* logits, const long long* labels,
                                                    int* status, long long n, long long c,
                                                    long long k, double cos_mp, double sin_mp,
                                                    cm_profile pr, cm_rows rows) {
    cm_margin_forward<double, CM_MOD_INTERTOPK>(logits, labels, status, n, c, pr, rows,
                                                cm_intertopk_mod<double>(k, cos_mp, sin_mp));
}
extern "C" __global__ void cm_intertopk_backward_f32(const float* cos, float* grad,
                                                     const long long* labels, int* status,
                                                     long long n, long long c, long long k,
                                                     float cos_mp, float sin_mp, cm_profile pr,
                                                     cm_rows rows) {
    cm_margin_backward<float, CM_MOD_INTERTOPK>(cos, grad, labels, status, n, c, pr, rows,
                                                cm_intertopk_mod<float>(k, cos_mp, sin_mp));
}
extern "C" __global__ void cm_intertopk_backward_f64(const double* cos, double* grad,
                                                     const long long* labels, int* status,
                                                     long long n, long long c, long long k,
                                                     double cos_mp, double sin_mp,
                                                     cm_profile pr, cm_rows rows) {
    cm_margin_backward<double, CM_MOD_INTERTOPK>(cos, grad, labels, status, n, c, pr, rows,
                                                 cm_intertopk_mod<double>(k, cos_mp, sin_mp));
}

// ---------------------------------------------------------------------------------------
// (a'''') Sub-centres (SPEC.md §11.2): cos [N, C, K] -> [N, C] by the max over K (first index on
// ties, NaN wins) with its arg-max [N, C] (int64), and the backward that scatters d_cos [N, C]
// to the arg-max of each cell of grad [N, C, K] (zeros elsewhere). One thread per cell
// (cells = N*C); the margin kernels then run on the [N, C] maxima.
template <typename T>
__device__ void cm_subcenter_max(const T* cos, T* out, long long* arg, long long cells,
                                 long long k) {
    const long long cell = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (cell < cells) cm_subcenter_max_cell<T>(cos, cell, k, out, arg);
}
template <typename T>
__device__ void cm_subcenter_backward(const T* d_cos, const long long* arg, T* grad,
                                      long long cells, long long k) {
    const long long cell = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (cell < cells) cm_subcenter_backward_cell<T>(d_cos, arg, cell, k, grad);
}

extern "C" __global__ void cm_subcenter_max_f32(const float* cos, float* out, long long* arg,
                                                long long cells, long long k) {
    cm_subcenter_max<float>(cos, out, arg, cells, k);
}
extern "C" __global__ void cm_subcenter_max_f64(const double* cos, double* out, long long* arg,
                                                long long cells, long long k) {
    cm_subcenter_max<double>(cos, out, arg, cells, k);
}
extern "C" __global__ void cm_subcenter_backward_f32(const float* d_cos, const long long* arg,
                                                     float* grad, long long cells, long long k) {
    cm_subcenter_backward<float>(d_cos, arg, grad, cells, k);
}
extern "C" __global__ void cm_subcenter_backward_f64(const double* d_cos, const long long* arg,
                                                     double* grad, long long cells,
                                                     long long k) {
    cm_subcenter_backward<double>(d_cos, arg, grad, cells, k);
}

// ---------------------------------------------------------------------------------------
// (b) Fused margin + scale + softmax cross-entropy, forward and backward, VALID normalization:
//
//   z_j = s*cos_j (j != y),  z_y = s*margin(cos_y),  lse = log sum_j exp(z_j)
//   loss_i = lse - z_y,      loss = sum_{valid i} loss_i / max(n_valid, 1)
//   grad_ij = s*w*exp(z_j - lse)              (j != y)
//   grad_iy = s*w*expm1(z_y - lse)*factor_y   (p_y - 1 without cancellation)
//   w = 1/max(n_valid, 1); ignored rows: loss 0, gradient 0; bad labels: NaN row, status 2.
//
// Three launches on one stream: cm_count_valid (one block: n_valid, an exact integer),
// cm_fused (one block per row), cm_mean_loss (one block: a fixed-order sum, deterministic; no
// atomics anywhere). cm_fused reads each row twice (pass 1: online max and sum-exp; pass 2:
// the gradient) and writes it once: 3·C·sizeof(T) bytes per row, against the 2·C·sizeof(T) of
// a copy. A row of C = 360,000 floats (1.4 MB) does not fit in shared memory, so the second
// read is the realistic floor.

#define CM_FUSED_THREADS 512
#define CM_SMALL_THREADS 1024

__device__ inline float cm_exp(float x) { return expf(x); }
__device__ inline double cm_exp(double x) { return exp(x); }
__device__ inline float cm_expm1(float x) { return expm1f(x); }
__device__ inline double cm_expm1(double x) { return expm1(x); }
__device__ inline float cm_log(float x) { return logf(x); }
__device__ inline double cm_log(double x) { return log(x); }

// 16-byte vector access: 4 floats or 2 doubles per instruction, through the cache-hint
// intrinsics, which are single vector instructions by definition (a plain float4 store was
// split into pieces by the compiler). Pass 1 reads through the read-only path (__ldg);
// pass 2's read is the last use and its store is never re-read here: streaming (__ldcs, __stcs).
__device__ inline void cm_unpack(const float4 q, float (&v)[4]) {
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
}
__device__ inline void cm_unpack(const double2 q, double (&v)[2]) {
    v[0] = q.x;
    v[1] = q.y;
}
__device__ inline void cm_load16(const float* p, float (&v)[4]) {
    cm_unpack(__ldg(reinterpret_cast<const float4*>(p)), v);
}
__device__ inline void cm_load16(const double* p, double (&v)[2]) {
    cm_unpack(__ldg(reinterpret_cast<const double2*>(p)), v);
}
__device__ inline void cm_load16_last(const float* p, float (&v)[4]) {
    cm_unpack(__ldcs(reinterpret_cast<const float4*>(p)), v);
}
__device__ inline void cm_load16_last(const double* p, double (&v)[2]) {
    cm_unpack(__ldcs(reinterpret_cast<const double2*>(p)), v);
}
__device__ inline void cm_store16(float* p, const float (&v)[4]) {
    __stcs(reinterpret_cast<float4*>(p), make_float4(v[0], v[1], v[2], v[3]));
}
__device__ inline void cm_store16(double* p, const double (&v)[2]) {
    __stcs(reinterpret_cast<double2*>(p), make_double2(v[0], v[1]));
}

// Online log-sum-exp state of a stream of z: m = max so far, d = sum exp(z - m).
// Empty: (-inf, 0). A NaN z makes d NaN, and NaN stays.
template <typename T> struct cm_lse {
    T m, d;
};

template <typename T> __device__ inline void cm_lse_push(cm_lse<T>& a, T z) {
    if (z > a.m) {
        a.d = a.d * cm_exp(a.m - z) + T(1);
        a.m = z;
    } else {
        a.d = a.d + cm_exp(z - a.m);
    }
}

// Merges b into a. Deterministic for a fixed order of merges (the reductions below fix it).
template <typename T> __device__ inline void cm_lse_merge(cm_lse<T>& a, cm_lse<T> b) {
    if (b.d == T(0)) return;
    if (a.d == T(0)) {
        a = b;
        return;
    }
    if (b.m > a.m) {
        const cm_lse<T> t = a;
        a = b;
        b = t;
    }
    a.d = a.d + b.d * cm_exp(b.m - a.m);
}

// Block-wide merge; every thread gets the result. blockDim.x is a multiple of 32, <= 1024.
template <typename T> __device__ cm_lse<T> cm_lse_block(cm_lse<T> a) {
    __shared__ T sm[32];
    __shared__ T sd[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        cm_lse<T> b;
        b.m = __shfl_down_sync(0xffffffffu, a.m, off);
        b.d = __shfl_down_sync(0xffffffffu, a.d, off);
        cm_lse_merge(a, b);
    }
    if (lane == 0) {
        sm[warp] = a.m;
        sd[warp] = a.d;
    }
    __syncthreads();
    if (warp == 0) {
        const unsigned nwarps = blockDim.x >> 5;
        cm_lse<T> w;
        w.m = lane < nwarps ? sm[lane] : -cm_inf<T>();
        w.d = lane < nwarps ? sd[lane] : T(0);
        for (int off = 16; off > 0; off >>= 1) {
            cm_lse<T> b;
            b.m = __shfl_down_sync(0xffffffffu, w.m, off);
            b.d = __shfl_down_sync(0xffffffffu, w.d, off);
            cm_lse_merge(w, b);
        }
        if (lane == 0) {
            sm[0] = w.m;
            sd[0] = w.d;
        }
    }
    __syncthreads();
    cm_lse<T> r;
    r.m = sm[0];
    r.d = sd[0];
    return r;
}

// Elements per 16-byte vector.
template <typename T> struct cm_width {
    static const int value = 16 / sizeof(T);
};

// Scalars before the first 16-byte boundary of p (at most c).
template <typename T> __device__ inline long long cm_head(const T* p, long long c) {
    const unsigned long long mis = (unsigned long long)p & 15ull;
    const long long h = mis == 0 ? 0 : (long long)((16ull - mis) / sizeof(T));
    return h < c ? h : c;
}

template <typename T>
__device__ void cm_fused(const T* __restrict__ cos, const long long* __restrict__ labels,
                         const long long* __restrict__ n_valid, T* __restrict__ grad,
                         T* __restrict__ row_loss, int* __restrict__ status, long long c,
                         const cm_profile& pr0, const cm_rows& rows) {
    const int W = cm_width<T>::value;
    const long long i = blockIdx.x;
    // Row i's parameters and the constants that depend on them (stride 0 / null: the scalar).
    const cm_profile pr = cm_row_profile(pr0, rows, i);
    const long long tid = threadIdx.x, nt = blockDim.x;
    const T* x = cos + i * c;
    T* g = grad + i * c;

    const long long y = labels[i];
    // The fused kernel takes only profiles that leave non-targets alone (the host refuses the
    // others), so a row without a target is an ignored row here.
    const int st0 = cm_row_status(y, c, pr.labels);
    const int st = st0 == CM_ROW_NO_TARGET ? CM_ROW_IGNORED : st0;
    if (st != CM_ROW_TARGET) {
        // The status is uniform over the block, so the whole block leaves here.
        const T fill = st == CM_ROW_IGNORED ? T(0) : cm_inf<T>() - cm_inf<T>();
        for (long long j = tid; j < c; j += nt) g[j] = fill;
        if (tid == 0) {
            row_loss[i] = fill;
            status[i] = st;
        }
        return;
    }

    __shared__ T sh_zt, sh_ft;
    const T s = (T)pr.s;
    if (tid == 0) {
        const cm_entry<T> e = cm_eval<T>(x[y], pr);
        sh_zt = s * e.out;
        sh_ft = e.factor;
    }
    __syncthreads();
    const T zt = sh_zt, ft = sh_ft;

    // Pass 1: online max and sum-exp over the row; scalar head up to the 16-byte boundary,
    // 16-byte vectors, scalar tail.
    const long long head = cm_head(x, c);
    const long long nvec = (c - head) / W;
    const long long tail = head + nvec * W;
    cm_lse<T> a;
    a.m = -cm_inf<T>();
    a.d = T(0);
    for (long long j = tid; j < head; j += nt) cm_lse_push(a, j == y ? zt : s * x[j]);
#pragma unroll 4
    for (long long v = tid; v < nvec; v += nt) {
        T q[cm_width<T>::value];
        const long long j0 = head + v * W;
        cm_load16(x + j0, q);
        for (int k = 0; k < W; ++k) cm_lse_push(a, j0 + k == y ? zt : s * q[k]);
    }
    for (long long j = tail + tid; j < c; j += nt) cm_lse_push(a, j == y ? zt : s * x[j]);
    a = cm_lse_block(a);
    const T lse = a.m + cm_log(a.d);

    if (tid == 0) {
        row_loss[i] = lse - zt;
        status[i] = CM_ROW_TARGET;
    }

    // Pass 2: the gradient. Vector stores need g on the same 16-byte phase as x (true for
    // buffers of one shape from one allocator); otherwise every element goes scalar.
    const long long nv = *n_valid;
    const T w = T(1) / (T)(nv > 1 ? nv : 1);
    const T sw = s * w;
    const T gt = cm_expm1(zt - lse) * sw * ft;
    if (cm_head(g, c) == head) {
        for (long long j = tid; j < head; j += nt)
            g[j] = j == y ? gt : cm_exp(s * x[j] - lse) * sw;
#pragma unroll 4
        for (long long v = tid; v < nvec; v += nt) {
            T q[cm_width<T>::value];
            const long long j0 = head + v * W;
            cm_load16_last(x + j0, q);
            for (int k = 0; k < W; ++k) q[k] = j0 + k == y ? gt : cm_exp(s * q[k] - lse) * sw;
            cm_store16(g + j0, q);
        }
        for (long long j = tail + tid; j < c; j += nt)
            g[j] = j == y ? gt : cm_exp(s * x[j] - lse) * sw;
    } else {
        for (long long j = tid; j < c; j += nt) g[j] = j == y ? gt : cm_exp(s * x[j] - lse) * sw;
    }
}

extern "C" __global__ void __launch_bounds__(CM_FUSED_THREADS)
    cm_fused_f32(const float* __restrict__ cos, const long long* __restrict__ labels,
                 const long long* __restrict__ n_valid, float* __restrict__ grad,
                 float* __restrict__ row_loss, int* __restrict__ status, long long c,
                 cm_profile pr, cm_rows rows) {
    cm_fused<float>(cos, labels, n_valid, grad, row_loss, status, c, pr, rows);
}
extern "C" __global__ void __launch_bounds__(CM_FUSED_THREADS)
    cm_fused_f64(const double* __restrict__ cos, const long long* __restrict__ labels,
                 const long long* __restrict__ n_valid, double* __restrict__ grad,
                 double* __restrict__ row_loss, int* __restrict__ status, long long c,
                 cm_profile pr, cm_rows rows) {
    cm_fused<double>(cos, labels, n_valid, grad, row_loss, status, c, pr, rows);
}

// n_valid = #{i : 0 <= labels[i] < c}. One block of CM_SMALL_THREADS; integer sums are exact.
extern "C" __global__ void __launch_bounds__(CM_SMALL_THREADS)
    cm_count_valid(const long long* __restrict__ labels, long long n, long long c,
                   int labels_policy, long long* __restrict__ n_valid) {
    __shared__ long long part[CM_SMALL_THREADS];
    long long k = 0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x)
        k += cm_row_status(labels[i], c, labels_policy) == CM_ROW_TARGET ? 1 : 0;
    part[threadIdx.x] = k;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) *n_valid = part[0];
}

// loss = (sum of row_loss over CM_ROW_TARGET rows) / max(n_valid, 1), summed in double in a
// fixed order (strided per thread, then a tree): the same bits on every run.
template <typename T>
__device__ void cm_mean_loss(const T* __restrict__ row_loss, const int* __restrict__ status,
                             long long n, const long long* __restrict__ n_valid,
                             double* __restrict__ loss) {
    __shared__ double part[CM_SMALL_THREADS];
    double acc = 0.0;
    for (long long i = threadIdx.x; i < n; i += blockDim.x)
        if (status[i] == CM_ROW_TARGET) acc += (double)row_loss[i];
    part[threadIdx.x] = acc;
    __syncthreads();
    for (unsigned h = blockDim.x / 2; h > 0; h >>= 1) {
        if (threadIdx.x < h) part[threadIdx.x] += part[threadIdx.x + h];
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        const long long nv = *n_valid;
        *loss = part[0] / (double)(nv > 1 ? nv : 1);
    }
}

extern "C" __global__ void __launch_bounds__(CM_SMALL_THREADS)
    cm_mean_loss_f32(const float* __restrict__ row_loss, const int* __restrict__ status,
                     long long n, const long long* __restrict__ n_valid,
                     double* __restrict__ loss) {
    cm_mean_loss<float>(row_loss, status, n, n_valid, loss);
}
extern "C" __global__ void __launch_bounds__(CM_SMALL_THREADS)
    cm_mean_loss_f64(const double* __restrict__ row_loss, const int* __restrict__ status,
                     long long n, const long long* __restrict__ n_valid,
                     double* __restrict__ loss) {
    cm_mean_loss<double>(row_loss, status, n, n_valid, loss);
}
