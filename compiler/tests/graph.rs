//! Lowering to the graph IR and running it in the reference interpreter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tk_compiler::dims::Dim;
use tk_compiler::types::DType;
use tk_ir::graph::interp::{self, Array, Data};
use tk_ir::graph::{Graph, Scalar};

/// A small deterministic generator (xorshift) for test inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn float(&mut self) -> f64 {
        (self.next() % 2_000_001) as f64 / 1_000_000.0 - 1.0
    }
}

fn compile(path: &Path, src: &str) -> Vec<(String, Graph)> {
    let c = tk_compiler::check_source(path, src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    c.kernels
        .iter()
        .map(|k| (k.name.clone(), tk_compiler::lower::lower_kernel(k).unwrap_or_else(|e| panic!("{}: {e}", k.name))))
        .collect()
}

fn symbols(g: &Graph) -> Vec<String> {
    let mut v: Vec<String> = g.inputs.iter().flat_map(|(_, _, s)| s.iter().flat_map(|d| d.symbols())).collect();
    v.extend(g.dims.iter().cloned());
    v.sort();
    v.dedup();
    v
}

/// Random arguments for a graph with every dimension symbol bound by `dims`.
fn random_args(g: &Graph, dims: &HashMap<String, i64>, rng: &mut Rng) -> Vec<Array> {
    g.inputs
        .iter()
        .map(|(_, d, shape)| {
            let shape: Vec<usize> =
                shape.iter().map(|x| x.eval(&|s| dims.get(s).copied()).expect("bound") as usize).collect();
            Array::from_fn(*d, shape, |_| {
                if d.is_float() {
                    Scalar::Float(rng.float())
                } else if *d == DType::Bool {
                    Scalar::Bool(rng.next().is_multiple_of(2))
                } else {
                    Scalar::Int((rng.next() % 3) as i128)
                }
            })
        })
        .collect()
}

fn floats(a: &Array) -> Vec<f64> {
    match &a.data {
        Data::F(v) => v.clone(),
        Data::I(v) => v.iter().map(|x| *x as f64).collect(),
        Data::B(v) => v.iter().map(|x| f64::from(u8::from(*x))).collect(),
    }
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("../examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .collect();
    v.sort();
    v
}

/// Every kernel of every example lowers and runs on random inputs, for several sizes.
#[test]
fn every_example_runs_in_the_graph_interpreter() {
    let mut rng = Rng(0x9E3779B97F4A7C15);
    let mut ran = 0;
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            for size in [0i64, 1, 2, 3, 4, 7, 13] {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                // Sizes too small for a kernel make some input dimension negative: skip those.
                if g.inputs
                    .iter()
                    .any(|(_, _, s)| s.iter().any(|d| d.eval(&|x| dims.get(x).copied()).is_none_or(|v| v < 0)))
                {
                    continue;
                }
                let args = random_args(&g, &dims, &mut rng);
                let bound = match interp::bind_dims(&g, &args, &dims) {
                    Ok(b) => b,
                    Err(e) => panic!("{}::{name}: {e}", f.display()),
                };
                match interp::run(&g, &bound, &args) {
                    Ok(outs) => {
                        assert_eq!(outs.len(), g.outputs.len());
                        ran += 1;
                    }
                    // Tiny sizes may make a derived dimension negative, an index like x[0] hit an
                    // empty axis, or argmax meet an empty axis: those must be clean errors.
                    Err(e)
                        if size < 3
                            && (e.message.contains("negative")
                                || e.message.contains("out of range")
                                || e.message.contains("empty")) => {}
                    Err(e) => panic!("{}::{name} (size {size}): {e}", f.display()),
                }
            }
        }
    }
    assert!(ran >= 60, "only {ran} runs");
}

fn run1(src: &str, kernel: &str, args: Vec<Array>, dims: &[(&str, i64)]) -> Result<Vec<Array>, String> {
    let graphs = compile(Path::new("t.tk"), src);
    let (_, g) = graphs.into_iter().find(|(n, _)| n == kernel).expect("kernel");
    let explicit: HashMap<String, i64> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let bound = interp::bind_dims(&g, &args, &explicit)?;
    interp::run(&g, &bound, &args).map_err(|e| e.message)
}

fn f32s(shape: Vec<usize>, v: &[f64]) -> Array {
    Array::from_fn(DType::F32, shape, |i| Scalar::Float(v[i]))
}

#[test]
fn saxpy_and_layernorm_match_direct_computation() {
    let src = std::fs::read_to_string("../examples/saxpy.tk").expect("saxpy");
    let x = [1.0, 2.0, 3.5, -4.0, 0.25];
    let y = [0.5, -1.0, 2.0, 8.0, 1.0];
    let out = run1(&src, "saxpy", vec![f32s(vec![], &[2.0]), f32s(vec![5], &x), f32s(vec![5], &y)], &[]).expect("runs");
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| (2.0f32 * *a as f32 + *b as f32) as f64).collect();
    assert_eq!(floats(&out[0]), want);

    let src = std::fs::read_to_string("../examples/layernorm.tk").expect("layernorm");
    let xs: Vec<f64> = (0..12).map(|i| (i as f64 * 0.7).sin()).collect();
    let g = vec![1.0; 4];
    let b = vec![0.0; 4];
    let out =
        run1(&src, "layernorm", vec![f32s(vec![3, 4], &xs), f32s(vec![4], &g), f32s(vec![4], &b)], &[]).expect("runs");
    let o = floats(&out[0]);
    for r in 0..3 {
        let row = &o[r * 4..r * 4 + 4];
        let mean: f64 = row.iter().sum::<f64>() / 4.0;
        let var: f64 = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-3, "row {r}: mean {mean} var {var}");
    }
}

#[test]
fn matmul_forms_and_stencils_agree_with_loops() {
    let src = "kernel mm(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { a @ b }\n\
               kernel mi(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { [i, j] => sum(r in 0..k: a[i, r] * b[r, j]) }\n\
               kernel blur(img: f32[h, w]) -> f32[h - 2, w - 2] { [i, j] => (img[i, j+1] + img[i+1, j] + img[i+1, j+1] + img[i+1, j+2] + img[i+2, j+1]) / 5.0 }\n\
               kernel bmm(a: f32[b, m, k], v: f32[k]) -> f32[b, m] { a @ v }\n";
    let mut rng = Rng(42);
    let (m, k, n) = (3, 5, 2);
    let a: Vec<f64> = (0..m * k).map(|_| rng.float()).collect();
    let b: Vec<f64> = (0..k * n).map(|_| rng.float()).collect();
    let args = || vec![f32s(vec![m, k], &a), f32s(vec![k, n], &b)];
    let x = floats(&run1(src, "mm", args(), &[]).expect("mm")[0]);
    let y = floats(&run1(src, "mi", args(), &[]).expect("mi")[0]);
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0f32;
            for r in 0..k {
                s += a[i * k + r] as f32 * b[r * n + j] as f32;
            }
            want[i * n + j] = s as f64;
        }
    }
    assert_eq!(x, want);
    assert_eq!(y, want);
    let (h, w) = (5, 6);
    let img: Vec<f64> = (0..h * w).map(|_| rng.float()).collect();
    let o = floats(&run1(src, "blur", vec![f32s(vec![h, w], &img)], &[]).expect("blur")[0]);
    for i in 0..h - 2 {
        for j in 0..w - 2 {
            let p = |r: usize, c: usize| img[r * w + c] as f32;
            let s = ((((p(i, j + 1) + p(i + 1, j)) + p(i + 1, j + 1)) + p(i + 1, j + 2)) + p(i + 2, j + 1)) / 5.0;
            assert_eq!(o[i * (w - 2) + j], s as f64);
        }
    }
    let v: Vec<f64> = (0..k).map(|_| rng.float()).collect();
    let a3: Vec<f64> = (0..2 * m * k).map(|_| rng.float()).collect();
    let o = floats(&run1(src, "bmm", vec![f32s(vec![2, m, k], &a3), f32s(vec![k], &v)], &[]).expect("bmm")[0]);
    for bi in 0..2 {
        for i in 0..m {
            let mut s = 0.0f32;
            for r in 0..k {
                s += a3[(bi * m + i) * k + r] as f32 * v[r] as f32;
            }
            assert_eq!(o[bi * m + i], s as f64);
        }
    }
}

#[test]
fn mandelbrot_counts_match_a_direct_loop() {
    let src = std::fs::read_to_string("../examples/mandelbrot.tk").expect("mandelbrot");
    let (h, w) = (6, 9);
    let (x0, y0, step) = (-2.0f32, -1.2f32, 0.3f32);
    let out = run1(
        &src,
        "mandelbrot",
        vec![f32s(vec![], &[x0 as f64]), f32s(vec![], &[y0 as f64]), f32s(vec![], &[step as f64])],
        &[("h", h), ("w", w)],
    )
    .expect("runs");
    let got = floats(&out[0]);
    for i in 0..h as usize {
        for j in 0..w as usize {
            let cx = x0 + (j as f32) * step;
            let cy = y0 + (i as f32) * step;
            let (mut zx, mut zy, mut n) = (0.0f32, 0.0f32, 0);
            for _ in 0..256 {
                if zx * zx + zy * zy > 4.0 {
                    break;
                }
                let t = zx * zx - zy * zy + cx;
                zy = 2.0 * zx * zy + cy;
                zx = t;
                n += 1;
            }
            assert_eq!(got[i * w as usize + j], n as f64, "pixel {i},{j}");
        }
    }
}

#[test]
fn gathers_are_checked_at_run_time() {
    let src = "kernel embed(table: f32[v, d], ids: i32[t]) -> f32[t, d] { [i, j] => table[ids[i], j] }\n";
    let table = f32s(vec![3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    let ids = Array::from_fn(DType::I32, vec![2], |i| Scalar::Int([2, 0][i]));
    let out = run1(src, "embed", vec![table.clone(), ids], &[]).expect("in range");
    assert_eq!(floats(&out[0]), vec![20.0, 21.0, 0.0, 1.0]);
    for bad in [3, -1] {
        let ids = Array::from_fn(DType::I32, vec![2], |i| Scalar::Int([1, bad][i]));
        let e = run1(src, "embed", vec![table.clone(), ids], &[]).expect_err("out of range");
        assert!(e.contains("out of range"), "{e}");
    }
}

#[test]
fn pinned_reduction_semantics() {
    let src = "kernel r(x: f32[n]) -> (s: f32, p: f32, mx: f32, mn: f32, am: i64, an: i64) {\n\
               (sum(x), prod(x), max(x), min(x), argmax(x), argmin(x))\n}\n\
               kernel e(x: f32[n]) -> (s: f32, p: f32, mx: f32, mn: f32) { (sum(x), prod(x), max(x), min(x)) }\n\
               kernel ea(x: f32[n]) -> i64 { argmax(x) }\n\
               kernel m(x: i32[n]) -> f32 { mean(x) }\n";
    let nan = f64::NAN;
    // Ties: first index; NaN counts as the maximum and the minimum, first NaN wins.
    let out = run1(src, "r", vec![f32s(vec![5], &[1.0, 3.0, 3.0, -2.0, -2.0])], &[]).expect("runs");
    assert_eq!(floats(&out[4]), vec![1.0]);
    assert_eq!(floats(&out[5]), vec![3.0]);
    let out = run1(src, "r", vec![f32s(vec![4], &[1.0, nan, 5.0, nan])], &[]).expect("runs");
    assert!(floats(&out[2])[0].is_nan() && floats(&out[3])[0].is_nan());
    assert_eq!(floats(&out[4]), vec![1.0]);
    assert_eq!(floats(&out[5]), vec![1.0]);
    // Empty reductions: sum 0, prod 1, max -inf, min +inf; argmax is an error.
    let out = run1(src, "e", vec![f32s(vec![0], &[])], &[]).expect("runs");
    assert_eq!(floats(&out[0]), vec![0.0]);
    assert_eq!(floats(&out[1]), vec![1.0]);
    assert_eq!(floats(&out[2]), vec![f64::NEG_INFINITY]);
    assert_eq!(floats(&out[3]), vec![f64::INFINITY]);
    assert!(run1(src, "ea", vec![f32s(vec![0], &[])], &[]).is_err());
    // mean of integers is f32; of nothing, NaN.
    let ints = Array::from_fn(DType::I32, vec![4], |i| Scalar::Int(i as i128));
    assert_eq!(floats(&run1(src, "m", vec![ints], &[]).expect("runs")[0]), vec![1.5]);
    let none = Array::from_fn(DType::I32, vec![0], |_| Scalar::Int(0));
    assert!(floats(&run1(src, "m", vec![none], &[]).expect("runs")[0])[0].is_nan());
}

#[test]
fn f16_rounds_after_every_operation_and_accumulates_in_f32() {
    let src = "kernel add3(x: f16[n]) -> f16[n] { x + 1.0 + 1.0 }\nkernel s(x: f16[n]) -> f16 { sum(x) }\n";
    let x = Array::from_fn(DType::F16, vec![1], |_| Scalar::Float(2048.0));
    // 2048 + 1 rounds back to 2048 in f16 (spacing 2), twice.
    assert_eq!(floats(&run1(src, "add3", vec![x], &[]).expect("runs")[0]), vec![2048.0]);
    // 2048 + 1 + 1 accumulated in f32 is 2050, which f16 represents.
    let x = Array::from_fn(DType::F16, vec![3], |i| Scalar::Float([2048.0, 1.0, 1.0][i]));
    assert_eq!(floats(&run1(src, "s", vec![x], &[]).expect("runs")[0]), vec![2050.0]);
}

#[test]
fn dimension_binding_is_checked() {
    let src = "kernel f(x: f32[n], y: f32[n + 1]) -> f32[n] { x }\n";
    let e = run1(src, "f", vec![f32s(vec![2], &[0.0, 1.0]), f32s(vec![2], &[0.0, 1.0])], &[]).expect_err("n + 1 != 2");
    assert!(e.contains("must be 3"), "{e}");
    let _ = Dim::constant(0);
}

/// The text form round-trips: print(parse(print(g))) == print(g), and the reparsed graph
/// computes the same results.
#[test]
fn graph_text_round_trips_and_reinterprets_identically() {
    let mut rng = Rng(7);
    let mut n = 0;
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            let text = tk_ir::graph::text::print(&g, &name);
            let (g2, name2) =
                tk_ir::graph::text::parse(&text).unwrap_or_else(|e| panic!("{}::{name}: {e}\n{text}", f.display()));
            assert_eq!(name2, name);
            assert_eq!(tk_ir::graph::text::print(&g2, &name), text, "{}::{name}", f.display());
            let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 5)).collect();
            let args = random_args(&g, &dims, &mut rng);
            let b = interp::bind_dims(&g, &args, &dims).expect("binds");
            let (r1, r2) = (interp::run(&g, &b, &args), interp::run(&g2, &b, &args));
            match (r1, r2) {
                (Ok(a), Ok(b)) => {
                    for (x, y) in a.iter().zip(&b) {
                        assert_eq!(format!("{x:?}"), format!("{y:?}"), "{}::{name}", f.display());
                    }
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("{}::{name}: {a:?} vs {b:?}", f.display()),
            }
            n += 1;
        }
    }
    assert!(n > 20);
}

/// The nodes of a graph and of its loop bodies.
fn all_nodes(g: &Graph) -> usize {
    g.g.node_weights()
        .map(|n| match &n.op {
            tk_ir::graph::Op::Loop { body, .. } => 1 + all_nodes(body),
            _ => 1,
        })
        .sum()
}

/// The rewrite passes change no result, and their output still prints and parses.
#[test]
fn optimization_preserves_results() {
    let mut rng = Rng(99);
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            let o = tk_ir::graph::passes::optimize(&g);
            let text = tk_ir::graph::text::print(&o, &name);
            tk_ir::graph::text::parse(&text).unwrap_or_else(|e| panic!("{}::{name}: {e}\n{text}", f.display()));
            // Counting loop bodies too: hoisting moves nodes out of a body.
            assert!(all_nodes(&o) <= all_nodes(&g), "{}::{name} grew", f.display());
            for size in [1i64, 4, 6] {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                if g.inputs
                    .iter()
                    .any(|(_, _, s)| s.iter().any(|d| d.eval(&|x| dims.get(x).copied()).is_none_or(|v| v < 0)))
                {
                    continue;
                }
                let args = random_args(&g, &dims, &mut rng);
                let b = interp::bind_dims(&g, &args, &dims).expect("binds");
                let (r1, r2) = (interp::run(&g, &b, &args), interp::run(&o, &b, &args));
                match (r1, r2) {
                    (Ok(a), Ok(c)) => {
                        assert_eq!(format!("{a:?}"), format!("{c:?}"), "{}::{name} size {size}", f.display())
                    }
                    (Err(_), Err(_)) => {}
                    (a, c) => panic!("{}::{name} size {size}: {a:?} vs {c:?}", f.display()),
                }
            }
        }
    }
}

#[test]
fn views_compose_and_identities_disappear() {
    let src = "kernel tt(x: f32[n, m]) -> f32[n, m] { transpose(transpose(x)) * 1.0 }\n\
               kernel fl(x: f32[n]) -> f32[n] { flip(flip(x, axis: 0), axis: 0) }\n\
               kernel cf(x: f32[n]) -> f32[n] { x + (2.0 * 3.0 - 1.0) }\n";
    for (name, g) in compile(Path::new("v.tk"), src) {
        let o = tk_ir::graph::passes::optimize(&g);
        let text = tk_ir::graph::text::print(&o, &name);
        match name.as_str() {
            // Everything folds away: the output is the input.
            "tt" | "fl" => assert_eq!(o.g.node_count(), 1, "{text}"),
            // 2.0 * 3.0 - 1.0 folds to 5.0.
            _ => assert!(text.contains("const 5.0") && !text.contains("binary mul"), "{text}"),
        }
    }
}

fn schedule_of(src: &str, kernel: &str) -> tk_ir::schedule::Schedule {
    let graphs = compile(Path::new("s.tk"), src);
    let (_, g) = graphs.into_iter().find(|(n, _)| n == kernel).expect("kernel");
    tk_ir::schedule::schedule(&tk_ir::graph::passes::optimize(&g))
}

#[test]
fn fusion_targets() {
    let src = "use std::nn::{softmax, layernorm};\n\
               kernel sm(x: f32[b, n]) -> f32[b, n] { softmax(x, axis: 1) }\n\
               kernel ln(x: f32[b, d], g: f32[d], beta: f32[d]) -> f32[b, d] { layernorm(x, g, beta) }\n\
               kernel chain(x: f32[n], y: f32[n]) -> f32[n] { sqrt(abs(((x + y) * 2.0 - y) / 3.0) * x - 0.5) }\n\
               kernel mm(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { a @ b }\n";
    let count = |k: &str| schedule_of(src, k).kernels.len();
    assert!(count("sm") <= 2, "softmax: {}", tk_ir::schedule::print(&schedule_of(src, "sm"), "sm"));
    assert!(count("ln") <= 2, "layernorm: {}", tk_ir::schedule::print(&schedule_of(src, "ln"), "ln"));
    assert_eq!(count("chain"), 1);
    assert_eq!(count("mm"), 1);
    // The 8-op chain really has 8 operations.
    let s = schedule_of(src, "chain");
    let ops = s.kernels[0]
        .nodes
        .iter()
        .filter(|id| matches!(s.graph.node(**id).op, tk_ir::graph::Op::Unary(_) | tk_ir::graph::Op::Binary(_)))
        .count();
    assert_eq!(ops, 8);
}

/// Device-kernel counts of every example, against `tests/kernel_counts.txt` (re-bless with
/// TK_BLESS=1), and every schedule computes what the graph computes.
#[test]
fn schedules_of_examples() {
    let mut rng = Rng(5);
    let mut table = String::new();
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            let o = tk_ir::graph::passes::optimize(&g);
            let s = tk_ir::schedule::schedule(&o);
            table.push_str(&format!(
                "{}::{name} {}\n",
                f.file_name().and_then(|x| x.to_str()).unwrap_or("?"),
                s.kernels.len()
            ));
            let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 5)).collect();
            let args = random_args(&g, &dims, &mut rng);
            let b = interp::bind_dims(&g, &args, &dims).expect("binds");
            let want = interp::run(&g, &b, &args);
            let got = tk_ir::schedule::run(&s, &b, &args);
            // The text form parses back to the same schedule.
            let text = tk_ir::schedule::print(&s, &name);
            let (s2, _) =
                tk_ir::schedule::parse(&text).unwrap_or_else(|e| panic!("{}::{name}: {e}\n{text}", f.display()));
            assert_eq!(tk_ir::schedule::print(&s2, &name), text);
            match (want, got) {
                (Ok(a), Ok(c)) => assert_eq!(
                    format!("{a:?}"),
                    format!("{c:?}"),
                    "{}::{name}\n{}",
                    f.display(),
                    tk_ir::schedule::print(&s, &name)
                ),
                (Err(_), Err(_)) => {}
                (a, c) => panic!("{}::{name}: {a:?} vs {c:?}\n{}", f.display(), tk_ir::schedule::print(&s, &name)),
            }
        }
    }
    let path = Path::new("../tests/kernel_counts.txt");
    if std::env::var_os("TK_BLESS").is_some() {
        std::fs::write(path, &table).expect("write");
    } else {
        let want = std::fs::read_to_string(path).expect("tests/kernel_counts.txt exists (bless with TK_BLESS=1)");
        assert_eq!(want, table, "device-kernel counts changed; re-bless with TK_BLESS=1 if intended");
    }
}

/// Every example, scheduled and lowered to the kernel IR, computes in the kernel interpreter
/// exactly what the graph interpreter computes, for the default knobs and 20 random valid ones.
#[test]
fn kernel_ir_matches_graph_interpreter() {
    use tk_ir::kernel::Knobs;
    let mut rng = Rng(2024);
    let mut checked = 0;
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            // The oracle is the reference interpreter on the prepared (decomposed) graph.
            let g = tk_ir::graph::passes::prepare(&g);
            let s = tk_ir::schedule::schedule(&g);
            let ranks: Vec<usize> = s.kernels.iter().map(|k| s.buffers[k.writes[0]].shape.len()).collect();
            for trial in 0..21 {
                let knobs: Vec<Knobs> = ranks
                    .iter()
                    .map(|&r| {
                        if trial == 0 {
                            return Knobs { parallel: r.min(1), ..Knobs::default() };
                        }
                        let k = Knobs {
                            parallel: (rng.next() % (r as u64 + 1)) as usize,
                            unroll: 1 << (rng.next() % 4),
                            vector: if r == 0 { 1 } else { 1 << (rng.next() % 4) },
                            group: 1,
                            upcast: 1 << (rng.next() % 3),
                        };
                        assert!(k.valid_for(r).is_ok(), "{k}");
                        k
                    })
                    .collect();
                let size = [1i64, 3, 5, 7][trial % 4];
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                if g.inputs
                    .iter()
                    .any(|(_, _, s)| s.iter().any(|d| d.eval(&|x| dims.get(x).copied()).is_none_or(|v| v < 0)))
                {
                    continue;
                }
                let args = random_args(&g, &dims, &mut rng);
                let b = interp::bind_dims(&g, &args, &dims).expect("binds");
                let want = interp::run(&g, &b, &args);
                let got = tk_ir::kernel::run_schedule(&s, &knobs, &b, &args);
                match (want, got) {
                    (Ok(a), Ok(c)) => {
                        assert_eq!(format!("{a:?}"), format!("{c:?}"), "{}::{name} size {size}", f.display())
                    }
                    (Err(_), Err(_)) => {}
                    (a, c) => panic!("{}::{name} size {size}: graph {a:?} vs kernel {c:?}", f.display()),
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 500, "{checked}");
}

#[test]
fn knobs_parse_print_and_validate() {
    use tk_ir::kernel::Knobs;
    let k: Knobs = "parallel=2,unroll=4,vector=8,group=16".parse().expect("parses");
    assert_eq!(k.to_string(), "parallel=2,unroll=4,vector=8,group=16");
    assert_eq!(k.to_string().parse::<Knobs>(), Ok(k.clone()));
    assert!(k.valid_for(2).is_ok());
    assert!(k.valid_for(1).is_err());
    assert!("unroll=3".parse::<Knobs>().expect("parses").valid_for(1).is_err());
    assert!("group=512".parse::<Knobs>().expect("parses").valid_for(1).is_err());
    assert!("tile=2".parse::<Knobs>().is_err());
}

#[test]
fn knob_overrides_replace_only_the_named_knobs() {
    use tk_ir::kernel::{KnobOverrides, Knobs};
    let o: KnobOverrides = "upcast=2, unroll=4".parse().expect("parses");
    assert_eq!(o.to_string(), "unroll=4,upcast=2");
    assert_eq!(o.to_string().parse::<KnobOverrides>(), Ok(o.clone()));
    let base = Knobs { parallel: 2, unroll: 1, vector: 1, group: 8, upcast: 4 };
    assert_eq!(o.apply(base.clone()), Knobs { parallel: 2, unroll: 4, vector: 1, group: 8, upcast: 2 });
    // Every knob named: the defaults play no part (what bundles from before overrides hold).
    let all: KnobOverrides = "parallel=1,unroll=1,vector=1,group=1".parse().expect("parses");
    assert_eq!(all.apply(Knobs::default()).parallel, 1);
    assert_eq!(KnobOverrides::from(&Knobs::default()).apply(base), Knobs::default());
    assert!("tile=2".parse::<KnobOverrides>().is_err());
    assert!("upcast=x".parse::<KnobOverrides>().is_err());
    assert_eq!("".parse::<KnobOverrides>(), Ok(KnobOverrides::default()));
}

#[test]
fn f64_erf_reference_terminates_at_zero() {
    let src = "kernel e(x: f64[n]) -> f64[n] { erf(x) }\n";
    let x = Array::from_fn(DType::F64, vec![4], |i| Scalar::Float([0.0, -0.0, 1.0, -30.0][i]));
    let out = floats(&run1(src, "e", vec![x], &[]).expect("runs")[0]);
    assert_eq!(out[0], 0.0);
    assert!((out[2] - 0.8427007929497149).abs() < 1e-15);
    assert_eq!(out[3], -1.0);
}

/// The kernel IR text parses back to the same text, and the reparsed kernels compute the same.
#[test]
fn kernel_ir_text_round_trips() {
    let mut rng = Rng(31);
    let mut n = 0;
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            let g = tk_ir::graph::passes::prepare(&g);
            let s = tk_ir::schedule::schedule(&g);
            let (mut kernels, mut lowered) = (Vec::new(), Vec::new());
            for k in 0..s.kernels.len() {
                let knobs = tk_ir::kernel::Knobs { parallel: 0, unroll: 2, vector: 1, group: 4, upcast: 1 };
                let kern = tk_ir::kernel::lower(&s, k, &knobs).expect("lowers");
                let text = tk_ir::kernel::print(&kern);
                let back =
                    tk_ir::kernel::parse(&text).unwrap_or_else(|e| panic!("{}::{name} k{k}: {e}\n{text}", f.display()));
                assert_eq!(tk_ir::kernel::print(&back), text, "{}::{name} k{k}", f.display());
                kernels.push(back);
                lowered.push(kern);
                n += 1;
            }
            let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 4)).collect();
            let args = random_args(&g, &dims, &mut rng);
            let b = interp::bind_dims(&g, &args, &dims).expect("binds");
            // Against the kernels as lowered: grouped reductions of products (`reduce dot`) sum
            // rounded partials, which the graph interpreter's single order does not.
            let want = tk_ir::kernel::run_kernels(&s, &lowered, &b, &args);
            let got = tk_ir::kernel::run_kernels(&s, &kernels, &b, &args);
            match (want, got) {
                (Ok(a), Ok(c)) => assert_eq!(format!("{a:?}"), format!("{c:?}"), "{}::{name}", f.display()),
                (Err(_), Err(_)) => {}
                (a, c) => panic!("{}::{name}: {a:?} vs {c:?}", f.display()),
            }
        }
    }
    assert!(n > 50);
}

/// Regression: merging reductions of equal shape must not reorder a kernel before one it reads
/// (found by the differential tests).
#[test]
fn merged_reductions_keep_dependency_order() {
    let src = "kernel k(x: f32[n, m]) -> f32[n, m] { let p = max(x @ transpose(x) @ x, 0.25); p @ transpose(p) @ p }\n";
    let s = schedule_of(src, "k");
    let mut written = std::collections::BTreeSet::new();
    for (i, b) in s.buffers.iter().enumerate() {
        if matches!(b.kind, tk_ir::schedule::BufferKind::Input(_)) {
            written.insert(i);
        }
    }
    for k in &s.kernels {
        for r in &k.reads {
            assert!(written.contains(r), "b{r} is read before it is written:\n{}", tk_ir::schedule::print(&s, "k"));
        }
        written.extend(k.writes.iter().copied());
    }
    let x = f32s(vec![2, 3], &[0.5, -1.0, 2.0, 0.25, 1.5, -0.75]);
    let dims: HashMap<String, i64> = HashMap::new();
    let b = interp::bind_dims(&s.graph, std::slice::from_ref(&x), &dims).expect("binds");
    let want = interp::run(&s.graph, &b, std::slice::from_ref(&x)).expect("graph");
    let got = tk_ir::kernel::run_schedule(&s, &[], &b, &[x]).expect("kernels");
    assert_eq!(format!("{want:?}"), format!("{got:?}"));
}

/// Grouped reductions (local memory, barriers, partials combined in thread order) agree with
/// the reference: exactly for integers and bools, within the reduction bound for floats.
#[test]
fn grouped_reductions_agree_within_the_contract() {
    use tk_ir::kernel::Knobs;
    let mut rng = Rng(77);
    let mut grouped = 0;
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        for (name, g) in compile(&f, &src) {
            let g = tk_ir::graph::passes::prepare(&g);
            let s = tk_ir::schedule::schedule(&g);
            for (size, group) in [(5i64, 2u32), (13, 8), (7, 4)] {
                let knobs: Vec<Knobs> =
                    s.kernels.iter().map(|_| Knobs { parallel: 0, group, ..Knobs::default() }).collect();
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                let args = random_args(&g, &dims, &mut rng);
                let b = interp::bind_dims(&g, &args, &dims).expect("binds");
                let (want, got) = (interp::run(&g, &b, &args), tk_ir::kernel::run_schedule(&s, &knobs, &b, &args));
                let (want, got) = match (want, got) {
                    (Ok(a), Ok(c)) => (a, c),
                    (Err(_), Err(_)) => continue,
                    (a, c) => panic!("{}::{name}: {a:?} vs {c:?}", f.display()),
                };
                for (w, c) in want.iter().zip(&got) {
                    match (&w.data, &c.data) {
                        (Data::F(x), Data::F(y)) => {
                            for (a, b) in x.iter().zip(y) {
                                let ok =
                                    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-3 * (1.0 + a.abs());
                                assert!(ok, "{}::{name} group {group}: {a} vs {b}", f.display());
                            }
                        }
                        _ => assert_eq!(w, c, "{}::{name} group {group}", f.display()),
                    }
                }
                grouped += 1;
            }
        }
    }
    assert!(grouped > 100);
    // The grouped kernels really use local memory and barriers.
    let s = schedule_of("kernel s(x: f32[n]) -> f32 { sum(x) }\n", "s");
    let k = tk_ir::kernel::lower(&s, 0, &Knobs { parallel: 0, group: 8, ..Knobs::default() }).expect("lowers");
    let text = tk_ir::kernel::print(&k);
    assert!(text.contains("local l0: f32[<8>]") && text.contains("barrier") && text.contains(" local {"), "{text}");
}

/// The matrix multiply-accumulate op: its accumulation order is one fma per k, in order.
#[test]
fn mma_op_parses_and_accumulates_in_order() {
    let text = "kernel k0(b0: f32[4] out) knobs parallel=0,unroll=1,vector=1,group=1 {\n\
                r0 = const 1.0 : f32\n  r1 = const 2.0 : f32\n  r2 = const 3.0 : f32\n  r3 = const 4.0 : f32\n\
                r4 = const 0.5 : f32\n  r5 = const 0.0 : f32\n\
                mma 1x2x2 (r6, r7) = (r4, r5) + (r0, r1) @ (r0, r1, r2, r3) : f32\n\
                store a0[0] = r6\n  store a0[1] = r7\n}\n";
    let k = tk_ir::kernel::parse(text).expect("parses");
    assert_eq!(
        tk_ir::kernel::parse(&tk_ir::kernel::print(&k)).map(|k2| tk_ir::kernel::print(&k2)),
        Ok(tk_ir::kernel::print(&k))
    );
    // d = c + [1 2] @ [[1 2] [3 4]] = [0.5 + 1 + 6, 0 + 2 + 8].
    let mut g = tk_ir::graph::Graph::default();
    let n = tk_compiler::dims::Dim::constant(4);
    let out =
        g.add(tk_ir::graph::Op::Const(Scalar::Float(0.0)), DType::F32, vec![n.clone()], vec![], Default::default());
    g.outputs.push(("out".into(), out));
    let s = tk_ir::schedule::schedule(&g);
    let got = tk_ir::kernel::run_kernels(&s, &[k], &HashMap::new(), &[]).expect("runs");
    assert_eq!(floats(&got[0])[..2], [7.5, 10.0]);
}

/// A contraction's arity is checked when the text is read: `reduce dot` takes two arrays, every
/// other reduction one, and no scan contracts. The error names the line.
#[test]
fn graph_text_checks_contraction_arity() {
    let head = "graph k\n  input a: f32[n]\n  %0 = input 0 : f32[n] @0:0..1\n";
    for (line, want) in [
        ("  %1 = reduce dot [0] %0 : f32[] @0:0..1", "`reduce dot` takes 2 argument(s), not 1"),
        ("  %1 = reduce sum [0] %0 %0 : f32[] @0:0..1", "`reduce sum` takes 1 argument(s), not 2"),
        ("  %1 = scan dot 0 %0 %0 : f32[n] @0:0..1", "a scan cannot be a contraction"),
    ] {
        let text = format!("{head}{line}\n  output out = %1\nend\n");
        let e = tk_ir::graph::text::parse(&text).expect_err(line);
        assert_eq!(e.line, 4, "{line}: {e}");
        assert!(e.message.contains(want), "{line}: {e}");
    }
    let ok = format!("{head}  %1 = reduce dot [0] %0 %0 : f32[] @0:0..1\n  output out = %1\nend\n");
    let (g, _) = tk_ir::graph::text::parse(&ok).expect("a two-argument contraction parses");
    let x = Array::from_fn(DType::F32, vec![3], |i| Scalar::Float([1.5, -2.0, 0.25][i]));
    let dims: HashMap<String, i64> = [("n".to_string(), 3)].into();
    let got = interp::run(&g, &dims, &[x]).expect("runs");
    assert_eq!(got[0].at(0), Scalar::Float(1.5 * 1.5 + 4.0 + 0.0625));
}
