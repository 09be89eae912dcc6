//! numpy arrays in and out. Inputs are read through numpy's buffer as they lie (a borrowed
//! view: contiguous arrays are read in place, strided ones element by element in C order)
//! and widened once to the f64 the crate's checker works in. Every refusal is one located
//! line in the CLI's words (`label: field "cos": problem`, as `fixture::FixtureError` prints).

use combined_margin::fixture::validate::{self, shape_str};
use combined_margin::fixture::FixtureError;
use combined_margin::Dtype;
use numpy::{IntoPyArray, PyReadonlyArrayDyn, PyUntypedArrayMethods};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

/// A located bad-input message as a `ValueError`.
pub fn value_error(e: FixtureError) -> PyErr {
    PyValueError::new_err(e.to_string())
}

/// `label: field "name": problem` as a `ValueError`.
pub fn field_error(label: &str, field: &str, problem: impl Into<String>) -> PyErr {
    value_error(FixtureError::new(label, problem).in_field(field))
}

/// The numpy dtype string of an object (`<f4`, `<U3`, `|O`), for messages.
fn descr(obj: &Bound<'_, PyAny>) -> String {
    obj.getattr("dtype")
        .and_then(|d| d.getattr("str"))
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| {
            obj.get_type()
                .name()
                .map(|n| n.to_string())
                .unwrap_or_default()
        })
}

/// A float array as it arrived: f32 or f64, or a 16-bit float as its bits with its format
/// (`("f16" | "bf16", uint16 view)`: the Python side hands half arrays over this way, since
/// numpy has no bfloat16 of its own; `_arrays.to_core`). Any shape, any strides.
#[derive(FromPyObject)]
pub enum Floats<'py> {
    F32(PyReadonlyArrayDyn<'py, f32>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    Half(String, PyReadonlyArrayDyn<'py, u16>),
}

/// An array widened to f64, C order, with its shape and the precision it came in.
pub struct Widened {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
    pub dtype: Dtype,
}

/// The value of a 16-bit float's bits (exact widening).
fn half_value(dtype: Dtype, bits: u16) -> f64 {
    match dtype {
        Dtype::BF16 => f32::from_bits((bits as u32) << 16) as f64,
        _ => half::f16::from_bits(bits).to_f64(),
    }
}

impl Floats<'_> {
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Floats::F32(a) => a.shape().to_vec(),
            Floats::F64(a) => a.shape().to_vec(),
            Floats::Half(_, a) => a.shape().to_vec(),
        }
    }

    /// The precision; a half tag other than "f16"/"bf16" is an error.
    pub fn dtype(&self, label: &str, field: &str) -> PyResult<Dtype> {
        match self {
            Floats::F32(_) => Ok(Dtype::F32),
            Floats::F64(_) => Ok(Dtype::F64),
            Floats::Half(tag, _) => match Dtype::parse(tag) {
                Some(d @ (Dtype::F16 | Dtype::BF16)) => Ok(d),
                _ => Err(field_error(
                    label,
                    field,
                    format!("16-bit format {tag:?}: expected \"f16\" or \"bf16\""),
                )),
            },
        }
    }

    /// Widens to f64 (exactly): a contiguous array is read as one slice, a strided one
    /// through its view. The f64 copy is reserved fallibly.
    pub fn widen(&self, label: &str, field: &str) -> PyResult<Widened> {
        fn go<T: Copy + numpy::Element>(
            a: &PyReadonlyArrayDyn<'_, T>,
            out: &mut Vec<f64>,
            f: impl Fn(T) -> f64,
        ) {
            match a.as_slice() {
                Ok(s) => out.extend(s.iter().map(|&x| f(x))),
                Err(_) => out.extend(a.as_array().iter().map(|&x| f(x))),
            }
        }
        let shape = self.shape();
        let dtype = self.dtype(label, field)?;
        let len = shape.iter().product::<usize>();
        let mut values = crate::memory::vec_with_capacity(label, field, len)?;
        match self {
            Floats::F32(a) => go(a, &mut values, |x| x as f64),
            Floats::F64(a) => go(a, &mut values, |x| x),
            Floats::Half(_, a) => go(a, &mut values, |b| half_value(dtype, b)),
        }
        Ok(Widened {
            shape,
            values,
            dtype,
        })
    }
}

/// Extracts a float array or says, in the CLI's words, why not.
pub fn floats<'py>(label: &str, field: &str, obj: &Bound<'py, PyAny>) -> PyResult<Floats<'py>> {
    obj.extract::<Floats<'py>>().map_err(|_| {
        PyTypeError::new_err(
            FixtureError::new(
                label,
                format!(
                    "dtype {} is not a float type (float64, float32, float16 or bfloat16)",
                    descr(obj)
                ),
            )
            .in_field(field)
            .to_string(),
        )
    })
}

/// The elements of an array's shape (saturating), for the memory check before any copy.
pub fn elements(shape: &[usize]) -> u64 {
    shape.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64))
}

/// Refuses values that `dtype` cannot hold exactly (an explicit `dtype=` the arrays are not on).
pub fn on_grid(label: &str, field: &str, values: &[f64], dtype: Dtype) -> PyResult<()> {
    match values
        .iter()
        .position(|&x| !x.is_nan() && dtype.round(x) != x)
    {
        None => Ok(()),
        Some(i) => Err(field_error(
            label,
            field,
            format!(
                "element {i} is {}, not a {dtype} value; with dtype={dtype} the inputs must be \
                 {dtype} values (round them first: the implementation saw them rounded)",
                values[i]
            ),
        )),
    }
}

/// `cos` [N, C]: float32 or float64 (the dtype of the check), two dimensions, no NaN.
/// `figure`: the caller's peak estimate for a `cos` of so many elements ([`crate::memory`]).
pub fn cos_input(
    label: &str,
    obj: &Bound<'_, PyAny>,
    figure: impl Fn(u64) -> crate::memory::Figure,
) -> PyResult<(usize, usize, Widened)> {
    let a = floats(label, "cos", obj)?;
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let e = elements(&a.shape());
    crate::memory::check_at(label, &format!("cos {}", shape_str(&shape)), e, figure(e))?;
    if shape.len() != 2 {
        return Err(field_error(
            label,
            "cos",
            format!(
                "shape {} has {} dimensions, expected 2 (N, C)",
                shape_str(&shape),
                shape.len()
            ),
        ));
    }
    let w = a.widen(label, "cos")?;
    let (n, c) = (w.shape[0], w.shape[1]);
    validate::no_nan(label, "cos", &w.values, c).map_err(value_error)?;
    Ok((n, c, w))
}

/// A float array of shape (n, c) (any float precision: widened, never rounded).
pub fn nc_floats(
    label: &str,
    field: &str,
    obj: &Bound<'_, PyAny>,
    n: usize,
    c: usize,
) -> PyResult<Vec<f64>> {
    let a = floats(label, field, obj)?;
    let shape: Vec<u64> = a.shape().iter().map(|&d| d as u64).collect();
    let want = [n as u64, c as u64];
    if shape != want {
        return Err(field_error(
            label,
            field,
            format!("shape {}, expected {}", shape_str(&shape), shape_str(&want)),
        ));
    }
    Ok(a.widen(label, field)?.values)
}

/// Integer labels as they may arrive.
#[derive(FromPyObject)]
enum Ints<'py> {
    I64(PyReadonlyArrayDyn<'py, i64>),
    I32(PyReadonlyArrayDyn<'py, i32>),
    I16(PyReadonlyArrayDyn<'py, i16>),
    I8(PyReadonlyArrayDyn<'py, i8>),
    U64(PyReadonlyArrayDyn<'py, u64>),
    U32(PyReadonlyArrayDyn<'py, u32>),
    U16(PyReadonlyArrayDyn<'py, u16>),
    U8(PyReadonlyArrayDyn<'py, u8>),
    F64(PyReadonlyArrayDyn<'py, f64>),
    F32(PyReadonlyArrayDyn<'py, f32>),
}

/// Labels [N] or [N, 1] (torch's `labels.view(-1, 1)`): any integer type, or floats holding
/// integers (as the `.npz` reader accepts); each −1 (ignore) or in [0, C).
pub fn labels_input(label: &str, obj: &Bound<'_, PyAny>, n: usize, c: usize) -> PyResult<Vec<i64>> {
    let a: Ints = obj.extract().map_err(|_| {
        PyTypeError::new_err(
            FixtureError::new(
                label,
                format!("dtype {} is not an integer or float type", descr(obj)),
            )
            .in_field("labels")
            .to_string(),
        )
    })?;
    macro_rules! ints {
        ($a:expr) => {{
            let shape = $a.shape().to_vec();
            let v: Vec<i128> = $a.as_array().iter().map(|&x| x as i128).collect();
            (shape, Ok::<_, String>(v))
        }};
    }
    macro_rules! fl {
        ($a:expr) => {{
            let shape = $a.shape().to_vec();
            let v: Result<Vec<i128>, String> = $a
                .as_array()
                .iter()
                .enumerate()
                .map(|(i, &x)| validate::float_label(i, x as f64).map(|l| l as i128))
                .collect();
            (shape, v)
        }};
    }
    let (shape, values) = match &a {
        Ints::I64(a) => ints!(a),
        Ints::I32(a) => ints!(a),
        Ints::I16(a) => ints!(a),
        Ints::I8(a) => ints!(a),
        Ints::U64(a) => ints!(a),
        Ints::U32(a) => ints!(a),
        Ints::U16(a) => ints!(a),
        Ints::U8(a) => ints!(a),
        Ints::F64(a) => fl!(a),
        Ints::F32(a) => fl!(a),
    };
    if !(shape == [n] || shape == [n, 1]) {
        let s: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        return Err(field_error(
            label,
            "labels",
            format!(
                "shape {}, expected ({n},) or ({n}, 1), one label per row of cos",
                shape_str(&s)
            ),
        ));
    }
    let values = values.map_err(|p| field_error(label, "labels", p))?;
    let labels: Vec<i64> = values
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            i64::try_from(l).map_err(|_| {
                field_error(label, "labels", format!("element {i} is {l} , not a label"))
            })
        })
        .collect::<PyResult<_>>()?;
    validate::labels_in_range(label, &labels, c as u64).map_err(value_error)?;
    Ok(labels)
}

/// f64 values as a numpy array of `dtype` and shape (n, c), each rounded once to the dtype.
pub fn out_array<'py>(
    py: Python<'py>,
    values: Vec<f64>,
    shape: &[usize],
    dtype: Dtype,
) -> PyResult<Bound<'py, PyAny>> {
    let dim = ndarray::IxDyn(shape);
    let err = |e: ndarray::ShapeError| PyValueError::new_err(e.to_string());
    Ok(match dtype {
        Dtype::F32 => {
            let v: Vec<f32> = values.into_iter().map(|x| x as f32).collect();
            ndarray::ArrayD::from_shape_vec(dim, v)
                .map_err(err)?
                .into_pyarray(py)
                .into_any()
        }
        Dtype::F64 => ndarray::ArrayD::from_shape_vec(dim, values)
            .map_err(err)?
            .into_pyarray(py)
            .into_any(),
        // 16-bit values as their bits, viewed as numpy.float16 or ml_dtypes.bfloat16.
        Dtype::F16 | Dtype::BF16 => {
            let bits: Vec<u16> = values
                .into_iter()
                .map(|x| match dtype {
                    Dtype::BF16 => ((dtype.round(x) as f32).to_bits() >> 16) as u16,
                    _ => half::f16::from_f64(dtype.round(x)).to_bits(),
                })
                .collect();
            let a = ndarray::ArrayD::from_shape_vec(dim, bits)
                .map_err(err)?
                .into_pyarray(py)
                .into_any();
            let np_dtype = match dtype {
                Dtype::BF16 => py
                    .import("ml_dtypes")
                    .and_then(|m| m.getattr("bfloat16"))
                    .map_err(|_| {
                        PyTypeError::new_err(
                            "bfloat16 arrays need the ml_dtypes package (pip install ml_dtypes)",
                        )
                    })?,
                _ => py.import("numpy")?.getattr("float16")?,
            };
            a.call_method1("view", (np_dtype,))?
        }
    })
}

/// f64 values as an f64 numpy array of shape `shape` (budgets, fractions: never rounded).
pub fn f64_array<'py>(
    py: Python<'py>,
    values: Vec<f64>,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    out_array(py, values, shape, Dtype::F64)
}
