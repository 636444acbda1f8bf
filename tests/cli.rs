//! The `tk` command line: exit codes, diagnostics on stderr, `emit` output.

use std::process::{Command, Output};

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env_remove("NO_COLOR").output().expect("tk runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp_file(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("tk-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write");
    p
}

#[test]
fn check_examples_exits_0() {
    let mut args = vec!["check"];
    let files: Vec<String> = std::fs::read_dir("examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .map(|p| p.display().to_string())
        .collect();
    args.extend(files.iter().map(|s| s.as_str()));
    let o = tk(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stderr.is_empty());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("examples/saxpy.tk: ok (3 kernels)"), "{out}");
    assert_eq!(out.lines().count(), files.len());
}

#[test]
fn ill_typed_file_exits_1_with_location_and_caret() {
    let p = tmp_file("bad.tk", "kernel f(x: f16[n], y: f32[n]) -> f32[n] {\n    x + y\n}\n");
    let o = tk(&["check", p.to_str().expect("utf8 path")]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("error[E0200]"), "{e}");
    assert!(e.contains("bad.tk:2:5"), "no file:line:column in\n{e}");
    assert!(e.contains("^^^^^"), "no caret in\n{e}");
    assert!(e.contains("help:"), "{e}");
    assert!(!e.contains('\u{1b}'), "colored output when stderr is not a terminal:\n{e}");
}

#[test]
fn syntax_errors_are_all_reported() {
    let p = tmp_file(
        "multi.tk",
        "kernel a(x: f32[n]) -> f32[n] { x + }\nkernel b(x: f32[n]) -> f32[n] { x }\nkernel c(x: f32[n) -> f32[n] { x }\n",
    );
    let o = tk(&["check", p.to_str().expect("utf8 path")]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert_eq!(e.matches("error[E0004]").count(), 2, "{e}");
    assert!(e.contains("multi.tk:1:") && e.contains("multi.tk:3:"), "{e}");
}

#[test]
fn color_always_colors() {
    let p = tmp_file("color.tk", "kernel f(x: f32[n]) -> f32[n] { y }\n");
    let o = tk(&["check", "--color", "always", p.to_str().expect("utf8 path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains('\u{1b}'), "expected ANSI escapes");
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(tk(&[]).status.code(), Some(2));
    assert_eq!(tk(&["check"]).status.code(), Some(2));
    assert_eq!(tk(&["emit", "examples/saxpy.tk", "--stage", "nonsense"]).status.code(), Some(2));
    assert_eq!(tk(&["frobnicate"]).status.code(), Some(2));
}

#[test]
fn missing_and_binary_files_exit_1() {
    let o = tk(&["check", "does/not/exist.tk"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("cannot read does/not/exist.tk"));
    let p = tmp_file("binary.tk", "");
    std::fs::write(&p, [0xff, 0xfe, 0x00, 0x41]).expect("write");
    let o = tk(&["check", p.to_str().expect("utf8 path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not UTF-8"), "{}", stderr(&o));
}

/// No input makes `tk check` slow or its output large: a 200,000-character line is shown clipped
/// around the error, 800 KB of random tokens report at most 50 diagnostics (the rest counted),
/// and a flat chain of 30,000 `+` gets a message about chains.
#[test]
fn diagnostics_stay_small_and_fast() {
    let chain = format!("kernel k(x: f32[n]) -> f32[n] {{ {} + y }}\n", vec!["x"; 30_000].join(" + "));
    let mut line = "kernel k(x: f32[n]) -> f32[n] { x }".to_string();
    line.push_str(&" ".repeat(100_000));
    line.push_str("let oops = ;");
    line.push_str(&" ".repeat(100_000));
    let mut seed = 7u64;
    let toks =
        ["x", "+", "(", ")", "[", "]", "kernel", "fn", "{", "}", ";", "1.0", "let", "=", "->", "f32", "@", ",", "$"];
    let random: Vec<&str> = (0..150_000)
        .map(|_| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            toks[(seed >> 33) as usize % toks.len()]
        })
        .collect();
    for (name, src, want) in [
        ("chain.tk", chain, "a chain of more than 256 `+` operations"),
        ("line.tk", line, "a window around the place is shown"),
        ("random.tk", random.join(" "), "more errors not shown"),
    ] {
        let p = tmp_file(name, &src);
        let t = std::time::Instant::now();
        let o = tk(&["check", p.to_str().expect("utf8 path")]);
        assert!(t.elapsed() < std::time::Duration::from_secs(10), "{name}: {:?}", t.elapsed());
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert!(o.stderr.len() < 100_000, "{name}: {} bytes of diagnostics", o.stderr.len());
        assert!(stderr(&o).contains(want), "{name}: {}", stderr(&o));
    }
}

/// A file that is not UTF-8 is reported at the line and column of its first bad byte.
#[test]
fn a_non_utf8_file_names_the_place() {
    let p = tmp_file("latin1.tk", "");
    std::fs::write(&p, b"kernel k(x: f32[n]) -> f32[n] {\n    x // caf\xe9\n}\n").expect("write");
    let o = tk(&["check", p.to_str().expect("utf8 path")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("latin1.tk:2:13: not UTF-8 text: byte 0xe9"), "{}", stderr(&o));
}

/// Output into a pipe that is closed (`tk emit ... | head -1`) ends tk quietly: no panic, no
/// "Broken pipe" message, exit 0.
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [
        &["emit", "examples/attention.tk", "--stage", "ptx", "--target", "sm_86"][..],
        &["run", "examples/softmax.tk", "--arg", "x=rand:64x64", "--print", "full"][..],
        &["devices"][..],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tk"))
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("tk starts");
        // The reader goes away before tk writes anything.
        drop(child.stdout.take());
        let o = child.wait_with_output().expect("tk ends");
        let e = stderr(&o);
        assert!(!e.contains("panicked") && !e.contains("Broken pipe"), "{args:?}: {e}");
        assert_eq!(o.status.code(), Some(0), "{args:?}: {e}");
    }
}

#[test]
fn help_documents_every_command() {
    let o = tk(&["--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    for cmd in ["check", "emit", "run", "devices", "Exit codes"] {
        assert!(s.contains(cmd), "--help lacks {cmd}:\n{s}");
    }
    let o = tk(&["emit", "--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("--stage") && s.contains("types"), "{s}");
    // `tk build` builds bundles and static libraries for the CPU too.
    let o = tk(&["build", "--help"]);
    let s = String::from_utf8_lossy(&o.stdout);
    assert!(s.contains("`cpu`") && s.contains("bundle") && s.contains("static library"), "{s}");
}

#[test]
fn emit_ast_reparses_to_the_same_text() {
    for f in ["examples/layernorm.tk", "examples/mandelbrot.tk", "examples/conv2d.tk", "examples/movement.tk"] {
        let o = tk(&["emit", f, "--stage", "ast"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let printed = String::from_utf8(o.stdout).expect("utf8");
        let p = tmp_file("reprinted.tk", &printed);
        let o2 = tk(&["emit", p.to_str().expect("utf8 path"), "--stage", "ast"]);
        assert_eq!(o2.status.code(), Some(0));
        assert_eq!(String::from_utf8(o2.stdout).expect("utf8"), printed, "{f}");
    }
}

#[test]
fn emit_types_selects_a_kernel() {
    let o = tk(&["emit", "examples/layernorm.tk", "--stage", "types", "-k", "layernorm"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = String::from_utf8(o.stdout).expect("utf8");
    assert!(s.starts_with("kernel layernorm(x: f32[b, d], g: f32[d], beta: f32[d]) -> (out: f32[b, d])"), "{s}");
    assert!(s.contains("let mu: f32[b, 1]"), "{s}");
    let o = tk(&["emit", "examples/layernorm.tk", "--stage", "types", "-k", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("has no kernel `nope`"));
}

#[test]
fn every_stage_emits_for_every_example() {
    let files: Vec<String> = std::fs::read_dir("examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .map(|p| p.display().to_string())
        .collect();
    for f in &files {
        for stage in ["ast", "types", "graph", "schedule", "kernel", "clif"] {
            let o = tk(&["emit", f, "--stage", stage]);
            assert_eq!(o.status.code(), Some(0), "{f} --stage {stage}: {}", stderr(&o));
            assert!(!o.stdout.is_empty(), "{f} --stage {stage} printed nothing");
        }
    }
    let o = tk(&["emit", "examples/matmul.tk", "--stage", "kernel", "--opts", "parallel=2,unroll=4"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("unrolled(4)"));
    let o = tk(&["emit", "examples/matmul.tk", "--stage", "kernel", "--opts", "warp=2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown knob `warp`"));
    let o = tk(&["emit", "examples/softmax.tk", "--stage", "kernel", "--fast-math"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("// fast-math"));
    let o = tk(&["emit", "examples/softmax.tk", "--stage", "kernel"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("fast-math"));
    let o = tk(&["emit", "examples/saxpy.tk", "--stage", "kernel", "--opts", "parallel=3"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("invalid knobs"), "{}", stderr(&o));
}
