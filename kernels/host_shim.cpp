// The per-entry math of combined_margin.cuh compiled for the host, so that CI (no GPU) checks
// the very text the kernels compile against the f64 reference. build.rs compiles this file
// with the `cc` crate; src/cuda/host.rs declares these functions.
#include <cstddef>

#include "combined_margin.cuh"

namespace {
template <typename T>
void eval_into(T c, const cm_profile* pr, T* out, T* factor, int* branch) {
    const cm_entry<T> e = cm_eval<T>(c, *pr);
    *out = e.out;
    *factor = e.factor;
    *branch = e.branch;
}

// One row x[0, c) with target y under inter-top-k, as the (a''') kernels evaluate it: out and
// factor of every column (the target's from cm_eval), top[j] = 1 where column j was modulated.
template <typename T>
void intertopk_row(const T* x, long long c, long long y, long long k, T cos_mp, T sin_mp,
                   const cm_profile* pr, T* out, T* factor, int* top) {
    const cm_mod_args<T> md = cm_intertopk_mod<T>(k, cos_mp, sin_mp);
    cm_mod_row<T> mr = cm_mod_setup<T>(CM_MOD_INTERTOPK, x, c, y, md, *pr);
    for (long long j = 0; j < c; ++j) {
        if (j == y) {
            const cm_entry<T> e = cm_eval<T>(x[j], *pr);
            out[j] = e.out;
            factor[j] = e.factor;
            top[j] = 0;
            continue;
        }
        const cm_plain<T> r = cm_mod_entry<T>(CM_MOD_INTERTOPK, x[j], md, &mr, *pr, &top[j]);
        out[j] = r.out;
        factor[j] = r.factor;
    }
}
}  // namespace

extern "C" {

void cm_host_eval_f32(float c, const cm_profile* pr, float* out, float* factor, int* branch) {
    eval_into<float>(c, pr, out, factor, branch);
}

void cm_host_eval_f64(double c, const cm_profile* pr, double* out, double* factor, int* branch) {
    eval_into<double>(c, pr, out, factor, branch);
}

// Row i of a per-row case: cm_eval under cm_row_profile(pr, rows, i), as the kernels do.
void cm_host_eval_row_f32(float c, const cm_profile* pr, const cm_rows* rows, long long i,
                          float* out, float* factor, int* branch) {
    const cm_profile q = cm_row_profile(*pr, *rows, i);
    eval_into<float>(c, &q, out, factor, branch);
}

void cm_host_eval_row_f64(double c, const cm_profile* pr, const cm_rows* rows, long long i,
                          double* out, double* factor, int* branch) {
    const cm_profile q = cm_row_profile(*pr, *rows, i);
    eval_into<double>(c, &q, out, factor, branch);
}

// The layout of cm_rows: size, then the offset of each field in declaration order.
size_t cm_host_rows_layout(size_t* offsets, size_t capacity) {
#define CM_ROW_OFFSET(name) offsetof(cm_rows, name),
    const size_t o[] = {CM_ROW_FIELDS(CM_ROW_OFFSET)};
#undef CM_ROW_OFFSET
    const size_t n = sizeof(o) / sizeof(o[0]);
    for (size_t i = 0; i < n && i < capacity; ++i) offsets[i] = o[i];
    return sizeof(cm_rows);
}

// CurricularFace (combined_margin.cuh): tau of a row's target, and one non-target entry.
float cm_host_curricular_tau_f32(float c_target, const cm_profile* pr) {
    return cm_curricular_tau<float>(c_target, *pr);
}
double cm_host_curricular_tau_f64(double c_target, const cm_profile* pr) {
    return cm_curricular_tau<double>(c_target, *pr);
}
void cm_host_curricular_f32(float c, float t, float tau, const cm_profile* pr, float* out,
                            float* factor, int* hard) {
    const cm_plain<float> r = cm_curricular<float>(c, t, tau, *pr, hard);
    *out = r.out;
    *factor = r.factor;
}
void cm_host_curricular_f64(double c, double t, double tau, const cm_profile* pr, double* out,
                            double* factor, int* hard) {
    const cm_plain<double> r = cm_curricular<double>(c, t, tau, *pr, hard);
    *out = r.out;
    *factor = r.factor;
}

// Inter-top-k on one row (combined_margin.cuh; intertopk_row above).
void cm_host_intertopk_row_f32(const float* x, long long c, long long y, long long k,
                               float cos_mp, float sin_mp, const cm_profile* pr, float* out,
                               float* factor, int* top) {
    intertopk_row<float>(x, c, y, k, cos_mp, sin_mp, pr, out, factor, top);
}
void cm_host_intertopk_row_f64(const double* x, long long c, long long y, long long k,
                               double cos_mp, double sin_mp, const cm_profile* pr, double* out,
                               double* factor, int* top) {
    intertopk_row<double>(x, c, y, k, cos_mp, sin_mp, pr, out, factor, top);
}
unsigned long long cm_host_order_key_f32(float x) { return cm_order_key(x); }
unsigned long long cm_host_order_key_f64(double x) { return cm_order_key(x); }

// The sub-centre max over `cells` cells of K, and its backward (combined_margin.cuh).
void cm_host_subcenter_max_f32(const float* cos, long long cells, long long k, float* out,
                               long long* arg) {
    for (long long cell = 0; cell < cells; ++cell) cm_subcenter_max_cell<float>(cos, cell, k, out, arg);
}
void cm_host_subcenter_max_f64(const double* cos, long long cells, long long k, double* out,
                               long long* arg) {
    for (long long cell = 0; cell < cells; ++cell) cm_subcenter_max_cell<double>(cos, cell, k, out, arg);
}
void cm_host_subcenter_backward_f32(const float* d_cos, const long long* arg, long long cells,
                                    long long k, float* grad) {
    for (long long cell = 0; cell < cells; ++cell)
        cm_subcenter_backward_cell<float>(d_cos, arg, cell, k, grad);
}
void cm_host_subcenter_backward_f64(const double* d_cos, const long long* arg, long long cells,
                                    long long k, double* grad) {
    for (long long cell = 0; cell < cells; ++cell)
        cm_subcenter_backward_cell<double>(d_cos, arg, cell, k, grad);
}

int cm_host_row_status(long long label, long long classes, int labels) {
    return cm_row_status(label, classes, labels);
}

void cm_host_non_target_f32(float c, const cm_profile* pr, float* out, float* factor) {
    const cm_plain<float> r = cm_non_target<float>(c, *pr);
    *out = r.out;
    *factor = r.factor;
}

void cm_host_non_target_f64(double c, const cm_profile* pr, double* out, double* factor) {
    const cm_plain<double> r = cm_non_target<double>(c, *pr);
    *out = r.out;
    *factor = r.factor;
}

// The layout of cm_profile as this compiler sees it: size, then the offset of each field in
// declaration order. src/cuda/mod.rs compares it with KernelProfile's.
size_t cm_host_profile_layout(size_t* offsets, size_t capacity) {
#define CM_OFFSET(name) offsetof(cm_profile, name),
    const size_t o[] = {CM_PROFILE_FIELDS(CM_OFFSET, CM_OFFSET)};
#undef CM_OFFSET
    const size_t n = sizeof(o) / sizeof(o[0]);
    for (size_t i = 0; i < n && i < capacity; ++i) offsets[i] = o[i];
    return sizeof(cm_profile);
}

}  // extern "C"
