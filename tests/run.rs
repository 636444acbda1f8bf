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
    for phase in ["arguments", "output", "total"] {
        assert!(time.contains(phase), "{time}");
    }
    let bench = s.lines().find(|l| l.starts_with("bench: 3 runs: min ")).expect("a bench line");
    assert!(bench.contains("median") && bench.contains("max"), "{bench}");
    assert!(bench.contains("GB/s") && bench.contains("GFLOP/s"), "{bench}");
    bench_script_reads(bench);
    // Zero timed runs is a usage error, not "1 runs".
    let o = tk(&["run", "examples/softmax.tk", "--arg", "x=rand:4x4", "--bench", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    // The second compile of the same kernel in one process would hit the memory cache; across
    // processes the disk cache answers, and --time says so.
    let cache = tmp_dir("cache");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_tk"))
            .args(["run", "examples/softmax.tk", "--arg", "x=rand:4x4", "--time"])
            .env("TK_CACHE_DIR", &cache)
            .output()
            .expect("tk runs")
    };
    let first = out(&run());
    let second = out(&run());
    assert!(!first.contains("cache hit"), "{first}");
    assert!(second.contains("(cache hit: disk)"), "{second}");
}

#[test]
fn results_print_by_shape_and_large_ones_elided() {
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=3"]);
    assert!(
        out(&o).contains("out: f32[3, 3]\n  [[1, 0, 0],\n   [0, 1, 0],\n   [0, 0, 1]]\n  min 0  max 1"),
        "{}",
        out(&o)
    );
    // 40 x 40 = 1600 elements: three rows and columns at each end, as numpy shows them.
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=40"]);
    let s = out(&o);
    assert!(s.contains("  [[1, 0, 0, ..., 0, 0, 0],\n   [0, 1, 0, ..., 0, 0, 0],"), "{s}");
    assert!(s.contains("\n   ...,\n"), "{s}");
    assert_eq!(s.lines().count(), 9, "{s}");
    // --print full prints every element.
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=40", "--print", "full"]);
    let s = out(&o);
    assert!(!s.contains("..."), "{s}");
    let lines: Vec<&str> = s.lines().collect();
    let body = &lines[1..lines.len() - 1];
    assert_eq!(body.iter().map(|l| l.matches('1').count()).sum::<usize>(), 40, "{s}");
    assert!(body.iter().all(|l| l.len() <= 77), "rows wrap at numpy's width:\n{s}");
}

#[test]
fn explicit_dimensions() {
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=3"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = tk(&["run", "examples/creation.tk", "-k", "identity"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("needs a value for its dimension parameter `n`"), "{}", err(&o));
    let o = tk(&["run", "examples/creation.tk", "-k", "identity", "--dim", "m=3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("has no dimension parameter `m`"), "{}", err(&o));
    // A dimension no argument binds alone says how to give it.
    let dir = tmp_dir("dh");
    let src = tmp_file(&dir, "dh.tk", "kernel k<dh>(x: f32[4 * dh]) -> f32[4 * dh] { x * 2.0 }\n");
    let o = tk(&["run", &src, "--arg", "x=rand:8"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("give `dh` a value (`--dim dh=N`"), "{}", err(&o));
    assert_eq!(tk(&["run", &src, "--arg", "x=rand:8", "--dim", "dh=2"]).status.code(), Some(0));
    // The command line's own mistakes are usage errors, found before anything runs.
    for (dims, want) in [
        (&["--dim", "n=abc"][..], "`abc` is not an integer"),
        (&["--dim", "n=-3"][..], "--dim n=-3: a dimension is a size, at least 0"),
        (&["--dim", "n=3", "--dim", "n=4"][..], "--dim n is given twice"),
        (&["--dim", "n"][..], "expected NAME=VALUE"),
    ] {
        let o = tk(&[&["run", "examples/creation.tk", "-k", "identity"][..], dims].concat());
        assert_eq!(o.status.code(), Some(2), "{dims:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{dims:?}: {}", err(&o));
    }
}

#[test]
fn argument_errors_name_the_argument() {
    // Exit code 2 for a bad command line, 1 for bad data (README: exit codes).
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run", "examples/softmax.tk"], 2, "missing argument `x` (f32[b, n]): pass --arg x=VALUE"),
        (&["run", "examples/softmax.tk", "--arg", "y=rand:2x2"], 2, "has no parameter `y`; its parameters are: x"),
        (
            &["run", "examples/softmax.tk", "--arg", "x=rand:4"],
            1,
            "argument `x`: expected f32[b, n] (rank 2), got f32[4] (rank 1)",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x=1.5"], 2, "a scalar fits only a rank-0 parameter"),
        (&["run", "examples/softmax.tk", "--arg", "x=rand:4xq"], 2, "`q` is not a size"),
        (
            &["run", "examples/softmax.tk", "--arg", "x=hello"],
            2,
            "`hello` is not a .npy file, rand:DIMS, randn:DIMS, randint:LO:HI:DIMS, a list like [1, 2, 3] or a f32 literal",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x=randint:5:2:3x3"], 2, "randint 5..2 is empty"),
        (&["run", "examples/softmax.tk", "--arg", "x=randint:0:9"], 2, "expected randint:LO:HI:DIMS"),
        (
            &[
                "run",
                "examples/embedding.tk",
                "-k",
                "embed",
                "--arg",
                "table=rand:4x2",
                "--arg",
                "ids=randint:0:3000000000:5",
            ],
            2,
            "randint 0..3000000000 does not fit in i32",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x"], 2, "--arg `x`: expected NAME=VALUE"),
        (
            &["run", "examples/softmax.tk", "--arg", "x=rand:2x2", "--arg", "x=rand:2x2"],
            2,
            "argument `x` is given twice",
        ),
        (&["run", "examples/softmax.tk", "--arg", "x=missing.npy"], 1, "missing.npy"),
        (
            &["run", "examples/matmul.tk", "-k", "matmul_loops", "--arg", "a=rand:2x3", "--arg", "b=rand:4x5"],
            1,
            "argument `b`: dimension `k` is 4 here but 3 in an earlier argument",
        ),
        (
            &["run", "examples/matmul.tk"],
            2,
            "has 4 kernels (matmul, matmul_loops, linear, bmm); choose one with -k ENTRY",
        ),
        (&["run", "examples/matmul.tk", "-k", "nope"], 2, "has no kernel `nope`"),
        (&["run", "examples/softmax.tk", "--arg", "x=rand:2x2", "--device", "gpu"], 2, "unknown device"),
        // Sizes are checked before anything is allocated.
        (
            &["run", "examples/softmax.tk", "--arg", "x=randn:1000000000000x1000000000000"],
            1,
            "more bytes than this machine can address",
        ),
        (
            &["run", "examples/softmax.tk", "--arg", "x=randn:1000000x1000000"],
            1,
            "more memory than this machine can give",
        ),
        // Outputs sized by --dim too: an impossible size is an error, not an overflow.
        (
            &["run", "examples/creation.tk", "-k", "identity", "--dim", "n=100000000000"],
            1,
            "more bytes than this machine can address",
        ),
        (&["run", "examples/creation.tk", "-k", "identity", "--dim", "n=1000000000"], 3, "out of memory allocating"),
    ];
    for (args, code, want) in cases {
        let o = tk(args);
        assert_eq!(o.status.code(), Some(*code), "{args:?}: {}", err(&o));
        assert!(err(&o).contains(want), "{args:?}: expected `{want}` in:\n{}", err(&o));
        assert!(!err(&o).contains("panicked"), "{}", err(&o));
    }
    // randint: ids for an embedding lookup, all in range (rand: would give negative ones).
    let o = tk(&[
        "run",
        "examples/embedding.tk",
        "-k",
        "embed",
        "--arg",
        "table=rand:10x2",
        "--arg",
        "ids=randint:0:10:50",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("out: f32[50, 2]"));
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
    // Fortran-order files are read (transposed into tk's row-major order).
    let mut header = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }".to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend_from_slice(&(header.len() as u16).to_le_bytes());
    npy.extend_from_slice(header.as_bytes());
    for v in [0f32, 3.0, 1.0, 4.0, 2.0, 5.0] {
        npy.extend_from_slice(&v.to_le_bytes());
    }
    let f = dir.join("fortran.npy");
    std::fs::write(&f, npy).expect("write");
    let a = HostArray::read_npy(&f, DType::F32).expect("a Fortran-order file reads");
    assert_eq!((0..6).map(|i| a.get_f64(i)).collect::<Vec<_>>(), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // An .npz archive and a safetensors file are refused with what to do instead.
    let npz = dir.join("x.npz");
    std::fs::write(&npz, b"PK\x03\x04rest of a zip").expect("write");
    let o = tk(&["run", "examples/softmax.tk", "--arg", &format!("x={}", npz.display())]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains(".npz archive") && err(&o).contains("np.save"), "{}", err(&o));
    let st = dir.join("x.safetensors");
    std::fs::write(&st, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"x\": {}}").expect("write");
    let o = tk(&["run", "examples/softmax.tk", "--arg", &format!("x={}", st.display())]);
    assert!(err(&o).contains("safetensors"), "{}", err(&o));
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

/// Knobs are documented in `tk run --help`, and one the target cannot use well warns.
#[test]
fn knobs_are_documented_and_harmful_ones_warn() {
    let args = ["run", "examples/matmul.tk", "-k", "matmul", "--arg", "a=rand:4x4", "--arg", "b=rand:4x4"];
    let o = tk(&[&args[..], &["--opts", "upcast=4"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        err(&o).contains("warning: --opts upcast=4") && err(&o).contains("leave upcast out on the CPU"),
        "{}",
        err(&o)
    );
    let o = tk(&[&args[..], &["--opts", "upcast=4", "--device", "sim:sm_86"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(!err(&o).contains("warning"), "{}", err(&o));
    // The progress spinner is for terminals: a piped stderr stays empty.
    assert!(err(&o).is_empty(), "{}", err(&o));
    let help = out(&tk(&["run", "--help"]));
    for knob in ["parallel=P", "unroll=U", "vector=V", "group=G", "upcast=F"] {
        assert!(help.contains(knob), "{help}");
    }
    // A knob named replaces only itself: the GPU's other defaults (two parallel axes) stay.
    let o = tk(&[
        "emit",
        "examples/matmul.tk",
        "-k",
        "matmul_loops",
        "--stage",
        "kernel",
        "--target",
        "sm_86",
        "--opts",
        "upcast=2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(out(&o).contains("knobs parallel=2,unroll=1,vector=1,group=1,upcast=2"), "{}", out(&o));
}

/// `--arg x=[...]`: list literals, nested for higher ranks, with located errors for malformed ones.
#[test]
fn list_literal_arguments() {
    let o = tk(&["run", "examples/cumsum.tk", "-k", "running_max", "--arg", "x=[1, 5, 2, 7, 3]"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("[1, 5, 5, 7, 7]"), "{}", String::from_utf8_lossy(&o.stdout));
    let o = tk(&["run", "examples/cumsum.tk", "-k", "running_total", "--arg", "x=[[1, 2], [3, 4]]"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("[[1, 3],\n   [3, 7]]"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    for (v, want) in [
        ("x=[[1, 2], [3]]", "ragged rows"),
        ("x=[[1, 2], [3, [4]]]", "rows of different depths"),
        ("x=[1, 2", "expected `,` or `]`"),
        ("x=[1,, 2]", "malformed element"),
        ("x=[1, 2] x", "text after the closing `]`"),
        ("x=[1, two]", "element 1, `two`, is not a f32 value"),
    ] {
        let o = tk(&["run", "examples/cumsum.tk", "-k", "running_max", "--arg", v]);
        assert_eq!(o.status.code(), Some(2), "{v}: {}", err(&o));
        assert!(err(&o).contains(want), "{v}: expected `{want}` in {}", err(&o));
    }
    let deep = format!("x={}", "[".repeat(10_000));
    let o = tk(&["run", "examples/cumsum.tk", "-k", "running_max", "--arg", &deep]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("more than 32 nested lists"), "{}", err(&o));
}

/// scripts/bench_cpu reads tk's `bench:` line with its own parser: a change to the line's format
/// must not break the benchmark script silently (it once did).
fn bench_script_reads(bench: &str) {
    let probe = "import json, sys\nfrom importlib.machinery import SourceFileLoader\n\
                 m = SourceFileLoader('bench_cpu', 'scripts/bench_cpu').load_module()\n\
                 print(json.dumps(m.parse_bench(sys.argv[1])))";
    let o = match Command::new("python3").args(["-c", probe, bench]).output() {
        Ok(o) => o,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: the bench script's parser needs python3 ({e})");
            return;
        }
        Err(e) => panic!("python3 is needed to check scripts/bench_cpu's parser: {e}"),
    };
    assert!(o.status.success(), "{}", err(&o));
    let parsed = out(&o);
    for key in ["\"runs\": 3", "\"median_ms\": ", "\"gbs\": ", "\"gflops\": "] {
        assert!(parsed.contains(key), "bench_cpu read {bench:?} as {parsed}");
    }
}
