//! `tk run`: results, output files, seeds, timing and benchmark lines, and every error a user
//! can make with arguments.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tk_ir::dtype::DType;
use tk_runtime::HostArray;

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("NO_COLOR", "1").output().expect("tk runs")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tk-run-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn tmp_file(dir: &Path, name: &str, contents: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write");
    p.display().to_string()
}

#[test]
fn softmax_runs_and_rows_sum_to_one() {
    let o = tk(&["run", "examples/softmax.tk", "--arg", "x=rand:4x8"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    assert!(s.starts_with("out: f32[4, 8]\n  ["), "{s}");
    assert!(s.contains("mean 0.125"), "each of 8 entries averages 1/8:\n{s}");
    let dir = tmp_dir("softmax");
    let o = tk(&["run", "examples/softmax.tk", "--arg", "x=randn:5x7", "--out", dir.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let a = HostArray::read_npy(&dir.join("out.npy"), DType::F32).expect("out.npy");
    assert_eq!(a.shape, vec![5, 7]);
    for r in 0..5 {
        let row: f64 = (0..7).map(|c| a.get_f64(r * 7 + c)).sum();
        assert!((row - 1.0).abs() < 1e-5, "row {r} sums to {row}");
        assert!((0..7).all(|c| a.get_f64(r * 7 + c) > 0.0));
    }
}

#[test]
fn npy_and_scalar_arguments_and_named_outputs() {
    let dir = tmp_dir("saxpy");
    let x = HostArray::from_interp(&tk_ir::graph::interp::Array::from_fn(DType::F32, vec![5], |i| {
        tk_ir::graph::Scalar::Float(i as f64)
    }));
    let y = HostArray::from_interp(&tk_ir::graph::interp::Array::from_fn(DType::F32, vec![5], |_| {
        tk_ir::graph::Scalar::Float(10.0)
    }));
    x.write_npy(&dir.join("x.npy")).expect("write x");
    y.write_npy(&dir.join("y.npy")).expect("write y");
    let src = tmp_file(
        &dir,
        "k.tk",
        "kernel axpy(a: f32, x: f32[n], y: f32[n]) -> (r: f32[n], s: f32) { (a * x + y, sum(x)) }\n",
    );
    let xs = dir.join("x.npy").display().to_string();
    let ys = dir.join("y.npy").display().to_string();
    let o = tk(&[
        "run",
        &src,
        "--arg",
        "a=2.5",
        "--arg",
        &format!("x={xs}"),
        "--arg",
        &format!("y={ys}"),
        "--out",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let r = HostArray::read_npy(&dir.join("r.npy"), DType::F32).expect("r.npy");
    let want = [10.0, 12.5, 15.0, 17.5, 20.0];
    for (i, w) in want.iter().enumerate() {
        assert_eq!(r.get_f64(i), *w);
    }
    let s = HostArray::read_npy(&dir.join("s.npy"), DType::F32).expect("s.npy");
    assert_eq!(s.shape, Vec::<usize>::new());
    assert_eq!(s.get_f64(0), 10.0);
    // Unnamed tuple outputs are out0, out1.
    let src = tmp_file(&dir, "t.tk", "kernel two(x: f32[n]) -> (f32[n], f32[n]) { (x + 1.0, x * 2.0) }\n");
    let o = tk(&["run", &src, "--arg", &format!("x={xs}"), "--out", dir.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(dir.join("out0.npy").is_file() && dir.join("out1.npy").is_file(), "{}", out(&o));
}

#[test]
fn seeds_make_runs_repeatable() {
    let run = |seed: &str| out(&tk(&["run", "examples/softmax.tk", "--arg", "x=rand:3x3", "--seed", seed]));
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
    // The default seed is 0.
    assert_eq!(run("0"), out(&tk(&["run", "examples/softmax.tk", "--arg", "x=rand:3x3"])));
}

#[test]
fn time_and_bench_lines() {
    let o = tk(&["run", "examples/softmax.tk", "--arg", "x=rand:64x64", "--time", "--bench", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let s = out(&o);
    let time = s.lines().find(|l| l.starts_with("time: ")).expect("a time line");
    for stage in ["parse", "check", "lower", "schedule", "codegen", "run"] {
        assert!(time.contains(stage), "{time}");
    }
    let bench = s.lines().find(|l| l.starts_with("bench: 3 runs, median ")).expect("a bench line");
    assert!(bench.contains("GB/s") && bench.contains("GFLOP/s"), "{bench}");
}

#[test]
fn explicit_dimensions() {
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=3"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("out: f32[3, 3]\n  [1, 0, 0, 0, 1, 0, 0, 0, ...]\n  min 0  max 1"), "{}", out(&o));
    let o = tk(&["run", "examples/creation.tk", "-k", "identity"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("needs a value for its dimension parameter `n`"), "{}", err(&o));
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "m=3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("has no dimension parameter `m`"), "{}", err(&o));
}

#[test]
fn argument_errors_name_the_argument() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "examples/softmax.tk"], "missing argument `x` (f32[b, n]): pass --arg x=VALUE"),
        (&["run", "examples/softmax.tk", "--arg", "y=rand:2x2"], "has no parameter `y`; its parameters are: x"),
        (
            &["run", "examples/softmax.tk", "--arg", "x=rand:4"],
            "argument `x`: expected f32[b, n] (rank 2), got f32[4] (rank 1)",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x=1.5"], "a scalar fits only a rank-0 parameter"),
        (&["run", "examples/softmax.tk", "--arg", "x=rand:4xq"], "`q` is not a size"),
        (
            &["run", "examples/softmax.tk", "--arg", "x=hello"],
            "`hello` is not a .npy file, rand:DIMS, randn:DIMS or a f32 literal",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x=rand:2x2", "--arg", "x=rand:2x2"], "argument `x` is given twice"),
        (&["run", "examples/softmax.tk", "--arg", "x=missing.npy"], "missing.npy"),
        (
            &["run", "examples/matmul.tk", "-k", "matmul_loops", "--arg", "a=rand:2x3", "--arg", "b=rand:4x5"],
            "argument `b`: dimension `k` is 4 here but 3 in an earlier argument",
        ),
        (&["run", "examples/matmul.tk"], "has 4 kernels (matmul, matmul_loops, linear, bmm); choose one with -k ENTRY"),
        (&["run", "examples/matmul.tk", "-k", "nope"], "has no kernel `nope`"),
        (&["run", "examples/softmax.tk", "--arg", "x=rand:2x2", "--device", "tpu:0"], "unknown device"),
    ];
    for (args, want) in cases {
        let o = tk(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: expected `{want}` in:\n{}", err(&o));
        assert!(!err(&o).contains("panicked"), "{}", err(&o));
    }
    // Argument errors carry E0500.
    assert!(err(&tk(&["run", "examples/softmax.tk"])).contains("error[E0500]"));
    // A .npy of the wrong dtype says how to convert it.
    let dir = tmp_dir("dtype");
    HostArray::zeros(DType::F64, vec![2, 2]).write_npy(&dir.join("d.npy")).expect("write");
    let o = tk(&["run", "examples/softmax.tk", "--arg", &format!("x={}", dir.join("d.npy").display())]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("holds f64 (<f8) but f32 (<f4) is expected; convert it with `.astype(np.float32)`"),
        "{}",
        err(&o)
    );
    // A corrupt .npy is an error, not a panic.
    let bad = tmp_file(&dir, "bad.npy", "\u{93}NUMPY garbage");
    let o = tk(&["run", "examples/softmax.tk", "--arg", &format!("x={bad}")]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("bad.npy"), "{}", err(&o));
}

#[test]
fn runtime_errors_point_at_the_source() {
    // An id outside the table: E0501 with the gather's line.
    let dir = tmp_dir("gather");
    let table = HostArray::zeros(DType::F32, vec![3, 2]);
    table.write_npy(&dir.join("t.npy")).expect("write");
    let mut ids = HostArray::zeros(DType::I32, vec![2]);
    ids.set(1, tk_ir::graph::Scalar::Int(7));
    ids.write_npy(&dir.join("ids.npy")).expect("write");
    let o = tk(&[
        "run",
        "examples/embedding.tk",
        "-k",
        "embed",
        "--arg",
        &format!("table={}", dir.join("t.npy").display()),
        "--arg",
        &format!("ids={}", dir.join("ids.npy").display()),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("error[E0501]: index 7 is out of range 0..3"), "{e}");
    assert!(e.contains("examples/embedding.tk:10:"), "{e}");
    // A size that becomes negative: E0502.
    let src = tmp_file(&dir, "neg.tk", "kernel tail(x: f32[n]) -> f32[n - 3] { x[3:] }\n");
    let o = tk(&["run", &src, "--arg", "x=rand:2"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("error[E0502]"), "{}", err(&o));
}
