//! The NVIDIA toolchain end to end: every example's PTX passes ptxas for every target, `tk build`
//! writes cubins and a manifest, `tk run --device sim:sm_86` agrees with the CPU through the
//! command line (the PTX of a few kernels is pinned by the file tests, tests/filetests/ptx).

#[macro_use]
mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};
use tk_codegen::ptx;
use tk_toolchain::target::{Options, Target};

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("NO_COLOR", "1").output().expect("tk runs")
}

/// Whether ptxas is available. In CI (`CI=true`) a missing ptxas fails the test: scripts/setup
/// installs it. Locally the test is skipped with the reason.
fn have_ptxas(test: &str) -> bool {
    match tk_toolchain::tools::ptxas::find(tk_toolchain::tools::ptxas::Tool::Ptxas) {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{test}: ptxas is required in CI: {e}");
            eprintln!("skipping {test}: {e}");
            false
        }
    }
}

/// The PTX module of every entry of a file, under the default options.
fn module(path: &Path, t: ptx::Target) -> ptx::Module {
    let groups: Vec<(String, Vec<tk_ir::kernel::Kernel>)> = compile(path)
        .into_iter()
        .map(|(name, g)| {
            let l = tk_toolchain::target::lower(&g, Target::Nvidia(t), &Options::default())
                .unwrap_or_else(|e| panic!("{}::{name}: {e}", path.display()));
            (format!("{name}_"), l.kernels)
        })
        .collect();
    ptx::module(&groups, t).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_example_passes_ptxas_for_every_target() {
    if !have_ptxas("every_example_passes_ptxas_for_every_target") {
        return;
    }
    let mut failures = Vec::new();
    let mut assembled = 0;
    for f in examples() {
        for t in ptx::Target::ALL {
            let m = module(&f, t);
            // The numeric contract: no approximations, no flushing, every float op rounds to nearest.
            for line in m.text.lines().map(str::trim) {
                let float_op =
                    ["add.f", "sub.f", "mul.f", "div.f", "fma.f", "sqrt.f"].iter().any(|p| line.starts_with(p));
                if line.contains(".approx") || line.contains(".ftz") || float_op {
                    failures.push(format!("{} {t}: `{line}` breaks the numeric contract", f.display()));
                }
            }
            match tk_toolchain::tools::ptxas::assemble(&m.text, t) {
                Ok(a) => {
                    assert!(!a.cubin.is_empty());
                    // Every device kernel is in the cubin's report and none spills.
                    let res = tk_toolchain::tools::ptxas::resources(&a.report);
                    for k in &m.kernels {
                        match res.iter().find(|r| r.0 == k.name) {
                            Some(r) if r.2 == 0 && r.3 == 0 => {}
                            Some(r) => failures.push(format!("{} {t} {}: spills ({r:?})", f.display(), k.name)),
                            None => failures.push(format!("{} {t}: no report for {}", f.display(), k.name)),
                        }
                    }
                    // tk's cubin reader finds what ptxas reported and what the launch passes.
                    match tk_abi::cubin::read(&a.cubin) {
                        Ok(c) => failures.extend(
                            cubin_matches(&c, &m, &res, t).into_iter().map(|e| format!("{} {t}: {e}", f.display())),
                        ),
                        Err(e) => failures.push(format!("{} {t}: tk's cubin reader: {e}", f.display())),
                    }
                    assembled += 1;
                }
                Err(e) => failures.push(format!("{} {t}: {e}", f.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(assembled >= 5 * 20, "only {assembled} modules");
}

/// What tk's cubin reader must find in a cubin ptxas made of module `m`: the SM, every kernel as
/// an entry with ptxas's register count, the shared memory tk declared, one 8-byte parameter per
/// buffer, dimension and error-slot pointer at consecutive offsets, and an EXIT instruction.
fn cubin_matches(
    c: &tk_abi::cubin::Cubin,
    m: &ptx::Module,
    report: &[(String, u32, u32, u32, u32)],
    t: ptx::Target,
) -> Vec<String> {
    let mut bad = Vec::new();
    if c.sm != t.sm {
        bad.push(format!("the cubin says sm_{}", c.sm));
    }
    for info in &m.kernels {
        let Some(k) = c.kernel(&info.name) else {
            bad.push(format!("{}: not in the cubin", info.name));
            continue;
        };
        let regs = report.iter().find(|r| r.0 == info.name).map(|r| r.1);
        let shared_ok =
            if t.sm < 90 { k.shared_bytes == info.shared_bytes } else { k.shared_bytes >= info.shared_bytes };
        let params_ok = k.params.len() > info.symbols.len()
            && k.param_bytes as usize == 8 * k.params.len()
            && k.params
                .iter()
                .enumerate()
                .all(|(i, p)| usize::from(p.ordinal) == i && usize::from(p.offset) == 8 * i && p.size == 8);
        if !k.entry || Some(k.registers) != regs || !shared_ok || !params_ok || k.exit_offsets.is_empty() {
            bad.push(format!(
                "{}: the reader found entry {}, {} registers (ptxas: {regs:?}), {} shared bytes (tk: {}), params {:?} ({} bytes), exits {:?}",
                info.name, k.entry, k.registers, k.shared_bytes, info.shared_bytes, k.params, k.param_bytes, k.exit_offsets
            ));
        }
    }
    bad
}

/// `tk disasm` on a cubin prints what tk's reader found for each kernel and its SASS; a cubin
/// for an architecture beyond tk's SASS tables gets the facts and an error naming nvdisasm; a
/// file that is no code object is refused by name.
#[test]
fn tk_disasm_reads_cubins_and_prints_their_sass() {
    let f = "abi/tests/fixtures/cubin/scale.sm_86.cuda13.cubin";
    let o = tk(&["disasm", f]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("cubin for sm_86 (V2 ELF layout)"), "{out}");
    assert!(
        out.contains(".text.scale") && out.contains("12 registers, 1 barriers, 512 bytes of shared memory"),
        "{out}"
    );
    assert!(out.contains("parameters: 24 bytes at c[0x0][0x160]: 0@0x0:8 1@0x8:8 2@0x10:4 3@0x14:4"), "{out}");
    for line in [
        "        /*00d0*/                   STS [R5.X4], R2 ;",
        "        /*00e0*/                   BAR.SYNC.DEFER_BLOCKING 0x0 ;",
        "        /*00f0*/               @P0 EXIT ;",
        "        /*0110*/                   VOTEU.ANY UR6, UPT, PT ;",
        "        /*01e0*/               @P0 RED.E.ADD.STRONG.GPU [R4.64], R9 ;",
        "        /*0200*/                   BRA `(.L_x_3);",
    ] {
        assert!(out.lines().any(|l| l == line), "no line `{line}` in\n{out}");
    }
    let o = tk(&["disasm", "abi/tests/fixtures/cubin/scale.sm_90.cuda13.cubin"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains(".text.scale"));
    assert!(err(&o).contains("cover sm_80, sm_86 and sm_89") && err(&o).contains("nvdisasm -c"), "{}", err(&o));
    let o = tk(&["disasm", f, "-k", "empty"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(".text.empty") && !out.contains(".text.scale"), "{out}");
    let o = tk(&["disasm", f, "-k", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("no kernel `nope`; it has: empty, scale"), "{}", err(&o));
    let o = tk(&["disasm", "examples/saxpy.tk"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a 64-bit ELF file"), "{}", err(&o));
    let o = tk(&["disasm", "no-such-file.cubin"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("cannot read no-such-file.cubin"), "{}", err(&o));
}

/// `tk disasm` prints every instruction and label of every example's cubin and of 8 random
/// programs of each kind, for sm_80, sm_86 and sm_89, and of the hand-written fixtures, exactly
/// as nvdisasm does, after collapsing whitespace; every word decodes into an instruction that
/// encodes back into the same 128 bits, control bits included.
#[test]
fn tk_disasm_matches_nvdisasm_on_every_example() {
    let test = "tk_disasm_matches_nvdisasm_on_every_example";
    if !have_ptxas(test) {
        return;
    }
    if let Err(e) = tk_toolchain::tools::ptxas::find(tk_toolchain::tools::ptxas::Tool::Nvdisasm) {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{test}: nvdisasm is required in CI: {e}");
        eprintln!("skipping {test}: {e}");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tk-sass-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The random programs, as files next to the output (one per kind, symbolic sizes, and the
    // matrix ones with their sizes written in too).
    let src = dir.join("random");
    std::fs::create_dir_all(&src).expect("a directory for the random programs");
    let mut files: Vec<String> = common::examples().iter().map(|p| p.display().to_string()).collect();
    {
        use common::random::{Kind, program};
        use proptest::strategy::{Strategy, ValueTree};
        let mut runner = proptest::test_runner::TestRunner::new(common::random::config());
        for i in 0..8 {
            let p = common::random::programs().new_tree(&mut runner).expect("a random program").current();
            let kinds = [
                (program(&p.mat, Kind::Mat, None), "mat"),
                (program(&p.mat, Kind::Mat, Some((p.n, p.m))), "matfixed"),
                (program(&p.row, Kind::Row, None), "row"),
                (program(&p.int.1, Kind::Int(p.int.0), None), "int"),
                (program(&p.float.1, Kind::Float(p.float.0), None), "float"),
            ];
            for (text, kind) in kinds {
                let f = src.join(format!("random{i}_{kind}.tk"));
                std::fs::write(&f, text).expect("a random program's file");
                files.push(f.display().to_string());
            }
        }
    }
    let mut args = vec!["build".to_string(), "--target".into(), "sm_80,sm_86,sm_89".into(), "--out".into()];
    args.push(dir.display().to_string());
    args.extend(files.iter().cloned());
    let o = tk(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let mut cubins: Vec<std::path::PathBuf> = std::fs::read_dir(&dir)
        .expect("the build's directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cubin"))
        .collect();
    cubins.sort();
    assert_eq!(cubins.len(), 3 * files.len());
    for f in ["sm_86.cuda12", "sm_86.cuda13", "sm_89.cuda12", "sm_89.cuda13"] {
        cubins.push(format!("abi/tests/fixtures/cubin/scale.{f}.cubin").into());
    }
    let (mut lines, mut words, mut failures) = (0, 0, Vec::new());
    // A few words of each opcode, by architecture, to edit field by field.
    let mut samples: std::collections::BTreeMap<(u32, u16), Vec<u128>> = Default::default();
    for f in &cubins {
        let bytes = std::fs::read(f).expect("the cubin");
        let want = common::sass_lines(&tk_toolchain::tools::ptxas::disassemble(&bytes).expect("nvdisasm"));
        let o = tk(&["disasm", f.to_str().expect("utf-8")]);
        if o.status.code() != Some(0) {
            failures.push(format!("{}: tk disasm failed: {}", f.display(), err(&o)));
            continue;
        }
        let got = common::sass_lines(&String::from_utf8_lossy(&o.stdout));
        lines += want.len();
        if let Some(k) = (0..want.len().max(got.len())).find(|&k| want.get(k) != got.get(k)) {
            failures.push(format!(
                "{}: line {k}: nvdisasm `{}`, tk `{}`",
                f.display(),
                want.get(k).map_or("(none)", String::as_str),
                got.get(k).map_or("(none)", String::as_str)
            ));
        }
        words += common::reencode(&f.display().to_string(), &bytes, &mut failures);
        if let Ok(c) = tk_abi::cubin::read(&bytes) {
            for k in &c.kernels {
                for chunk in k.code.chunks_exact(16) {
                    let w = u128::from_le_bytes(chunk.try_into().expect("16 bytes"));
                    let list = samples.entry((c.sm, (w & 0xfff) as u16)).or_default();
                    if list.len() < 3 && !list.contains(&w) {
                        list.push(w);
                    }
                }
            }
        }
    }
    let edited = edited_fields_read_as_nvdisasm_reads(&samples, &mut failures);
    assert!(failures.is_empty(), "{} of {} cubins differ:\n{}", failures.len(), cubins.len(), failures.join("\n"));
    eprintln!(
        "{} cubins, {lines} instruction and label lines equal to nvdisasm's, {words} words decoded and encoded back \
         bit-exactly; {edited} words with one field edited print as nvdisasm reads them",
        cubins.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Judges what the SASS encoder's fields mean: each sample word gets one register,
/// predicate, immediate or address-offset field changed through [`tk_isa::sass::Inst`] and
/// encoded again; nvdisasm reads the edited words (raw, per architecture) and must see the
/// text tk's printer gives them. An encoder whose field sits on the wrong bits, or a printer
/// that reads a field from the wrong bits, fails here. Returns how many words were judged.
fn edited_fields_read_as_nvdisasm_reads(
    samples: &std::collections::BTreeMap<(u32, u16), Vec<u128>>,
    failures: &mut Vec<String>,
) -> usize {
    use tk_isa::sass::{Inst, Kind};
    let mut judged = 0;
    for sm in tk_isa::sass::SMS {
        let mut edited: Vec<(u128, String)> = Vec::new();
        for w in samples.iter().filter(|((s, _), _)| *s == sm).flat_map(|(_, ws)| ws) {
            let Ok(inst) = Inst::decode(*w, sm) else { continue };
            if inst.fields.iter().any(|(f, _)| f.kind == Kind::Offset) {
                continue; // branch targets print as labels, which a raw listing numbers itself
            }
            for (k, (f, v)) in inst.fields.iter().enumerate() {
                let new = match f.kind {
                    Kind::Reg if *v != 255 => (v + 6) % 250,
                    Kind::UReg if *v != 63 => (v + 3) % 62,
                    Kind::Pred | Kind::UPred if *v != 7 => (v + 1) % 7,
                    Kind::Imm => v ^ 0x10,
                    Kind::AddrOffset => v ^ 0x10,
                    _ => continue,
                };
                let mut e = inst.clone();
                e.fields[k].1 = new;
                let Ok(word) = e.encode() else { continue };
                edited.push((word, format!("{} {}={new:#x}", inst.name, f.name)));
            }
        }
        let code: Vec<u8> = edited.iter().flat_map(|(w, _)| w.to_le_bytes()).collect();
        let listing = match tk_toolchain::tools::ptxas::disassemble_raw(&code, sm) {
            Ok(l) => l,
            Err(e) => {
                failures.push(format!("nvdisasm -b SM{sm}: {e}"));
                continue;
            }
        };
        let theirs: Vec<String> = common::sass_lines(&listing)
            .into_iter()
            .filter(|l| l.starts_with("/*"))
            .map(|l| l.split_once("*/").map_or(l.clone(), |(_, t)| t.trim().trim_end_matches(';').trim().to_string()))
            .collect();
        for (i, (w, what)) in edited.iter().enumerate() {
            let at = (i * 16) as u64;
            let ours = tk_isa::sass::print(*w, sm, at, &|t| Some(format!("{t:#x}"))).map(|t| t.to_string());
            let theirs = theirs.get(i).map(String::as_str);
            if ours.as_deref().map(|t| t.split_whitespace().collect::<Vec<_>>().join(" ")).as_deref() != theirs {
                failures.push(format!(
                    "sm_{sm} {what} ({w:#034x}): nvdisasm `{}`, tk `{}`",
                    theirs.unwrap_or("(none)"),
                    ours.as_deref().unwrap_or("(unknown)")
                ));
            }
            judged += 1;
        }
    }
    judged
}

/// The SASS of saxpy multiplies and adds separately: nothing contracts `a * x + y` into an fma.
#[test]
fn sass_keeps_multiply_and_add_apart() {
    if !have_ptxas("sass_keeps_multiply_and_add_apart") {
        return;
    }
    let o = tk(&["emit", "examples/saxpy.tk", "-k", "saxpy", "--stage", "sass", "--target", "sm_86"]);
    if o.status.code() == Some(4) {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "nvdisasm is required in CI: {}", err(&o));
        eprintln!("skipping sass_keeps_multiply_and_add_apart: {}", err(&o));
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let sass = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(sass.contains("FMUL") && sass.contains("FADD"), "{sass}");
    assert!(!sass.contains("FFMA"), "a contraction:\n{sass}");
}

#[test]
fn tk_build_writes_cubins_and_a_manifest() {
    if !have_ptxas("tk_build_writes_cubins_and_a_manifest") {
        return;
    }
    let dir = tmp_dir("build");
    let d = dir.display().to_string();
    let o = tk(&["build", "examples/matmul.tk", "--target", "sm_86,sm_90", "-o", &d, "--verbose"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    for t in ["sm_86", "sm_90"] {
        let cubin = std::fs::read(dir.join(format!("matmul.{t}.cubin"))).expect("cubin written");
        assert_eq!(&cubin[..4], b"\x7fELF", "a cubin is an ELF file");
        let ptx = std::fs::read_to_string(dir.join(format!("matmul.{t}.ptx"))).expect("ptx written");
        assert!(ptx.contains(&format!(".target {t}")), "{ptx}");
        assert!(stdout.contains(&format!("{t:<8} matmul_k0")), "--verbose lists the kernels:\n{stdout}");
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest")).expect("json");
    let file = &m["files"][0];
    assert_eq!(file["objects"]["sm_86"]["cubin"], "matmul.sm_86.cubin");
    let entries = file["entries"].as_array().expect("entries");
    let mm = entries.iter().find(|e| e["name"] == "matmul").expect("the matmul entry");
    assert_eq!(mm["inputs"][0]["shape"], serde_json::json!(["m", "k"]));
    let k0 = &mm["kernels"][0];
    assert_eq!(k0["name"], "matmul_k0");
    assert_eq!(k0["launch"]["kind"], "elements");
    let kinds: Vec<&str> = k0["params"].as_array().expect("params").iter().filter_map(|p| p["kind"].as_str()).collect();
    assert_eq!(kinds.first(), Some(&"buffer"));
    assert_eq!(kinds.last(), Some(&"error"));
    assert!(kinds.contains(&"dim"), "{kinds:?}");
}

#[test]
fn a_missing_ptxas_is_exit_code_4_with_the_fix() {
    let dir = tmp_dir("noptxas");
    let o = Command::new(env!("CARGO_BIN_EXE_tk"))
        .args(["build", "examples/saxpy.tk", "--target", "sm_86", "-o", &dir.display().to_string()])
        .env("TK_PTXAS", "/nonexistent/ptxas")
        .output()
        .expect("tk runs");
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    assert!(err(&o).contains("TK_PTXAS") && err(&o).contains("scripts/setup"), "{}", err(&o));
    assert!(std::fs::read_dir(&dir).expect("dir").next().is_none(), "nothing is written");
    let o = tk(&["build", "examples/saxpy.tk", "--target", "sm_75", "-o", &dir.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("sm_80, sm_86, sm_89, sm_90, sm_120"), "{}", err(&o));
}

/// `tk run` on the simulator and on the CPU write `.npy` files that agree under the numeric
/// contract, for every entry of every example.
#[test]
fn tk_run_on_the_simulator_agrees_with_the_cpu_for_every_example() {
    tk_run_agrees_with_the_cpu_for_every_example(env!("CARGO_BIN_EXE_tk"), "sim:sm_86");
}

// The whole differential suite on the first NVIDIA GPU, where there is one (skipped, saying so,
// elsewhere; `TK_REQUIRE_GPU=1` makes a missing GPU a failure, for GPU machines).
device_suite!(cuda, "cuda:0", sizes: [0, 1, 2, 3, 5, 7, 13, 17], runs: 300, tolerance: [1, 5, 33, 67], runs: 150);

/// Without an NVIDIA driver, `cuda:0` fails with a clear message and exit code 3, and `tk devices`
/// says there is no GPU.
#[test]
fn without_a_driver_cuda_devices_say_why_not() {
    if tk_runtime::devices::cuda::driver_present() {
        eprintln!("without_a_driver_cuda_devices_say_why_not: there is an NVIDIA driver here; nothing to check");
        return;
    }
    let o = tk(&["run", "examples/softmax.tk", "--arg", "x=rand:4x8", "--device", "cuda:0"]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("no NVIDIA driver") && err(&o).contains("sim:sm_86"), "{}", err(&o));
    let o = tk(&["devices"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("no NVIDIA driver"));
}

/// A runtime that loads precompiled code (a bundle) computes each kernel's launch information
/// from the kernel IR with `tk_abi::launch`; it must be what the PTX backend emitted.
#[test]
fn the_ptx_launch_information_is_tk_irs() {
    let t = ptx::Target { sm: 86 };
    for f in examples() {
        for (name, g) in compile(&f) {
            let l = tk_toolchain::target::lower(&g, Target::Nvidia(t), &Options::default()).expect("lowers");
            let m = ptx::module(&[(String::new(), l.kernels.clone())], t).expect("PTX");
            for (k, info) in l.kernels.iter().zip(&m.kernels) {
                let ir = tk_abi::launch::gpu_kernel(k, &info.name).expect("launch information");
                assert_eq!(ir.launch, info.launch, "{name}: {}", info.name);
                assert_eq!(ir.shared_bytes, info.shared_bytes, "{name}: {}", info.name);
                assert_eq!(ir.symbols, info.symbols, "{name}: {}", info.name);
                assert_eq!(ir.checks.len(), info.checks.len(), "{name}: {}", info.name);
            }
        }
    }
}
