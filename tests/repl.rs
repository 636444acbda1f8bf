//! `tk repl`, driven through its input stream: definitions, variables, expressions, every
//! command, and errors that leave the session usable.

use std::io::Write;
use std::process::{Command, Stdio};

/// `tk repl` with its three streams piped.
fn spawn_repl() -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_tk"))
        .arg("repl")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tk repl starts")
}

fn repl(input: &str) -> (String, String, Option<i32>) {
    let mut child = spawn_repl();
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write");
    let o = child.wait_with_output().expect("tk repl ends");
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned(), o.status.code())
}

#[test]
fn definitions_variables_and_expressions() {
    let (out, err, code) = repl(
        "let x = arange(10) as f32\n\
         kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] {\n    a * x + y\n}\n\
         saxpy(2.0, x, x)\n\
         fn twice(v) { v * 2.0 }\n\
         let y = twice(x[2:5])\n\
         sum(y)\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("x: f32[10]\n  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"), "{out}");
    assert!(out.contains("_: f32[10]\n  [ 0,  3,  6,  9, 12, 15, 18, 21, 24, 27]\n  min 0  max 27"), "{out}");
    assert!(out.contains("y: f32[3]\n  [4, 6, 8]"), "{out}");
    // A scalar is one value.
    assert!(out.contains("_: f32[]\n  18\n"), "{out}");
}

#[test]
fn redefinition_reset_and_the_last_value() {
    let (out, err, code) = repl(
        "kernel f(x: f32[n]) -> f32[n] { x + 1.0 }\n\
         kernel f(x: f32[n]) -> f32[n] { x + 2.0 }\n\
         let x = arange(3) as f32\n\
         f(x)\n\
         _ * 10.0\n\
         use std::nn::{softmax}\n\
         softmax(x)\n\
         :time\n\
         :emit ast f\n\
         :reset\n\
         x\n\
         :emit kernel softmax\n",
    );
    assert_eq!(code, Some(0), "{err}");
    // The second `f` replaced the first.
    assert!(!out.contains("E0102") && out.contains("_: f32[3]\n  [2, 3, 4]"), "{out}");
    // `_` is the last value.
    assert!(out.contains("_: f32[3]\n  [20, 30, 40]"), "{out}");
    // `use` without `;` works.
    assert!(!out.contains("expected `;`") && out.contains("min 0.09"), "{out}");
    assert!(out.contains("error: :time EXPR times an expression"), "{out}");
    assert!(out.contains("unknown stage `ast`; the stages are types, graph"), "{out}");
    assert!(out.contains("forgot every definition and variable"), "{out}");
    assert!(out.contains("cannot find") && out.contains("`x`"), "after :reset x is gone:\n{out}");
    assert!(out.contains("no kernel `softmax`: :emit shows the kernels defined in this session"), "{out}");
}

#[test]
fn data_in_and_out_and_random_arrays() {
    let dir = std::env::temp_dir().join(format!("tk-repl-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let a = dir.join("a.npy");
    let input = format!(
        ":seed 3\nlet a = randn((2, 3))\nlet b = randint(0, 10, 5)\nrand(4) * 0.0 + 1.0\n:save a {a}\n:load {a}\n\
         :load c {a}\na == c\n:seed 3\nrandn((2, 3))\nrandint(5, 1, 3)\n:load {dir}/none.npy\n",
        a = a.display(),
        dir = dir.display()
    );
    let (out, err, code) = repl(&input);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("a: f32[2, 3]\n  [["), "{out}");
    assert!(out.contains("b: i32[5]"), "{out}");
    assert!(out.contains("_: f32[4]\n  [1, 1, 1, 1]"), "{out}");
    assert!(out.contains(&format!("wrote {}", a.display())), "{out}");
    assert!(out.contains("c: f32[2, 3]"), "{out}");
    assert!(out.contains("_: bool[2, 3]\n  [[true, true, true],\n   [true, true, true]]"), "{out}");
    // :seed restarts the generator: the same values again.
    let first = out.split("a: f32[2, 3]").nth(1).expect("a").lines().take(3).collect::<Vec<_>>().join("\n");
    let again = out.split("_: f32[2, 3]").nth(1).expect("again").lines().take(3).collect::<Vec<_>>().join("\n");
    assert_eq!(first, again, "{out}");
    assert!(out.contains("LO must be below HI"), "{out}");
    assert!(out.contains("none.npy"), "{out}");
}

#[test]
fn errors_show_what_was_typed_and_name_loaded_files() {
    let dir = std::env::temp_dir().join(format!("tk-repl-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.tk");
    std::fs::write(&bad, "kernel b(x: f32[n]) -> f32[n] { x + true }\n").expect("write");
    let (out, _, code) = repl(&format!("let x = arange(3) as f32\nx + m\n:load {}\n", bad.display()));
    assert_eq!(code, Some(0));
    assert!(out.contains("│ x + m\n") && !out.contains("__value"), "{out}");
    assert!(out.contains(&format!("┌─ {}:1:33", bad.display())), "{out}");
}

#[test]
fn results_print_short_or_full() {
    let (out, err, code) = repl(
        "let z = arange(2000) as f32
:print full
z
:print short
z
:print sometimes
",
    );
    assert_eq!(code, Some(0), "{err}");
    let blocks: Vec<&str> = out.split("_: f32[2000]").collect();
    assert_eq!(blocks.len(), 3, "{out}");
    assert!(out.starts_with("z: f32[2000]\n  [   0,    1,    2, ..., 1997, 1998, 1999]"), "{out}");
    assert!(!blocks[1].contains("...") && blocks[1].contains(" 1000,"), "{out}");
    assert!(blocks[2].contains("..."), "{out}");
    assert!(out.contains("error: :print full or :print short"), "{out}");
}

#[test]
fn commands() {
    let (out, _, code) = repl(
        ":help\nlet x = arange(4) as f32\n:type x * 2.0\n:type (x, sum(x))\n:vars\n\
         kernel double(v: f32[n]) -> f32[n] { v * 2.0 }\n:emit kernel double\n:emit types double\n\
         :emit clif double\n:time x * x\n:device cpu\n:quit\nx\n",
    );
    assert_eq!(code, Some(0));
    assert!(out.contains(":type EXPR"), "help:\n{out}");
    assert!(out.contains("f32[4]\n(f32[4], f32)\n"), "{out}");
    assert!(out.contains("x: f32[4]\n"), "{out}");
    assert!(out.contains("kernel k0(") && out.contains("store a1[i0]"), "{out}");
    assert!(out.contains("kernel double(v: f32[n]) -> (out: f32[n])"), "{out}");
    assert!(out.contains("f32x4") || out.contains("fmul"), "clif:\n{out}");
    assert!(out.contains("time: compile ") && out.contains(" ms (1 device kernel), run "), "{out}");
    assert!(out.contains("device: cpu"), "{out}");
    // :quit stops before the last line.
    assert!(!out.trim_end().ends_with("min 0  max 3  mean 1.5"), "{out}");
}

#[test]
fn errors_print_a_diagnostic_and_the_session_goes_on() {
    let dir = std::env::temp_dir().join(format!("tk-repl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let lib = dir.join("lib.tk");
    std::fs::write(&lib, "kernel inc(x: f32[n]) -> f32[n] { x + 1.0 }\n").expect("write");
    let input = format!(
        "let x = arange(3) as f32\nundefined_thing(x)\nkernel bad(x: f32[n]) -> f32[n] {{ x + true }}\n\
         x @ x @ x\n:nope\n:emit kernel missing\n:load {}\ninc(x)\n:load /no/such/file.tk\n:device tpu\nx + 1.0\n",
        lib.display()
    );
    let (out, err, code) = repl(&input);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("error[E0101]: cannot find function `undefined_thing`"), "{out}");
    assert!(out.contains("error[E0"), "{out}");
    assert!(out.contains("unknown command `:nope`"), "{out}");
    assert!(out.contains("no kernel `missing`"), "{out}");
    assert!(out.contains("kernels inc"), "{out}");
    assert!(out.contains("_: f32[3]\n  [1, 2, 3]"), "{out}");
    assert!(out.contains("cannot read /no/such/file.tk"), "{out}");
    assert!(out.contains("unknown device"), "{out}");
    // The bad kernel was not kept: the last expression still runs.
    assert!(out.trim_end().ends_with("min 1  max 3  mean 2"), "{out}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The REPL switches to the simulated GPU and runs the same kernels there.
#[test]
fn repl_runs_on_the_simulated_gpu() {
    let (out, err, code) = repl(
        ":device\n:device sim:sm_86\n:device\nlet x = arange(5) as f32\n\
         kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }\nsaxpy(2.0, x, x)\n",
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("device: cpu ("), "{out}");
    assert!(out.contains("device: sim:sm_86 (sm_86 (simulated PTX))"), "{out}");
    assert!(out.contains("_: f32[5]\n  [ 0,  3,  6,  9, 12]"), "{out}");
}

/// Ctrl-C (SIGINT) during a long run stops the run, not the process at once: the run reports that
/// it was interrupted, and a script (input that is not a terminal) then ends with status 130. An
/// interactive session goes back to the prompt instead (`Session::handle` clears the request).
#[cfg(unix)]
#[test]
fn ctrl_c_interrupts_the_run() {
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};
    let mut child = spawn_repl();
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Once a first result prints, the handler is installed.
    stdin.write_all(b":device sim:sm_86\nlet a = rand((1024, 1024))\n").expect("write");
    let seen = |rx: &std::sync::mpsc::Receiver<String>, what: &str| {
        let end = Instant::now() + Duration::from_secs(60);
        let mut all = String::new();
        while let Ok(l) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            all.push_str(&l);
            all.push('\n');
            if l.contains(what) {
                return all;
            }
        }
        panic!("no `{what}` in the REPL's output:\n{all}");
    };
    seen(&rx, "a: f32[1024, 1024]");
    // A 1024^3 matmul on the PTX simulator runs for minutes.
    let started = Instant::now();
    stdin.write_all(b"a @ a\n").expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill runs");
    assert!(kill.success());
    let out = seen(&rx, "interrupted");
    assert!(out.contains("nothing was assigned"), "{out}");
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the REPL did not end after the interrupt");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "a script ends with the shell's status for an interrupt");
    assert!(started.elapsed() < Duration::from_secs(30), "the run stopped at the interrupt: {:?}", started.elapsed());
}

#[test]
fn kernels_with_explicit_dimensions_are_called_with_them_by_name() {
    let (out, err, code) =
        repl("kernel fill<n>(v: f32) -> f32[n] { full(n, v) }\nfill(2.5, n: 3)\nfill(1.0)\nfill(0.5, n: 2 + 1)\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("_: f32[3]\n  [2.5, 2.5, 2.5]"), "{out}");
    assert!(out.contains("error[E0409]: `fill` needs its dimension `n` at the call"), "{out}");
    assert!(out.contains("_: f32[3]\n  [0.5, 0.5, 0.5]"), "{out}");
}

#[test]
fn a_literal_alone_is_a_value_of_the_default_dtype() {
    let (out, err, code) = repl("let k = 2\nk * 3\n0.5\n");
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("k: i32[]\n  2\n") && out.contains("_: i32[]\n  6\n"), "{out}");
    assert!(out.contains("_: f32[]\n  0.5\n") && !out.contains("error"), "{out}");
}

#[test]
fn array_literals_and_scatter_add() {
    let (out, err, code) = repl(
        "scatter_add([1, 2, 3, 4], [0, 2, 2, 7], 3)\n\
         scatter_add([[1.5, 1], [2, 2], [0.25, 3]], [1, 1, -1], 2)\n\
         let h = arange(3) as f16\n\
         h * [0.5, 1, 2]\n\
         [[1, 2], [3]]\n",
    );
    assert_eq!(code, Some(0), "{err}");
    // Index 7 is outside 0..3 and is dropped; the two rows sent to 2 add up.
    assert!(out.contains("_: i32[3]\n  [1, 0, 5]"), "{out}");
    // A mixed literal is a float literal; index -1 is dropped.
    assert!(out.contains("_: f32[2, 2]\n  [[  0,   0],\n   [3.5,   3]]"), "{out}");
    // An all-literal array takes its context's dtype.
    assert!(out.contains("_: f16[3]\n  [0, 1, 4]"), "{out}");
    assert!(out.contains("error[E0313]: the rows of an array literal differ in shape"), "{out}");
}
