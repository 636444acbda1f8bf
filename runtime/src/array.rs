//! Host arrays: typed, row-major element bytes, convertible to the interpreters' arrays and to
//! and from `.npy` files, and generated from a seeded random source.

use crate::error::RunError;
use rand::{Rng, SeedableRng};
pub use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;
use tk_ir::dtype::DType;
use tk_ir::graph::Scalar;
use tk_ir::graph::interp::{Array, Data};

/// An array in host memory: elements in row-major order, little-endian, in the dtype's storage
/// format (f16 and bf16 as their 16 bits, bool as one byte 0 or 1).
#[derive(Clone, Debug, PartialEq)]
pub struct HostArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

/// Bytes per element of a dtype in memory.
pub fn elem_bytes(d: DType) -> usize {
    (d.bits() / 8) as usize
}

impl HostArray {
    pub fn zeros(dtype: DType, shape: Vec<usize>) -> HostArray {
        let n: usize = shape.iter().product();
        HostArray { dtype, shape, data: vec![0; n * elem_bytes(dtype)] }
    }

    /// Zeros, or an error saying why an array of this size cannot be made (its size overflows,
    /// or this machine cannot allocate it), checked before any allocation.
    pub fn try_zeros(dtype: DType, shape: Vec<usize>) -> Result<HostArray, String> {
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let what = || format!("an array of {dtype}[{}]", dims.join(", "));
        let n = shape.iter().try_fold(1usize, |a, d| a.checked_mul(*d));
        let Some(bytes) = n.and_then(|n| n.checked_mul(elem_bytes(dtype))) else {
            return Err(format!("{} has more bytes than this machine can address", what()));
        };
        let mut data = Vec::new();
        if data.try_reserve_exact(bytes).is_err() {
            return Err(format!("{} needs {}, more memory than this machine can give", what(), human_bytes(bytes)));
        }
        data.resize(bytes, 0);
        Ok(HostArray { dtype, shape, data })
    }
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as an f64 (integers and bools converted).
    pub fn get_f64(&self, i: usize) -> f64 {
        match self.get(i) {
            Scalar::Float(v) => v,
            Scalar::Int(v) => v as f64,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        }
    }

    /// Element `i` as a scalar.
    pub fn get(&self, i: usize) -> Scalar {
        let b = elem_bytes(self.dtype);
        let s = &self.data[i * b..(i + 1) * b];
        let arr = |n: usize| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..n].copy_from_slice(&s[..n]);
            a
        };
        match self.dtype {
            DType::F32 => Scalar::Float(f64::from(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))),
            DType::F64 => Scalar::Float(f64::from_le_bytes(arr(8))),
            DType::F16 => Scalar::Float(half::f16::from_le_bytes([s[0], s[1]]).to_f64()),
            DType::Bf16 => Scalar::Float(half::bf16::from_le_bytes([s[0], s[1]]).to_f64()),
            DType::I8 => Scalar::Int(i128::from(s[0] as i8)),
            DType::U8 => Scalar::Int(i128::from(s[0])),
            DType::I16 => Scalar::Int(i128::from(i16::from_le_bytes([s[0], s[1]]))),
            DType::I32 => Scalar::Int(i128::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]]))),
            DType::U32 => Scalar::Int(i128::from(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))),
            DType::I64 => Scalar::Int(i128::from(i64::from_le_bytes(arr(8)))),
            DType::Bool => Scalar::Bool(s[0] != 0),
        }
    }

    /// Sets element `i`, converting (rounding floats, wrapping integers) to the dtype.
    pub fn set(&mut self, i: usize, v: Scalar) {
        let b = elem_bytes(self.dtype);
        let v = tk_ir::graph::interp::scalar_to(v, self.dtype);
        let bytes: Vec<u8> = match (self.dtype, v) {
            (DType::F32, Scalar::Float(f)) => (f as f32).to_le_bytes().to_vec(),
            (DType::F64, Scalar::Float(f)) => f.to_le_bytes().to_vec(),
            (DType::F16, Scalar::Float(f)) => half::f16::from_f64(f).to_le_bytes().to_vec(),
            (DType::Bf16, Scalar::Float(f)) => half::bf16::from_f64(f).to_le_bytes().to_vec(),
            (DType::Bool, Scalar::Bool(x)) => vec![u8::from(x)],
            (_, Scalar::Int(x)) => (x as i64).to_le_bytes()[..b].to_vec(),
            _ => vec![0; b],
        };
        self.data[i * b..(i + 1) * b].copy_from_slice(&bytes);
    }

    /// The same values as an interpreter array.
    pub fn to_interp(&self) -> Array {
        Array::from_fn(self.dtype, self.shape.clone(), |i| self.get(i))
    }

    /// An interpreter array in host memory.
    pub fn from_interp(a: &Array) -> HostArray {
        let mut h = HostArray::zeros(a.dtype, a.shape.clone());
        for i in 0..a.len() {
            let v = match &a.data {
                Data::F(v) => Scalar::Float(v[i]),
                Data::I(v) => Scalar::Int(v[i]),
                Data::B(v) => Scalar::Bool(v[i]),
            };
            h.set(i, v);
        }
        h
    }

    /// A scalar (rank 0) array.
    pub fn scalar(dtype: DType, v: Scalar) -> HostArray {
        let mut h = HostArray::zeros(dtype, vec![]);
        h.set(0, v);
        h
    }

    /// Random elements (see [`Random`]).
    pub fn random(dtype: DType, shape: Vec<usize>, dist: Random, rng: &mut ChaCha8Rng) -> HostArray {
        let h = HostArray::zeros(dtype, shape);
        h.fill_random(dist, rng)
    }

    /// Random elements, or an error when the array cannot be allocated (see [`HostArray::try_zeros`]).
    pub fn try_random(
        dtype: DType,
        shape: Vec<usize>,
        dist: Random,
        rng: &mut ChaCha8Rng,
    ) -> Result<HostArray, String> {
        Ok(HostArray::try_zeros(dtype, shape)?.fill_random(dist, rng))
    }

    /// Integers uniform in `[lo, hi)` as elements of `dtype` (an integer or float dtype), or an
    /// error saying why not: an empty range, bounds outside the dtype, or an array that cannot
    /// be allocated.
    pub fn try_randint(
        dtype: DType,
        lo: i64,
        hi: i64,
        shape: Vec<usize>,
        rng: &mut ChaCha8Rng,
    ) -> Result<HostArray, String> {
        if lo >= hi {
            return Err(format!("randint {lo}..{hi} is empty: LO must be below HI"));
        }
        if dtype == DType::Bool {
            return Err("randint makes integers; a bool parameter takes rand:DIMS".into());
        }
        if let Some((min, max)) = dtype.int_range()
            && (i128::from(lo) < min || i128::from(hi) - 1 > max)
        {
            return Err(format!("randint {lo}..{hi} does not fit in {dtype} ({min} ..= {max})"));
        }
        let mut h = HostArray::try_zeros(dtype, shape)?;
        for i in 0..h.len() {
            let v = rng.random_range(lo..hi);
            h.set(i, if dtype.is_float() { Scalar::Float(v as f64) } else { Scalar::Int(i128::from(v)) });
        }
        Ok(h)
    }

    fn fill_random(self, dist: Random, rng: &mut ChaCha8Rng) -> HostArray {
        let (dtype, mut h) = (self.dtype, self);
        for i in 0..h.len() {
            let v = if dtype.is_float() {
                Scalar::Float(match dist {
                    Random::Uniform => rng.random::<f64>(),
                    Random::Normal => StandardNormal.sample(rng),
                })
            } else if dtype == DType::Bool {
                Scalar::Bool(rng.random_bool(0.5))
            } else {
                let (lo, hi) = dtype.int_range().unwrap_or((0, 0));
                Scalar::Int(i128::from(rng.random_range(lo.max(-100) as i64..=hi.min(100) as i64)))
            };
            h.set(i, v);
        }
        h
    }

    /// Reads a `.npy` file with the dtype it holds.
    pub fn read_npy_any(path: &Path) -> Result<HostArray, RunError> {
        let bad = |m: String| RunError::File { path: path.display().to_string(), message: m };
        let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        if !bytes.starts_with(b"\x93NUMPY") {
            return Err(bad(not_npy(&bytes)));
        }
        let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| bad(e.to_string()))?;
        let descr = npy.dtype().descr().trim_matches('\'').to_string();
        let d = DType::ALL
            .iter()
            .copied()
            .find(|d| {
                *d != DType::Bf16
                    && npy_descr(*d).trim_start_matches(['<', '|']) == descr.trim_start_matches(['<', '|', '='])
            })
            .ok_or_else(|| bad(format!("holds {descr}, a dtype tk does not have")))?;
        HostArray::from_npy_bytes(path, bytes, d)
    }

    /// Reads a `.npy` file holding an array of `dtype` (bf16 arrays are read from float32 files,
    /// numpy having no bf16).
    pub fn read_npy(path: &Path, dtype: DType) -> Result<HostArray, RunError> {
        let bytes = std::fs::read(path)
            .map_err(|e| RunError::File { path: path.display().to_string(), message: e.to_string() })?;
        HostArray::from_npy_bytes(path, bytes, dtype)
    }

    /// The array of a `.npy` file's bytes (`path` names it in errors).
    fn from_npy_bytes(path: &Path, bytes: Vec<u8>, dtype: DType) -> Result<HostArray, RunError> {
        let io = |e: std::io::Error| RunError::File { path: path.display().to_string(), message: e.to_string() };
        let bad = |m: String| RunError::File { path: path.display().to_string(), message: m };
        if !bytes.starts_with(b"\x93NUMPY") {
            return Err(bad(not_npy(&bytes)));
        }
        let npy = npyz::NpyFile::new(&bytes[..]).map_err(io)?;
        let fortran = npy.order() == npyz::Order::Fortran && npy.shape().len() > 1;
        let shape: Vec<usize> = npy.shape().iter().map(|d| *d as usize).collect();
        let found = npy.dtype().descr().trim_matches('\'').to_string();
        let want = npy_descr(dtype);
        let file_dtype = match found.trim_start_matches(['<', '|', '=']) {
            "f4" => Some(DType::F32),
            "f8" => Some(DType::F64),
            "f2" => Some(DType::F16),
            "i1" => Some(DType::I8),
            "u1" => Some(DType::U8),
            "i2" => Some(DType::I16),
            "i4" => Some(DType::I32),
            "u4" => Some(DType::U32),
            "i8" => Some(DType::I64),
            "b1" => Some(DType::Bool),
            _ => None,
        };
        let ok = file_dtype == Some(dtype) || (dtype == DType::Bf16 && file_dtype == Some(DType::F32));
        if !ok {
            return Err(RunError::File {
                path: path.display().to_string(),
                message: format!(
                    "holds {} ({found}) but {dtype} ({want}) is expected; convert it with `.astype(np.{})`",
                    file_dtype.map(|d| d.to_string()).unwrap_or_else(|| "an unsupported dtype".into()),
                    numpy_name(dtype)
                ),
            });
        }
        let mut h = HostArray::try_zeros(dtype, shape.clone()).map_err(&bad)?;
        let n = h.len();
        if bytes.len() < n.saturating_mul(elem_bytes(file_dtype.unwrap_or(dtype))) {
            return Err(bad(format!("truncated data: the header says {n} elements; the file is shorter")));
        }
        // A Fortran-order file lists the elements with the first index fastest: element k of the
        // file is element `row_major(k)` of the array.
        // Row-major strides: axis a steps over the product of the later axes.
        let mut strides = vec![1usize; shape.len()];
        for a in (0..shape.len().saturating_sub(1)).rev() {
            strides[a] = strides[a + 1] * shape[a + 1];
        }
        let row_major = |k: usize| -> usize {
            if !fortran {
                return k;
            }
            let (mut rest, mut at) = (k, 0);
            for (d, s) in shape.iter().zip(&strides) {
                at += (rest % d) * s;
                rest /= d;
            }
            at
        };
        macro_rules! fill {
            ($t:ty, $conv:expr) => {{
                let v: Vec<$t> = npy.into_vec::<$t>().map_err(io)?;
                if v.len() != n {
                    return Err(bad("truncated data".into()));
                }
                for (k, x) in v.into_iter().enumerate() {
                    h.set(row_major(k), $conv(x));
                }
            }};
        }
        match file_dtype.unwrap_or(dtype) {
            DType::F32 => fill!(f32, |x: f32| Scalar::Float(f64::from(x))),
            DType::F64 => fill!(f64, Scalar::Float),
            DType::F16 => fill!(half::f16, |x: half::f16| Scalar::Float(x.to_f64())),
            DType::I8 => fill!(i8, |x: i8| Scalar::Int(i128::from(x))),
            DType::U8 => fill!(u8, |x: u8| Scalar::Int(i128::from(x))),
            DType::I16 => fill!(i16, |x: i16| Scalar::Int(i128::from(x))),
            DType::I32 => fill!(i32, |x: i32| Scalar::Int(i128::from(x))),
            DType::U32 => fill!(u32, |x: u32| Scalar::Int(i128::from(x))),
            DType::I64 => fill!(i64, |x: i64| Scalar::Int(i128::from(x))),
            DType::Bool => fill!(bool, Scalar::Bool),
            DType::Bf16 => {}
        }
        Ok(h)
    }

    /// Writes the array as a `.npy` file (bf16 as float32), through a temporary file and a
    /// rename so that a failure never leaves a half-written file.
    pub fn write_npy(&self, path: &Path) -> Result<(), RunError> {
        let io = |e: std::io::Error| RunError::File { path: path.display().to_string(), message: e.to_string() };
        let shape: Vec<u64> = self.shape.iter().map(|d| *d as u64).collect();
        let mut buf: Vec<u8> = Vec::new();
        macro_rules! write {
            ($t:ty, $conv:expr) => {{
                use npyz::WriterBuilder;
                let mut w = npyz::WriteOptions::<$t>::new()
                    .default_dtype()
                    .shape(&shape)
                    .writer(&mut buf)
                    .begin_nd()
                    .map_err(io)?;
                for i in 0..self.len() {
                    w.push(&$conv(self.get(i))).map_err(io)?;
                }
                w.finish().map_err(io)?;
            }};
        }
        let f = |s: Scalar| match s {
            Scalar::Float(v) => v,
            Scalar::Int(v) => v as f64,
            Scalar::Bool(b) => f64::from(u8::from(b)),
        };
        let int = |s: Scalar| match s {
            Scalar::Int(v) => v as i64,
            _ => 0,
        };
        match self.dtype {
            DType::F32 | DType::Bf16 => write!(f32, |s| f(s) as f32),
            DType::F64 => write!(f64, f),
            DType::F16 => write!(half::f16, |s| half::f16::from_f64(f(s))),
            DType::I8 => write!(i8, |s| int(s) as i8),
            DType::U8 => write!(u8, |s| int(s) as u8),
            DType::I16 => write!(i16, |s| int(s) as i16),
            DType::I32 => write!(i32, |s| int(s) as i32),
            DType::U32 => write!(u32, |s| int(s) as u32),
            DType::I64 => write!(i64, int),
            DType::Bool => write!(bool, |s| matches!(s, Scalar::Bool(true))),
        }
        let tmp = path.with_extension(format!("npy.tmp{}", std::process::id()));
        std::fs::write(&tmp, &buf).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })
    }
}

/// How `rand:`/`randn:` arguments are drawn: floats uniform in [0, 1) or standard normal,
/// integers uniform in [-100, 100] (clipped to the dtype), bools with p = 0.5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Random {
    Uniform,
    Normal,
}

/// The random generator of `tk run --seed S`: ChaCha8 seeded with S (rand_chacha), the same
/// sequence on every platform.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn npy_descr(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::Bf16 => "<f4",
        DType::F64 => "<f8",
        DType::F16 => "<f2",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::I16 => "<i2",
        DType::I32 => "<i4",
        DType::U32 => "<u4",
        DType::I64 => "<i8",
        DType::Bool => "|b1",
    }
}

fn numpy_name(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::Bf16 => "float32",
        DType::F64 => "float64",
        DType::F16 => "float16",
        DType::I8 => "int8",
        DType::U8 => "uint8",
        DType::I16 => "int16",
        DType::I32 => "int32",
        DType::U32 => "uint32",
        DType::I64 => "int64",
        DType::Bool => "bool_",
    }
}

/// An element type of host arrays: a Rust scalar with a tk dtype and the same bytes.
pub trait Element: Copy {
    /// The dtype of arrays of this element.
    const DTYPE: DType;
    /// The element's little-endian bytes.
    fn write(self, out: &mut Vec<u8>);
    /// The element at the start of `b`.
    fn read(b: &[u8]) -> Self;
}

macro_rules! element {
    ($t:ty, $d:expr) => {
        impl Element for $t {
            const DTYPE: DType = $d;
            fn write(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            fn read(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..std::mem::size_of::<$t>()]);
                <$t>::from_le_bytes(a)
            }
        }
    };
}
element!(f32, DType::F32);
element!(f64, DType::F64);
element!(i8, DType::I8);
element!(i16, DType::I16);
element!(i32, DType::I32);
element!(i64, DType::I64);
element!(u8, DType::U8);
element!(u32, DType::U32);
element!(half::f16, DType::F16);
element!(half::bf16, DType::Bf16);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn write(self, out: &mut Vec<u8>) {
        out.push(u8::from(self));
    }
    fn read(b: &[u8]) -> Self {
        b[0] != 0
    }
}

impl HostArray {
    /// An array of shape `shape` holding `data` in row-major order.
    ///
    /// ```
    /// use tk_runtime::HostArray;
    /// let a = HostArray::from_slice(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    /// assert_eq!(a.shape, vec![2, 3]);
    /// assert_eq!(a.to_vec::<f32>().unwrap()[4], 5.0);
    /// assert!(HostArray::from_slice(&[2, 2], &[1i32, 2, 3]).is_err());
    /// ```
    pub fn from_slice<T: Element>(shape: &[usize], data: &[T]) -> Result<HostArray, RunError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(RunError::Argument {
                message: format!("an array of shape {shape:?} holds {n} elements, not {}", data.len()),
            });
        }
        let mut bytes = Vec::with_capacity(n * elem_bytes(T::DTYPE));
        for &x in data {
            x.write(&mut bytes);
        }
        Ok(HostArray { dtype: T::DTYPE, shape: shape.to_vec(), data: bytes })
    }

    /// The elements, when `T` is the array's dtype.
    pub fn to_vec<T: Element>(&self) -> Result<Vec<T>, RunError> {
        if self.dtype != T::DTYPE {
            return Err(RunError::Argument { message: format!("the array holds {}, not {}", self.dtype, T::DTYPE) });
        }
        let w = elem_bytes(self.dtype);
        Ok(self.data.chunks_exact(w).map(T::read).collect())
    }
}

/// Why a file that does not start with numpy's magic is not read, naming what it looks like.
fn not_npy(bytes: &[u8]) -> String {
    if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        return "an .npz archive (np.savez) holds several arrays; tk reads one array per .npy file: \
                save the one you need with np.save('x.npy', np.load(FILE)['x'])"
            .into();
    }
    if bytes.len() >= 9 && bytes[8] == b'{' {
        return "a safetensors file; tk reads .npy files: convert the tensor with numpy \
                (safetensors.numpy.load_file(FILE)['x'], then np.save)"
            .into();
    }
    if bytes.starts_with(crate::bundle::MAGIC) {
        return "a tk bundle (.tkb), not an array".into();
    }
    "not a .npy file (it does not start with numpy's magic bytes): save arrays with np.save".into()
}

/// A byte count for people: 1.5 GiB.
pub fn human_bytes(n: usize) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} bytes") } else { format!("{v:.1} {}", units[u]) }
}
