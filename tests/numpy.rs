//! A few examples against results numpy computed (tests/fixtures, made by scripts/make_fixtures).
//! numpy evaluates in its own order (pairwise sums, its own exp), so floats are compared with a
//! relative tolerance; integers must match exactly.

use std::path::{Path, PathBuf};
use std::process::Command;
use tk_ir::dtype::DType;
use tk_runtime::HostArray;

fn fixture(name: &str) -> String {
    format!("tests/fixtures/{name}.npy")
}

fn run(file: &str, entry: &str, args: &[(&str, String)], out: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tk-numpy-{}-{out}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tk"));
    cmd.args(["run", file, "-k", entry, "--out"]).arg(&dir);
    for (k, v) in args {
        cmd.args(["--arg", &format!("{k}={v}")]);
    }
    let o = cmd.output().expect("tk runs");
    assert_eq!(o.status.code(), Some(0), "{entry}: {}", String::from_utf8_lossy(&o.stderr));
    dir.join("out.npy")
}

fn compare(got: &Path, want: &str, dtype: DType, rtol: f64, atol: f64) {
    let g = HostArray::read_npy(got, dtype).expect("tk's output");
    let w = HostArray::read_npy(Path::new(&fixture(want)), dtype).expect("numpy's output");
    assert_eq!(g.shape, w.shape, "{want}");
    for i in 0..w.len() {
        let (a, b) = (g.get_f64(i), w.get_f64(i));
        assert!((a - b).abs() <= atol + rtol * b.abs(), "{want}[{i}]: tk {a}, numpy {b}");
    }
    assert!(w.len() > 100, "{want} is too small to mean much");
}

#[test]
fn softmax_matches_numpy() {
    let out = run("examples/softmax.tk", "softmax_rows", &[("x", fixture("softmax_x"))], "softmax");
    compare(&out, "softmax_out", DType::F32, 1e-5, 1e-7);
}

#[test]
fn layernorm_matches_numpy() {
    let args = [("x", fixture("layernorm_x")), ("g", fixture("layernorm_g")), ("beta", fixture("layernorm_beta"))];
    let out = run("examples/layernorm.tk", "layernorm", &args, "layernorm");
    compare(&out, "layernorm_out", DType::F32, 1e-4, 1e-5);
}

#[test]
fn matmul_matches_numpy() {
    let args = [("a", fixture("matmul_a")), ("b", fixture("matmul_b"))];
    let out = run("examples/matmul.tk", "matmul_loops", &args, "matmul");
    compare(&out, "matmul_out", DType::F32, 1e-5, 1e-5);
}

#[test]
fn scans_match_numpy() {
    let out = run("examples/cumsum.tk", "running_total", &[("x", fixture("cumsum_x"))], "cumsum");
    compare(&out, "cumsum_out", DType::F32, 1e-5, 1e-5);
    let out = run("examples/cumsum.tk", "exclusive_scan", &[("x", fixture("scan_x"))], "scan");
    compare(&out, "scan_out", DType::I32, 0.0, 0.0);
}

#[test]
fn daxpy_matches_numpy_exactly() {
    let args = [("a", "2.5".to_string()), ("x", fixture("daxpy_x")), ("y", fixture("daxpy_y"))];
    let out = run("examples/saxpy.tk", "daxpy", &args, "daxpy");
    // One multiply and one add, each correctly rounded in f64: the same in any correct order.
    compare(&out, "daxpy_out", DType::F64, 0.0, 0.0);
}
