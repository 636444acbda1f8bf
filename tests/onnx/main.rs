//! Conformance against the ONNX operator test suite (ONNX 1.22.0's single-operator node cases).
//!
//! Every case of the operators in [`ops::OPS`] is translated into a tk program from the
//! operator's template in `tests/onnx/ops/`, compiled, run on the device with the case's inputs,
//! and compared with the case's expected outputs within ONNX's tolerances (rtol 1e-3, atol 1e-7;
//! integers and bools exactly), on the CPU and on the simulated GPUs (every case tk supports).
//! `tests/onnx/expected.txt` classifies every case per device as
//! pass, known-fail or unsupported, with the reason; `docs/conformance.md` is the table made from
//! it. A listed pass that fails, an unclassified case or a stale table fails the test; a case that
//! passes against the list is reported. `scripts/onnx --update` rewrites both files.
//!
//! The cases come from `scripts/setup` (into `.tools/onnx-1.22.0/node`) or `TK_ONNX_DATA`.

mod case;
#[path = "../common/mod.rs"]
mod common;
mod ops;
mod proto;

use case::Case;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tk_ir::graph::Scalar;
use tk_runtime::{Device, HostArray};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-7;
const LIST: &str = "tests/onnx/expected.txt";
const TABLE: &str = "docs/conformance.md";
/// The devices besides the CPU (the reference): every device with a `device_suite!`
/// (`common::SUITE_DEVICES`): the PTX simulator, the RDNA3 emulator, and the userspace driver on
/// its simulated PCIe GPU. Each runs every case the CPU supports.
fn sim_devices() -> impl Iterator<Item = &'static str> + Clone {
    common::SUITE_DEVICES.iter().copied().filter(|d| *d != "cpu")
}

/// Whether this build can compile for `dev`: the AMD devices need LLVM (the `amdgpu` feature).
fn can_compile_for(dev: &str) -> bool {
    cfg!(feature = "amdgpu") || !(dev.starts_with("amd:") || dev.contains("gfx"))
}

/// Each case's name and how it ended on one device.
type Results = Vec<(String, Status)>;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Status {
    Pass,
    KnownFail(String),
    Unsupported(String),
}

impl Status {
    fn word(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::KnownFail(_) => "known-fail",
            Status::Unsupported(_) => "unsupported",
        }
    }
    fn text(&self) -> String {
        match self {
            Status::Pass => "pass".into(),
            Status::KnownFail(r) => format!("known-fail: {r}"),
            Status::Unsupported(r) => format!("unsupported: {r}"),
        }
    }
    fn parse(s: &str) -> Option<Status> {
        let (w, r) = s.split_once(':').map_or((s.trim(), ""), |(w, r)| (w.trim(), r.trim()));
        Some(match w {
            "pass" => Status::Pass,
            "known-fail" => Status::KnownFail(r.into()),
            "unsupported" => Status::Unsupported(r.into()),
            _ => return None,
        })
    }
}

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("TK_ONNX_DATA").map_or_else(|| PathBuf::from(".tools/onnx-1.22.0/node"), PathBuf::from);
    dir.is_dir().then_some(dir)
}

/// A case of a listed operator: single-node cases under their operator, and each `_expanded`
/// case under the operator of the case it expands.
struct Listed {
    case: Case,
    op: String,
    expanded: bool,
}

fn discover(dir: &Path) -> Vec<Listed> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("readable ONNX data")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    let models: BTreeMap<String, (String, usize)> = names
        .iter()
        .map(|n| (n.clone(), case::model_op(&dir.join(n)).unwrap_or_else(|e| panic!("cannot read ONNX case {n}: {e}"))))
        .collect();
    let mut out = Vec::new();
    for (name, (op, nodes)) in &models {
        let (op, expanded) = match name.find("_expanded") {
            Some(i) => match models.get(&name[..i]) {
                Some((base, 1)) => (base.clone(), true),
                _ => continue,
            },
            None if *nodes == 1 => (op.clone(), false),
            None => continue,
        };
        if ops::OPS.contains(&op.as_str()) {
            let case = Case::load(&dir.join(name)).unwrap_or_else(|e| panic!("cannot read ONNX case {name}: {e}"));
            out.push(Listed { case, op, expanded });
        }
    }
    out
}

/// Compiles the case's program and runs it on `dev`: `Ok` when every output matches.
fn run_case(c: &Case, dev: &Arc<dyn Device>) -> Status {
    if let Some(r) = ops::unsupported(c) {
        return Status::Unsupported(r);
    }
    match try_case(c, dev) {
        Ok(()) => Status::Pass,
        Err(r) => Status::KnownFail(r),
    }
}

/// The tk source for a case.
fn source(c: &Case) -> Result<(ops::Instance, String), String> {
    let inst = ops::instantiate(c)?;
    let path = Path::new("tests/onnx/ops").join(format!("{}.tk", inst.template));
    let template = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let src = ops::fill(&template, &inst.vars)?;
    Ok((inst, src))
}

fn try_case(c: &Case, dev: &Arc<dyn Device>) -> Result<(), String> {
    let (inst, src) = source(c)?;
    let path = Path::new("tests/onnx/ops").join(format!("{}.tk", inst.template));
    let checked = tk_compiler::check_source(&path, src.clone());
    if !checked.is_ok() {
        let first = checked.render_plain();
        let line = first.lines().next().unwrap_or("").to_string();
        return Err(format!("does not compile: {line}"));
    }
    let k = checked.kernels.iter().find(|k| k.name == "main").ok_or("the template has no kernel `main`")?;
    let g = tk_compiler::lower::lower_kernel(k).map_err(|e| format!("lowering: {e}"))?;
    let g = tk_ir::graph::passes::prepare(&g);
    let compiled =
        tk_toolchain::compile(dev.as_ref(), "main", &g, &Default::default()).map_err(|e| format!("compile: {e}"))?;
    let args: Vec<HostArray> = inst
        .args
        .iter()
        .map(|&k| c.inputs[k].as_ref().expect("argument present").array.clone().expect("tk dtype"))
        .collect();
    let got = compiled.run(dev.as_ref(), &args, &HashMap::new()).map_err(|e| format!("run: {e}"))?;
    if got.len() != c.outputs.len() {
        return Err(format!("{} outputs, ONNX expects {}", got.len(), c.outputs.len()));
    }
    for (k, (g, want)) in got.iter().zip(&c.outputs).enumerate() {
        let w = want.array.as_ref().expect("tk dtype");
        compare(g, w).map_err(|e| format!("output {k}: {e}"))?;
    }
    Ok(())
}

/// ONNX's comparison: shapes and dtypes equal; floats within rtol/atol (NaN matches NaN);
/// integers and bools exactly.
fn compare(got: &HostArray, want: &HostArray) -> Result<(), String> {
    if got.dtype != want.dtype || got.shape != want.shape {
        return Err(format!("{}{:?}, expected {}{:?}", got.dtype, got.shape, want.dtype, want.shape));
    }
    let mut bad = 0;
    let mut first = None;
    for i in 0..want.len() {
        let ok = if want.dtype.is_float() {
            let (g, w) = (got.get_f64(i), want.get_f64(i));
            (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= ATOL + RTOL * w.abs()
        } else {
            matches!((got.get(i), want.get(i)), (a, b) if scalar_eq(&a, &b))
        };
        if !ok {
            bad += 1;
            first.get_or_insert((i, got.get_f64(i), want.get_f64(i)));
        }
    }
    match first {
        None => Ok(()),
        Some((i, g, w)) => {
            Err(format!("{bad} of {} elements differ (first: element {i} is {g}, expected {w})", want.len()))
        }
    }
}

fn scalar_eq(a: &Scalar, b: &Scalar) -> bool {
    match (a, b) {
        (Scalar::Int(x), Scalar::Int(y)) => x == y,
        (Scalar::Bool(x), Scalar::Bool(y)) => x == y,
        (Scalar::Float(x), Scalar::Float(y)) => x == y || (x.is_nan() && y.is_nan()),
        _ => false,
    }
}

/// `expected.txt`: `<case> <device> <status>[: <reason>]` per line; `#` comments.
fn read_list() -> BTreeMap<(String, String), Status> {
    let text = std::fs::read_to_string(LIST).unwrap_or_default();
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, ' ');
        let (Some(case), Some(dev), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("{LIST}:{}: expected `<case> <device> <status>`", n + 1);
        };
        let status = Status::parse(rest.trim()).unwrap_or_else(|| panic!("{LIST}:{}: unknown status '{rest}'", n + 1));
        out.insert((case.to_string(), dev.to_string()), status);
    }
    out
}

fn write_list(results: &BTreeMap<(String, String), Status>) {
    let mut s = String::from(
        "# ONNX 1.22.0 node test cases of the operators in tests/onnx/ops.rs, classified per device:\n\
         # pass, known-fail: <reason> or unsupported: <reason>. Checked by `cargo test --test onnx`;\n\
         # rewritten by `scripts/onnx --update` (review the diff before committing it).\n",
    );
    for ((case, dev), st) in results {
        let _ = writeln!(s, "{case} {dev} {}", st.text());
    }
    std::fs::write(LIST, s).expect("write the list");
}

/// The conformance table of docs/conformance.md, made from the classification.
fn table(listed: &[Listed], results: &BTreeMap<(String, String), Status>) -> String {
    let count = |pred: &dyn Fn(&Listed) -> bool, dev: &str, w: &str| {
        listed
            .iter()
            .filter(|l| pred(l) && results.get(&(l.case.name.clone(), dev.to_string())).is_some_and(|s| s.word() == w))
            .count()
    };
    let mut s = String::new();
    let total_pass = count(&|l| !l.expanded, "cpu", "pass");
    let _ = writeln!(s, "**{total_pass} cases pass** on the `cpu` device (cases without `_expanded`).\n");
    let _ = writeln!(
        s,
        "| Operator | Cases | cpu pass | cpu known-fail | unsupported | {} | `_expanded` cases (pass) |",
        sim_devices().map(|d| format!("`{d}` (pass / run)")).collect::<Vec<_>>().join(" | ")
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|{}---:|", "---:|".repeat(sim_devices().count()));
    for op in ops::OPS {
        let of = |l: &Listed| l.op == *op && !l.expanded;
        let cases = listed.iter().filter(|l| of(l)).count();
        let sims: Vec<String> = sim_devices()
            .map(|d| {
                let run = listed
                    .iter()
                    .filter(|l| of(l) && results.contains_key(&(l.case.name.clone(), d.to_string())))
                    .count();
                format!("{} / {run}", count(&of, d, "pass"))
            })
            .collect();
        let exp = listed.iter().filter(|l| l.op == *op && l.expanded).count();
        let exp_pass = count(&|l: &Listed| l.op == *op && l.expanded, "cpu", "pass");
        let _ = writeln!(
            s,
            "| {op} | {cases} | {} | {} | {} | {} | {exp} ({exp_pass}) |",
            count(&of, "cpu", "pass"),
            count(&of, "cpu", "known-fail"),
            count(&of, "cpu", "unsupported"),
            sims.join(" | ")
        );
    }
    let n = listed.iter().filter(|l| !l.expanded).count();
    let _ = writeln!(
        s,
        "| **all** | {n} | {} | {} | {} | {} | {} ({}) |",
        total_pass,
        count(&|l| !l.expanded, "cpu", "known-fail"),
        count(&|l| !l.expanded, "cpu", "unsupported"),
        sim_devices()
            .map(|d| {
                let run = listed.iter().filter(|l| results.contains_key(&(l.case.name.clone(), d.to_string()))).count();
                format!("{} / {run}", count(&|_| true, d, "pass"))
            })
            .collect::<Vec<_>>()
            .join(" | "),
        listed.iter().filter(|l| l.expanded).count(),
        count(&|l| l.expanded, "cpu", "pass"),
    );
    s
}

const TABLE_BEGIN: &str = "<!-- conformance table: generated by scripts/onnx --update; do not edit -->\n";
const TABLE_END: &str = "<!-- end of the conformance table -->\n";

fn doc_table() -> Option<String> {
    let doc = std::fs::read_to_string(TABLE).ok()?;
    let start = doc.find(TABLE_BEGIN)? + TABLE_BEGIN.len();
    let end = doc[start..].find(TABLE_END)? + start;
    Some(doc[start..end].to_string())
}

fn write_doc_table(t: &str) {
    let doc = std::fs::read_to_string(TABLE).expect("docs/conformance.md exists");
    let start = doc.find(TABLE_BEGIN).expect("table start marker") + TABLE_BEGIN.len();
    let end = doc[start..].find(TABLE_END).expect("table end marker") + start;
    let new = format!("{}{t}{}", &doc[..start], &doc[end..]);
    std::fs::write(TABLE, new).expect("write docs/conformance.md");
}

#[test]
fn onnx_node_cases_match_their_classification() {
    let Some(dir) = data_dir() else {
        let msg =
            "the ONNX 1.22.0 node cases are missing (.tools/onnx-1.22.0/node): run scripts/setup, or set TK_ONNX_DATA";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipping the ONNX conformance test: {msg}");
        return;
    };
    let update = std::env::var("TK_ONNX_UPDATE").is_ok_and(|v| v == "1");
    let listed = discover(&dir);
    assert!(listed.len() > 500, "only {} ONNX cases of the listed operators found in {}", listed.len(), dir.display());
    let list = read_list();
    let cpu = tk_runtime::open("cpu").expect("cpu device");
    let mut results: BTreeMap<(String, String), Status> = BTreeMap::new();
    for l in &listed {
        // `_expanded` cases of several nodes are classified unsupported without running.
        results.insert((l.case.name.clone(), "cpu".into()), run_case(&l.case, &cpu));
    }
    // The simulated GPUs run every single-node case that tk supports, one thread per device.
    let sim_cases: Vec<&Listed> = listed
        .iter()
        .filter(|l| !l.expanded && !matches!(results[&(l.case.name.clone(), "cpu".into())], Status::Unsupported(_)))
        .collect();
    let mut sims = Vec::new();
    for d in sim_devices() {
        if can_compile_for(d) {
            sims.push(d);
            continue;
        }
        let msg = format!("{d} needs LLVM 19: build the test with `--features amdgpu` (scripts/onnx does)");
        if std::env::var("CI").is_ok_and(|v| v == "true") || update {
            panic!("{msg}");
        }
        eprintln!("not running the ONNX cases on {d}: {msg}; its lines in {LIST} are kept as they are");
        for (k, st) in list.iter().filter(|(k, _)| k.1 == *d) {
            results.insert(k.clone(), st.clone());
        }
    }
    // The AMD and NVIDIA drivers also run every case over the TinyGPU socket protocol, on a GPU
    // behind a fake server; each case must end as it does on the in-process `amd:sim` / `nv:sim`.
    let socket = cfg!(unix) && sims.contains(&"amd:sim");
    let nv_socket = cfg!(unix) && sims.contains(&"nv:sim");
    // tk's SASS tables judge the kernels ptxas makes of every case for sm_80, sm_86 and sm_89
    // (docs/sass.md).
    let sass = sass_tools_present();
    let (on_sims, on_socket, on_nv_socket, sass_result) = std::thread::scope(|scope| {
        let socket_thread = socket.then(|| scope.spawn(|| over_the_tinygpu_socket(&sim_cases, false)));
        let nv_socket_thread = nv_socket.then(|| scope.spawn(|| over_the_tinygpu_socket(&sim_cases, true)));
        let sass_thread = sass.then(|| scope.spawn(|| sass_of_cases(&sim_cases)));
        let threads: Vec<_> = sims
            .iter()
            .map(|d| {
                let cases = &sim_cases;
                scope.spawn(move || {
                    let open = || tk_runtime::open(d).unwrap_or_else(|e| panic!("{d}: {e}"));
                    let mut dev = open();
                    let mut out = Vec::new();
                    for l in cases {
                        let st = run_case(&l.case, &dev);
                        if matches!(st, Status::KnownFail(_)) {
                            // A fault loses a GPU, as it would a real one: the next case gets a
                            // fresh one.
                            dev = open();
                        }
                        out.push((l.case.name.clone(), st));
                    }
                    out
                })
            })
            .collect();
        let on_sims: Vec<Results> =
            threads.into_iter().map(|t| t.join().expect("a simulated device's thread")).collect();
        (
            on_sims,
            socket_thread.map(|t| t.join().expect("the TinyGPU socket's thread")).unwrap_or_default(),
            nv_socket_thread.map(|t| t.join().expect("the NVIDIA TinyGPU socket's thread")).unwrap_or_default(),
            sass_thread.map(|t| t.join().expect("the SASS thread")),
        )
    });
    if let Some((failures, cubins, words)) = sass_result {
        assert!(
            failures.is_empty(),
            "tk disasm or tk's SASS encoder differs on {} of {cubins} ONNX cases' cubins (sm_80, sm_86, sm_89):\n  {}",
            failures.len(),
            failures.join("\n  ")
        );
        assert!(cubins > 900, "only {cubins} ONNX cases' cubins went through ptxas");
        eprintln!(
            "{cubins} ONNX cases' cubins (sm_80, sm_86, sm_89): tk disasm prints every line as nvdisasm does; \
             {words} words decode and encode back bit-exactly"
        );
    }
    for (d, out) in sims.iter().zip(on_sims) {
        for (case, st) in out {
            results.insert((case, d.to_string()), st);
        }
    }
    let mut socket_failures = Vec::new();
    for (sim_name, list) in [("amd:sim", &on_socket), ("nv:sim", &on_nv_socket)] {
        for (case, st) in list {
            let sim = &results[&(case.clone(), sim_name.to_string())];
            if sim.word() != st.word() {
                socket_failures.push(format!(
                    "{case} over the TinyGPU socket: {}, on {sim_name}: {}",
                    st.text(),
                    sim.text()
                ));
            }
        }
    }
    assert!(
        on_socket.len() == if socket { sim_cases.len() } else { 0 },
        "{} of {} cases ran over the TinyGPU socket",
        on_socket.len(),
        sim_cases.len()
    );
    assert!(
        on_nv_socket.len() == if nv_socket { sim_cases.len() } else { 0 },
        "{} of {} cases ran over the TinyGPU socket on the NVIDIA driver",
        on_nv_socket.len(),
        sim_cases.len()
    );
    for (run, list, driver) in [(socket, &on_socket, "AMD"), (nv_socket, &on_nv_socket, "NVIDIA")] {
        if run {
            let passed = list.iter().filter(|(_, st)| *st == Status::Pass).count();
            eprintln!("{} ONNX cases ran over the TinyGPU socket on the {driver} driver, {passed} passed", list.len());
        }
    }
    assert!(
        socket_failures.is_empty(),
        "{} ONNX cases end differently over the TinyGPU socket than in process:\n  {}",
        socket_failures.len(),
        socket_failures.join("\n  ")
    );

    let t = table(&listed, &results);
    if update {
        // Keep the reasons a person wrote for cases whose status word is unchanged.
        for (k, st) in results.iter_mut() {
            if let Some(old) = list.get(k)
                && old.word() == st.word()
            {
                *st = old.clone();
            }
        }
        write_list(&results);
        write_doc_table(&t);
        eprintln!("wrote {LIST} and {TABLE}");
        return;
    }

    let mut failures = Vec::new();
    let mut improved = Vec::new();
    for ((case, dev), st) in &results {
        match list.get(&(case.clone(), dev.clone())) {
            None => failures.push(format!("{case} on {dev} is not classified in {LIST} (it is {})", st.text())),
            Some(Status::Pass) if *st != Status::Pass => {
                failures.push(format!("{case} on {dev}: listed as pass, {}", st.text()))
            }
            Some(old) if old.word() != st.word() => {
                improved.push(format!("{case} on {dev}: listed {}, now {}", old.word(), st.text()))
            }
            _ => {}
        }
    }
    for k in list.keys() {
        if !results.contains_key(k) {
            failures.push(format!("{} on {} is listed but no such case was run", k.0, k.1));
        }
    }
    if !improved.is_empty() {
        eprintln!(
            "{} ONNX cases changed status against {LIST} (update it with scripts/onnx --update):\n  {}",
            improved.len(),
            improved.join("\n  ")
        );
    }
    if doc_table().as_deref() != Some(t.as_str()) {
        failures.push(format!("{TABLE} is stale: run scripts/onnx --update"));
    }
    let passing =
        listed.iter().filter(|l| !l.expanded && results[&(l.case.name.clone(), "cpu".into())] == Status::Pass).count();
    assert!(failures.is_empty(), "{} ONNX conformance failures:\n  {}", failures.len(), failures.join("\n  "));
    assert!(passing >= 380, "only {passing} ONNX cases pass on the CPU; the floor is 380");
}

/// Whether ptxas and nvdisasm are there to judge tk's SASS tables; in CI they must be.
fn sass_tools_present() -> bool {
    use tk_toolchain::tools::ptxas::{Tool, find};
    match find(Tool::Ptxas).and_then(|_| find(Tool::Nvdisasm)) {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "ptxas and nvdisasm are required in CI: {e}");
            eprintln!("not comparing tk's SASS with nvdisasm on the ONNX cases: {e}");
            false
        }
    }
}

/// Each case's kernels compiled for sm_80, sm_86 and sm_89 and assembled by ptxas: `tk disasm`
/// must print every instruction and label line as nvdisasm does, and every word must decode
/// into an instruction that encodes back into the same 128 bits. Returns the mismatches, how
/// many cubins were compared and how many words they hold.
fn sass_of_cases(cases: &[&Listed]) -> (Vec<String>, usize, usize) {
    use tk_codegen::ptx;
    let (mut failures, mut cubins, mut words) = (Vec::new(), 0, 0);
    for (t, l) in [80, 86, 89].into_iter().flat_map(|sm| cases.iter().map(move |l| (ptx::Target { sm }, l))) {
        let Ok((inst, src)) = source(&l.case) else { continue };
        let path = Path::new("tests/onnx/ops").join(format!("{}.tk", inst.template));
        let checked = tk_compiler::check_source(&path, src);
        let Some(k) = checked.kernels.iter().find(|k| k.name == "main") else { continue };
        let Ok(g) = tk_compiler::lower::lower_kernel(k) else { continue };
        let g = tk_ir::graph::passes::prepare(&g);
        let Ok(lowered) = tk_toolchain::target::lower(&g, tk_toolchain::target::Target::Nvidia(t), &Default::default())
        else {
            continue;
        };
        let Ok(m) = ptx::module(&[("main_".to_string(), lowered.kernels)], t) else { continue };
        let name = &format!("{} {t}", l.case.name);
        let cubin = match tk_toolchain::tools::ptxas::assemble(&m.text, t) {
            Ok(a) => a.cubin,
            Err(e) => {
                failures.push(format!("{name}: ptxas: {e}"));
                continue;
            }
        };
        let want = match tk_toolchain::tools::ptxas::disassemble(&cubin) {
            Ok(text) => common::sass_lines(&text),
            Err(e) => {
                failures.push(format!("{name}: nvdisasm: {e}"));
                continue;
            }
        };
        match tk::disasm::disassemble(name, &cubin, None) {
            Ok(text) => {
                let got = common::sass_lines(&text);
                if let Some(k) = (0..want.len().max(got.len())).find(|&k| want.get(k) != got.get(k)) {
                    failures.push(format!(
                        "{name}: line {k}: nvdisasm `{}`, tk `{}`",
                        want.get(k).map_or("(none)", String::as_str),
                        got.get(k).map_or("(none)", String::as_str)
                    ));
                }
            }
            Err((_, e)) => failures.push(format!("{name}: tk disasm: {e}")),
        }
        words += common::reencode(name, &cubin, &mut failures);
        cubins += 1;
    }
    (failures, cubins, words)
}

/// Runs `cases` on the GPU behind a fake TinyGPU server, booted cold through the socket. A case
/// that fails loses the GPU, as on `amd:sim`: the next one connects again (a warm start).
#[cfg(unix)]
fn over_the_tinygpu_socket(cases: &[&Listed], nvidia: bool) -> Vec<(String, Status)> {
    let server = if nvidia { common::nv_tinygpu_server("onnx") } else { common::tinygpu_server("onnx") };
    let open = || -> Arc<dyn Device> {
        if nvidia {
            Arc::new(common::nv_tinygpu_device(&server).1)
        } else {
            Arc::new(common::tinygpu_device(&server).1)
        }
    };
    let mut dev = Some(open());
    let mut out = Vec::new();
    for l in cases {
        let d = dev.get_or_insert_with(open);
        let st = run_case(&l.case, d);
        if matches!(st, Status::KnownFail(_)) {
            // One user at a time: the lost GPU is let go before the next connection.
            dev = None;
        }
        out.push((l.case.name.clone(), st));
    }
    out
}

#[cfg(not(unix))]
fn over_the_tinygpu_socket(_: &[&Listed], _: bool) -> Vec<(String, Status)> {
    Vec::new()
}

/// The pieces of the harness that do not need the ONNX data.
mod harness {
    use super::*;
    use prost::Message;

    #[test]
    fn templates_fill_their_slots_and_defaults_and_reject_unknown_ones() {
        let vars: BTreeMap<String, String> = [("in0".to_string(), "f32[3]".to_string())].into();
        assert_eq!(ops::fill("x: {{in0}}, {{alpha|0.01}}", &vars).unwrap(), "x: f32[3], 0.01");
        assert!(ops::fill("{{beta}}", &vars).unwrap_err().contains("beta"));
        assert!(ops::fill("{{in0", &vars).is_err());
    }

    #[test]
    fn float_attributes_print_as_literals_of_the_same_f32() {
        for v in [0.1f32, 2.0, 1e-5, -0.5, 1.6732632, 3.4e38] {
            let s = ops::float_lit(v).unwrap();
            assert_eq!(s.parse::<f32>().unwrap(), v, "{s}");
            assert!(s.contains('.') || s.contains('e'), "{s} is not a float literal");
        }
        assert!(ops::float_lit(f32::NAN).is_err());
    }

    #[test]
    fn tensors_decode_from_raw_bytes_and_from_typed_fields() {
        let raw = proto::TensorProto {
            dims: vec![2],
            data_type: 1,
            raw_data: [1.5f32, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let typed =
            proto::TensorProto { dims: vec![2], data_type: 1, float_data: vec![1.5, -2.0], ..Default::default() };
        for t in [raw, typed] {
            // Through the wire format, as the files hold them.
            let t: proto::TensorProto = proto::decode(&t.encode_to_vec()).unwrap();
            let a = case::tensor(&t).unwrap().array.unwrap();
            assert_eq!((a.shape.clone(), a.get_f64(0), a.get_f64(1)), (vec![2], 1.5, -2.0));
        }
        let i8s =
            proto::TensorProto { dims: vec![3], data_type: 3, int32_data: vec![-1, 7, -128], ..Default::default() };
        let a = case::tensor(&i8s).unwrap().array.unwrap();
        assert_eq!(a.data, vec![0xff, 7, 0x80]);
        let short = proto::TensorProto { dims: vec![3], data_type: 1, raw_data: vec![0; 8], ..Default::default() };
        assert!(case::tensor(&short).unwrap().array.unwrap_err().contains("raw_data"));
        let u16s = proto::TensorProto { dims: vec![1], data_type: 4, int32_data: vec![1], ..Default::default() };
        assert_eq!(case::tensor(&u16s).unwrap().array.unwrap_err(), "tk has no UINT16 dtype");
        assert!(proto::decode::<proto::ModelProto>(&[0x0a, 0xff]).is_err());
    }

    #[test]
    fn onnx_tolerances_compare_floats_loosely_and_integers_exactly() {
        let f = |v: &[f32]| HostArray {
            dtype: tk_ir::dtype::DType::F32,
            shape: vec![v.len()],
            data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        };
        assert!(compare(&f(&[1.0, f32::NAN, 0.0]), &f(&[1.0009, f32::NAN, 1e-8])).is_ok());
        assert!(compare(&f(&[1.0]), &f(&[1.002])).is_err());
        assert!(compare(&f(&[1.0, 2.0]), &f(&[1.0])).is_err());
        let i = |v: i32| HostArray { dtype: tk_ir::dtype::DType::I32, shape: vec![], data: v.to_le_bytes().to_vec() };
        assert!(compare(&i(7), &i(7)).is_ok());
        assert!(compare(&i(7), &i(8)).is_err());
    }
}

/// On the devices that need hardware (`common::HARDWARE_SUITE_DEVICES`: an NVIDIA GPU), where it
/// is present, every case that passes on the CPU passes too. They are not columns of the
/// conformance table, which every machine can reproduce.
#[test]
fn onnx_cases_that_pass_on_the_cpu_pass_on_hardware_devices() {
    let test = "onnx_cases_that_pass_on_the_cpu_pass_on_hardware_devices";
    let devices: Vec<&str> =
        common::HARDWARE_SUITE_DEVICES.iter().copied().filter(|d| common::device_ready(d, test)).collect();
    if devices.is_empty() {
        return;
    }
    let Some(dir) = data_dir() else {
        panic!(
            "the ONNX 1.22.0 node cases are missing (.tools/onnx-1.22.0/node): run scripts/setup, or set TK_ONNX_DATA"
        );
    };
    let cpu = tk_runtime::open("cpu").expect("cpu device");
    let passing: Vec<Listed> =
        discover(&dir).into_iter().filter(|l| !l.expanded && run_case(&l.case, &cpu) == Status::Pass).collect();
    let mut failures = Vec::new();
    for d in devices {
        let mut dev = tk_runtime::open(d).unwrap_or_else(|e| panic!("{d}: {e}"));
        for l in &passing {
            let st = run_case(&l.case, &dev);
            if st != Status::Pass {
                failures.push(format!("{} on {d}: {}", l.case.name, st.text()));
                dev = tk_runtime::open(d).unwrap_or_else(|e| panic!("{d}: {e}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
