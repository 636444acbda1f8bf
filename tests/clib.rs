//! The C ABI: `tk build --emit staticlib` makes a static library and a header; examples/c/main.c
//! compiles against them with the system C compiler, runs, and prints the JIT's results; every
//! example's entries become a library whose generated C compiles, or are refused with the reason.

mod common;
use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tk_runtime::HostArray;

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("NO_COLOR", "1").output().expect("tk runs")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tk-clib-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Whether a C compiler is here; in CI it must be.
fn have_cc() -> bool {
    let ok = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "a C compiler (cc) is required in CI");
        eprintln!("skipping: no C compiler (cc)");
    }
    ok
}

fn floats(line: &str) -> Vec<f32> {
    line.split_whitespace().skip(1).map(|x| x.parse().expect("a number")).collect()
}

#[test]
fn the_c_example_links_against_the_library_and_prints_the_jits_results() {
    if !have_cc() {
        return;
    }
    let d = dir("example");
    let (lib, header) = (d.join("libkernels.a"), d.join("kernels.h"));
    let o = tk(&[
        "build",
        "examples/c/kernels.tk",
        "--target",
        "cpu",
        "--emit",
        "staticlib",
        "-o",
        &lib.display().to_string(),
        "--header",
        &header.display().to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let exe = d.join("main");
    let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-std=c99", "-Wall", "-Werror", "examples/c/main.c", "-I"])
        .arg(&d)
        .arg(&lib)
        .args(["-lm", "-o"])
        .arg(&exe)
        .output()
        .expect("cc runs");
    assert!(cc.status.success(), "{}", err(&cc));
    let run = Command::new(&exe).output().expect("the example runs");
    assert!(run.status.success(), "{}", err(&run));
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    let line =
        |p: &str| out.lines().find(|l| l.starts_with(p)).unwrap_or_else(|| panic!("no {p} line:\n{out}")).to_string();
    // The same entries through the JIT (%.9g prints f32 exactly).
    let dev = tk_runtime::open("cpu").expect("cpu");
    let entries = compile(Path::new("examples/c/kernels.tk"));
    let jit = |name: &str, args: &[HostArray]| -> Vec<f32> {
        let g = &entries.iter().find(|(n, _)| n == name).expect("entry").1;
        let c = tk_toolchain::compile(dev.as_ref(), name, g, &Default::default()).expect("compiles");
        c.run(dev.as_ref(), args, &HashMap::new()).expect("runs")[0].to_vec::<f32>().expect("f32")
    };
    let x = HostArray::from_slice(&[2, 4], &[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 0.5, 8.0]).expect("x");
    assert_eq!(floats(&line("softmax_rows:")), jit("softmax_rows", &[x]));
    let a = HostArray::from_slice(&[], &[2.5f32]).expect("a");
    let xs = HostArray::from_slice(&[5], &[0.0f32, 1.0, 2.0, 3.0, 4.0]).expect("x");
    let ys = HostArray::from_slice(&[5], &[1.0f32, -1.0, 1.0, -1.0, 1.0]).expect("y");
    assert_eq!(floats(&line("saxpy:")), jit("saxpy", &[a, xs, ys]));
    let table = HostArray::from_slice(&[3, 2], &[10.0f32, 11.0, 20.0, 21.0, 30.0, 31.0]).expect("table");
    let ids = HostArray::from_slice(&[2], &[2i32, 0]).expect("ids");
    assert_eq!(floats(&line("embed:")), jit("embed", &[table, ids]));
    assert!(out.contains("embed with index 7: TK_ERR_INDEX"), "{out}");
}

#[test]
fn every_examples_entries_make_a_library_or_are_refused_with_the_reason() {
    if !have_cc() {
        return;
    }
    let mut built = 0;
    for f in examples() {
        let d = dir(&f.file_stem().expect("stem").to_string_lossy());
        let lib = d.join("libk.a");
        let o = tk(&[
            "build",
            &f.display().to_string(),
            "--target",
            "cpu",
            "--emit",
            "staticlib",
            "-o",
            &lib.display().to_string(),
        ]);
        match o.status.code() {
            Some(0) => {
                assert!(d.join("k.h").is_file(), "{}: the header is written beside the library", f.display());
                // The header compiles as C and declares every entry.
                let test = d.join("t.c");
                std::fs::write(&test, "#include \"k.h\"\nint main(void) { return 0; }\n").expect("write");
                let cc = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
                    .args(["-std=c99", "-Wall", "-Werror", "-I"])
                    .arg(&d)
                    .arg(&test)
                    .arg(&lib)
                    .args(["-lm", "-o"])
                    .arg(d.join("t"))
                    .output()
                    .expect("cc");
                assert!(cc.status.success(), "{}: {}", f.display(), err(&cc));
                built += 1;
            }
            _ => assert!(
                err(&o).contains("f16/bf16") && !lib.exists(),
                "{}: refused without the reason, or half-written:\n{}",
                f.display(),
                err(&o)
            ),
        }
    }
    assert!(built >= 15, "only {built} examples make a library");
}
