//! The AMD backend end to end: every example's LLVM IR follows the numeric contract, LLVM 19
//! compiles it into code objects for every gfx11 target within tk's kernel ABI (no scratch, no
//! inputs beyond the kernarg pointer and the x ids), `tk build --target gfx1100` writes the code
//! object and its manifest, and the code-object reader rejects what the ABI does not allow.
//!
//! The code objects need the `amdgpu` feature (LLVM 19) and ld.lld: CI tests with both
//! (`scripts/test` builds with `--features amdgpu`); locally a test without them says so and
//! skips.

#[macro_use]
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tk_codegen::llvm;
use tk_toolchain::target::{Options, Target};
use tk_toolchain::tools::lld::{self, Descriptor};

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("NO_COLOR", "1").output().expect("tk runs")
}

/// `tk` with the environment variables `env`.
fn tk_env(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tk"));
    c.args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("tk runs")
}

/// The simulated GPU's synthetic firmware written out as a linux-firmware tree: what `tk` loads
/// (through `TK_FIRMWARE_DIR`) for a GPU behind the fake TinyGPU server, whose simulated GPU
/// runs the same blobs.
fn synthetic_firmware_dir(name: &str) -> PathBuf {
    let d = tmp_dir(&format!("firmware-{name}"));
    std::fs::create_dir_all(d.join("amdgpu")).expect("amdgpu/");
    for (n, b) in tk_sim::pcie::amd::synthetic(&tk_gpu::amd::discovery::navi31()) {
        std::fs::write(d.join("amdgpu").join(n), b).expect("a blob");
    }
    d
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tk-amd-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

/// Whether code objects can be made here (the `amdgpu` feature and ld.lld). In CI their absence
/// fails the test; locally the test is skipped with the reason.
fn can_build(test: &str) -> bool {
    device_ready("sim:gfx1100", test)
}

/// The LLVM module of every entry of a file, under the default options.
fn module(path: &Path, t: llvm::Target) -> llvm::Module {
    let groups: Vec<(String, Vec<tk_ir::kernel::Kernel>)> = compile(path)
        .into_iter()
        .map(|(name, g)| {
            let l = tk_toolchain::target::lower(&g, Target::Amd(t), &Options::default())
                .unwrap_or_else(|e| panic!("{}::{name}: {e}", path.display()));
            (format!("{name}_"), l.kernels)
        })
        .collect();
    llvm::module(&groups, t).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

const FAST_MATH: [&str; 8] = ["fast", "contract", "afn", "reassoc", "nnan", "ninf", "nsz", "arcp"];

/// Instructions of LLVM IR text that carry a fast-math flag.
fn fast_math_uses(ir: &str) -> Vec<String> {
    ir.lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.starts_with(';')
                && !l.starts_with("attributes")
                && l.split([' ', ',', '(']).any(|w| FAST_MATH.contains(&w))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn every_examples_llvm_ir_follows_the_numeric_contract() {
    let t: llvm::Target = "gfx1100".parse().expect("target");
    for f in examples() {
        let m = module(&f, t);
        assert!(m.ir.contains("target triple = \"amdgcn-amd-amdhsa\""), "{}", f.display());
        assert!(fast_math_uses(&m.ir).is_empty(), "{}: fast-math flags: {:?}", f.display(), fast_math_uses(&m.ir));
        let kernels = m.ir.matches("define amdgpu_kernel").count();
        assert_eq!(kernels, m.kernels.len(), "{}", f.display());
        assert_eq!(
            m.ir.matches("\"denormal-fp-math\"=\"ieee,ieee\"").count(),
            kernels,
            "{}: denormals kept",
            f.display()
        );
    }
}

#[test]
fn every_example_compiles_for_every_gfx11_target_within_the_kernel_abi() {
    if !can_build("every_example_compiles_for_every_gfx11_target_within_the_kernel_abi") {
        return;
    }
    let mut built = 0;
    for t in llvm::Target::ALL {
        for f in examples() {
            let m = module(&f, t);
            let co = lld::code_object(&m).unwrap_or_else(|e| panic!("{} for {t}: {e}", f.display()));
            assert_eq!(&co.hsaco[..4], b"\x7fELF", "a code object is an ELF file");
            assert_eq!(co.kernels.len(), m.kernels.len(), "{} for {t}: every kernel is in the object", f.display());
            for (k, info) in co.kernels.iter().zip(&m.kernels) {
                assert_eq!(k.name, info.name, "{}: kernels in module order", f.display());
                assert_eq!(k.wave_size, 32, "{}: wave32", k.name);
                // SGPR spills go to VGPR lanes; nothing may go to memory.
                assert_eq!((k.scratch_bytes, k.vgpr_spills), (0, 0), "{} on {t}: no scratch or VGPR spills", k.name);
                // The descriptor agrees with the metadata, and the kernarg segment is the ABI's.
                assert_eq!(k.descriptor.group_segment_fixed_size, k.lds_bytes, "{}", k.name);
                assert_eq!(u64::from(k.lds_bytes), info.shared_bytes, "{}: LDS as declared", k.name);
                let bufs =
                    m.ir.lines()
                        .find(|l| l.contains(&format!("@\"{}\"(", info.name)))
                        .map_or(0, |l| l.matches("ptr addrspace(1) %b").count());
                let args = bufs + info.symbols.len() + 2;
                assert_eq!(k.kernarg_bytes as usize, 8 * args, "{}: 8 bytes per kernel argument", k.name);
                assert_eq!(k.descriptor.kernarg_size, k.kernarg_bytes, "{}", k.name);
                assert!(k.descriptor.check_abi(&k.name).is_ok(), "{}", k.name);
            }
            built += 1;
        }
    }
    assert!(built >= 3 * 20, "only {built} code objects");
}

/// The instruction lines of `llvm-objdump -d`, without the encoding comments.
fn objdump_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('\t'))
        .map(|l| l.split("//").next().unwrap_or("").trim().to_string())
        .collect()
}

#[test]
fn the_emulators_decoder_agrees_with_llvm_objdump_on_every_instruction() {
    if !can_build("the_emulators_decoder_agrees_with_llvm_objdump_on_every_instruction") {
        return;
    }
    let t = llvm::Target::ALL[0];
    let (mut total, mut bad) = (0, Vec::new());
    for f in examples() {
        let co = lld::code_object(&module(&f, t)).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let llvm = objdump_lines(&lld::disassemble(&co.hsaco, t).unwrap_or_else(|e| panic!("objdump: {e}")));
        let emu = tk_sim::rdna3::CodeObject::parse(&co.hsaco).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(emu.insts.len(), llvm.len(), "{}: instruction counts", f.display());
        for (i, l) in emu.insts.iter().zip(&llvm) {
            total += 1;
            let ours = i.to_string();
            if &ours != l && !bad.iter().any(|(_, x): &(String, String)| x == l) {
                bad.push((ours, l.clone()));
            }
        }
    }
    let shown: Vec<String> = bad.iter().take(40).map(|(o, l)| format!("  emulator: {o}\n  objdump:  {l}")).collect();
    assert!(bad.is_empty(), "{} of {total} instructions differ, e.g.\n{}", bad.len(), shown.join("\n"));
    assert!(total > 50_000, "only {total} instructions");
}

/// `tk disasm` prints every instruction of every example's code object as llvm-objdump does,
/// and each kernel's label at the same address.
#[test]
fn tk_disasm_agrees_with_llvm_objdump() {
    if !can_build("tk_disasm_agrees_with_llvm_objdump") {
        return;
    }
    let t = llvm::Target::ALL[0];
    let dir = std::env::temp_dir().join(format!("tk-disasm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let labels =
        |text: &str| -> Vec<String> { text.lines().filter(|l| l.ends_with(">:")).map(str::to_string).collect() };
    let mut total = 0;
    for f in examples().into_iter().take(8) {
        let co = lld::code_object(&module(&f, t)).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let path = dir.join("k.hsaco");
        std::fs::write(&path, &co.hsaco).expect("write");
        let o = tk(&["disasm", path.to_str().expect("utf-8")]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", f.display(), err(&o));
        let ours = String::from_utf8_lossy(&o.stdout).into_owned();
        let llvm = lld::disassemble(&co.hsaco, t).unwrap_or_else(|e| panic!("objdump: {e}"));
        assert_eq!(objdump_lines(&ours), objdump_lines(&llvm), "{}", f.display());
        assert_eq!(labels(&ours), labels(&llvm), "{}", f.display());
        total += objdump_lines(&ours).len();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(total > 1000, "only {total} instructions");
}

/// `tk run examples/saxpy.tk -k saxpy` on 100 random elements on `device`, with the
/// environment variables `env`.
fn saxpy_env(device: &str, env: &[(&str, &Path)]) -> Output {
    tk_env(
        &[
            "run",
            "examples/saxpy.tk",
            "-k",
            "saxpy",
            "--arg",
            "a=2",
            "--arg",
            "x=rand:100",
            "--arg",
            "y=rand:100",
            "--device",
            device,
        ],
        env,
    )
}

/// `tk run examples/saxpy.tk -k saxpy` on 1000 random elements on `device`.
fn saxpy_on(device: &str) -> Output {
    tk(&[
        "run",
        "examples/saxpy.tk",
        "-k",
        "saxpy",
        "--arg",
        "a=2",
        "--arg",
        "x=rand:1000",
        "--arg",
        "y=rand:1000",
        "--device",
        device,
    ])
}

/// `tk run --device amd:sim,link-drop=N`: a link that drops during the boot or the run is exit 3
/// with the lost-link message, within 5 s; a link that outlives the run changes nothing; a bad
/// option is a usage error naming it.
#[test]
fn a_dropped_link_is_exit_3_within_5_seconds() {
    if !can_build("a_dropped_link_is_exit_3_within_5_seconds") {
        return;
    }
    let run = |dev: &str| {
        let t = std::time::Instant::now();
        let o = saxpy_on(dev);
        (o, t.elapsed())
    };
    for n in [0, 10, 700, 1400, 1424] {
        let (o, took) = run(&format!("amd:sim,link-drop={n}"));
        assert_eq!(o.status.code(), Some(3), "link-drop={n}: {}", err(&o));
        assert!(err(&o).contains("the GPU stopped answering: the Thunderbolt link dropped"), "{}", err(&o));
        assert!(took < std::time::Duration::from_secs(5), "link-drop={n} took {took:?}");
    }
    let (o, _) = run("amd:sim,link-drop=1000000000");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let (o, _) = run("amd:sim,hang-up");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("unknown option `hang-up` of amd:sim"), "{}", err(&o));
}

/// `TK_LOG=driver` prints one line per step of opening the GPU and the count of accesses the
/// boot took; without it the driver is silent.
#[test]
fn tk_log_driver_prints_the_steps() {
    let args = ["devices", "--verbose"];
    let o = Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("TK_LOG", "driver").output().expect("tk runs");
    let e = err(&o);
    let steps = [
        "driver: discovery: gfx1100: 9 IP blocks",
        "driver: firmware: 9 files",
        "driver: warm-check: ",
        "driver: soc: doorbell aperture enabled",
        "driver: gmc: VM context 0",
        "driver: ih: ",
        "driver: psp: bootloader: KDB, SPL (the key database again), SYS_DRV, SOS; the sOS runs",
        "driver: psp: KM ring at ",
        "driver: smu: SMU firmware ",
        "driver: gfx: RLC autoload complete",
        "driver: sdma: engine 0 queue 0",
        "driver: queue: compute queue",
    ];
    let mut at = 0;
    for step in steps {
        // Each step once, in this order.
        let found = e[at..].find(step).unwrap_or_else(|| panic!("{step} (after byte {at}):\n{e}"));
        at += found + step.len();
    }
    assert!(e.lines().any(|l| l.starts_with("driver: boot done after ") && l.ends_with(" round trips)")), "{e}");
    assert!(!err(&tk(&args)).contains("driver:"));
}

/// `TK_DRIVER_TRACE=FILE` records the transport calls of opening `amd:sim` (here through `tk
/// devices --verbose`), and the file replays against a fresh simulated GPU.
#[test]
fn tk_driver_trace_records_a_replayable_trace() {
    let path = std::env::temp_dir().join(format!("tk-driver-trace-{}.txt", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_tk"))
        .args(["devices", "--verbose"])
        .env("TK_DRIVER_TRACE", &path)
        .output()
        .expect("tk runs");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let text = std::fs::read_to_string(&path).expect("the trace");
    let _ = std::fs::remove_file(&path);
    assert!(text.starts_with("# tk driver trace 1: sim"), "{}", &text[..60.min(text.len())]);
    let sim = tk_sim::pcie::amd::SimGpu::new();
    let calls = tk_gpu::transport::trace::replay(&text, &sim, &|| sim.settle(std::time::Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(calls > 1000, "{calls} calls");
}

/// `tk devices --verbose` shows what the simulated GPU's IP discovery table says, its BARs and
/// its boot state; without `--verbose` the list stays one line per device.
#[test]
fn tk_devices_verbose_shows_ip_discovery() {
    let o = tk(&["devices", "--verbose"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("chip: gfx1100 (GC 11.0.0), from its IP discovery table"), "{out}");
    assert!(out.contains("PSP (MP0) #0 13.0.0") && out.contains("SDMA0 #0 6.0.0"), "{out}");
    assert!(out.contains("6 shader engines x 2 shader arrays x 4 WGPs, wave32, 64 KiB of LDS"), "{out}");
    assert!(out.contains("BARs: VRAM 1024 MiB"), "{out}");
    assert!(out.contains("boot: cold (no firmware was running; tk booted it)"), "{out}");
    let o = tk(&["devices"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("chip:"));
}

/// `amd:sim` boots with linux-firmware's real blobs when `TK_FIRMWARE_DIR` points at them (the
/// simulated card then takes exactly those bytes): the driver cuts the real headers (RS64 code
/// and stacks, SDMA threads, IMU, the RLC's lists) as the card expects. Missing there, the test
/// fails in CI and is skipped elsewhere, saying why.
#[test]
fn amd_sim_boots_with_linux_firmwares_blobs() {
    if !can_build("amd_sim_boots_with_linux_firmwares_blobs") {
        return;
    }
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/linux-firmware");
    if !d.join("amdgpu/psp_13_0_0_sos.bin").is_file() {
        let msg = format!("{} is missing: run scripts/setup", d.display());
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{msg}");
        eprintln!("skipping amd_sim_boots_with_linux_firmwares_blobs: {msg}");
        return;
    }
    let o = saxpy_env("amd:sim", &[("TK_FIRMWARE_DIR", &d), ("TK_LOG", Path::new("driver"))]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("driver: firmware: 9 files") && e.contains(&d.display().to_string()), "{e}");
    // The real sOS blob has no SOC, interface, debug or RAS drivers.
    assert!(e.contains("driver: psp: bootloader: KDB, SPL (the key database again), SYS_DRV, SOS"), "{e}");
}

/// `amd:sim,bar=256`: a VRAM BAR of 256 MiB (as behind many Thunderbolt enclosures) does not
/// reach the IP discovery table at the end of the 1 GiB of VRAM; the driver reads it through
/// MM_INDEX/MM_DATA and the run works.
#[test]
fn a_small_vram_bar_reads_discovery_indirectly() {
    if !can_build("a_small_vram_bar_reads_discovery_indirectly") {
        return;
    }
    let o = saxpy_env("amd:sim,bar=256", &[("TK_LOG", Path::new("driver"))]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    assert!(e.contains("through MM_INDEX/MM_DATA (the VRAM BAR has 256 MiB of 1024 MiB)"), "{e}");
}

/// A firmware directory without the blobs is exit 4, naming every missing file and where to
/// get it; nothing runs.
#[test]
fn missing_firmware_is_exit_4_naming_the_files() {
    let empty = tmp_dir("no-firmware");
    let o = saxpy_env("amd:sim", &[("TK_FIRMWARE_DIR", &empty)]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(4), "{e}");
    let sos = empty.join("amdgpu/psp_13_0_0_sos.bin");
    assert!(e.contains(&sos.display().to_string()) && e.contains("sdma_6_0_0.bin"), "{e}");
    assert!(e.contains("firmware-amd-graphics") && e.contains("TK_FIRMWARE_DIR"), "{e}");
}

/// `amd:sim,hang`: the queue takes a launch and never finishes it; the run ends with the
/// device-lost error (exit 3) once `TK_GPU_TIMEOUT_MS` passes, not a hang.
#[test]
fn a_hung_queue_is_exit_3_after_the_timeout() {
    if !can_build("a_hung_queue_is_exit_3_after_the_timeout") {
        return;
    }
    let t = std::time::Instant::now();
    let o = saxpy_env("amd:sim,hang", &[("TK_GPU_TIMEOUT_MS", Path::new("300"))]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("did not finish the launch within 300 ms"), "{}", err(&o));
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
}

/// `amd:pci=ADDRESS` for a function this machine does not have says so (exit 3), naming
/// `tk devices`; an address that is not an AMD GPU is refused as such.
#[test]
fn amd_pci_without_such_a_device_says_so() {
    let o = saxpy_on("amd:pci=0000:ff:1f.7");
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let e = err(&o);
    if cfg!(target_os = "linux") {
        assert!(e.contains("no PCI device 0000:ff:1f.7") && e.contains("tk devices"), "{e}");
    } else {
        assert!(e.contains("Linux PCIe transport"), "{e}");
    }
}

#[test]
fn the_optimised_ir_keeps_the_contract_and_no_private_memory() {
    if can_build("the_optimised_ir_keeps_the_contract_and_no_private_memory") {
        optimised_ir_checks();
    }
}

#[cfg(feature = "amdgpu")]
fn optimised_ir_checks() {
    for f in examples() {
        let m = module(&f, "gfx1100".parse().expect("target"));
        let ir = llvm::optimized_ir(&m).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(fast_math_uses(&ir).is_empty(), "{}: {:?}", f.display(), fast_math_uses(&ir));
        assert!(!ir.contains("alloca"), "{}: every private variable became a register", f.display());
    }
}

/// Without the feature there is no LLVM to optimise with (`can_build` is false).
#[cfg(not(feature = "amdgpu"))]
fn optimised_ir_checks() {}

#[test]
fn saxpy_multiplies_and_adds_without_fusing() {
    if !can_build("saxpy_multiplies_and_adds_without_fusing") {
        return;
    }
    let o = tk(&["emit", "examples/saxpy.tk", "-k", "saxpy", "--stage", "gcn", "--target", "gfx1100"]);
    if o.status.code() == Some(4) {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "llvm-objdump is required in CI: {}", err(&o));
        eprintln!("skipping the disassembly check: {}", err(&o));
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let gcn = String::from_utf8_lossy(&o.stdout);
    assert!(gcn.contains("v_mul_f32") && gcn.contains("v_add_f32"), "{gcn}");
    assert!(!gcn.contains("fma"), "no contraction without --fast-math:\n{gcn}");
}

#[test]
fn tk_build_writes_a_code_object_and_prints_its_registers() {
    if !can_build("tk_build_writes_a_code_object_and_prints_its_registers") {
        return;
    }
    let dir = tmp_dir("build");
    let d = dir.display().to_string();
    let o = tk(&["build", "examples/matmul.tk", "--target", "gfx1100", "-o", &d, "--verbose"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let hsaco = std::fs::read(dir.join("matmul.gfx1100.hsaco")).expect("code object written");
    let kernels = tk_abi::amd::read_metadata(&hsaco).expect("a readable code object");
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(stdout.contains("VGPRS") && stdout.contains("SGPRS"), "{stdout}");
    let k0 = kernels.iter().find(|k| k.name == "matmul_k0").expect("matmul_k0");
    let row =
        stdout.lines().find(|l| l.starts_with("gfx1100") && l.contains("matmul_k0 ")).expect("a row for matmul_k0");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[2], k0.vgprs.to_string(), "{row}");
    assert_eq!(cols[3], k0.sgprs.to_string(), "{row}");
    let ll = std::fs::read_to_string(dir.join("matmul.gfx1100.ll")).expect("IR written");
    assert!(ll.contains("amdgpu_kernel"));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).expect("manifest")).expect("json");
    let obj = &m["files"][0]["objects"]["gfx1100"];
    assert_eq!(obj["hsaco"], "matmul.gfx1100.hsaco");
    assert_eq!(obj["resources"]["matmul_k0"]["vgprs"], k0.vgprs);
    let mm = m["files"][0]["entries"].as_array().expect("entries").iter().find(|e| e["name"] == "matmul").cloned();
    assert_eq!(mm.expect("matmul")["kernels"][0]["launch"]["kind"], "elements");
}

#[test]
fn building_for_amd_without_ld_lld_is_exit_code_4_and_writes_nothing() {
    let dir = tmp_dir("nolld");
    let o = Command::new(env!("CARGO_BIN_EXE_tk"))
        .args(["build", "examples/saxpy.tk", "--target", "gfx1100", "-o", &dir.display().to_string()])
        .env("TK_LLD", "/nonexistent/ld.lld")
        .output()
        .expect("tk runs");
    assert_eq!(o.status.code(), Some(4), "{}", err(&o));
    let e = err(&o);
    if cfg!(feature = "amdgpu") {
        assert!(e.contains("TK_LLD") && e.contains("ld.lld"), "{e}");
    } else {
        assert!(e.contains("amdgpu") && e.contains("LLVM 19"), "{e}");
    }
    assert!(std::fs::read_dir(&dir).expect("dir").next().is_none(), "nothing is written");
    let o = tk(&["build", "examples/saxpy.tk", "--target", "gfx1030", "-o", &dir.display().to_string()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("gfx1100, gfx1101, gfx1102"), "{}", err(&o));
    let o = tk(&["emit", "examples/saxpy.tk", "--stage", "llvm", "--target", "sm_86"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("AMD target"), "{}", err(&o));
}

#[test]
fn tk_emit_prints_the_llvm_ir_in_every_build() {
    let o = tk(&["emit", "examples/softmax.tk", "--stage", "llvm", "--target", "gfx1100"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let ir = String::from_utf8_lossy(&o.stdout);
    assert!(ir.contains("define amdgpu_kernel void @\"softmax_rows_k0\""), "{ir}");
}

/// A kernel descriptor with the given properties, compute_pgm_rsrc2 and preload fields.
fn descriptor(props: u16, rsrc2: u32, preload: u16) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[8..12].copy_from_slice(&48u32.to_le_bytes());
    b[16..24].copy_from_slice(&(-256i64).to_le_bytes());
    b[52..56].copy_from_slice(&rsrc2.to_le_bytes());
    b[56..58].copy_from_slice(&props.to_le_bytes());
    b[58..60].copy_from_slice(&preload.to_le_bytes());
    b
}

#[test]
fn the_kernel_abi_check_names_what_a_code_object_asks_for() {
    const KERNARG: u16 = 1 << 3;
    const WAVE32: u16 = 1 << 10;
    const WG_X: u32 = 1 << 7;
    let ok = Descriptor::parse(&descriptor(KERNARG | WAVE32, WG_X, 0)).expect("64 bytes");
    assert_eq!((ok.kernarg_size, ok.kernel_code_entry_byte_offset), (48, -256));
    assert!(ok.check_abi("k").is_ok());
    let cases: [(u16, u32, u16, &str); 6] = [
        (KERNARG | WAVE32 | (1 << 1), WG_X, 0, "dispatch packet pointer"),
        (KERNARG | WAVE32 | (1 << 2), WG_X, 0, "queue pointer"),
        (KERNARG | WAVE32, WG_X | (1 << 8), 0, "workgroup id in y"),
        (KERNARG | WAVE32, WG_X | (2 << 11), 0, "work-item ids in x, y and z"),
        (KERNARG | WAVE32, WG_X | 1, 0, "private segment"),
        (KERNARG, WG_X, 0, "wave64"),
    ];
    for (props, rsrc2, preload, what) in cases {
        let d = Descriptor::parse(&descriptor(props, rsrc2, preload)).expect("64 bytes");
        let e = d.check_abi("k").expect_err(what);
        assert!(e.contains(what) && e.contains("`k`"), "{what}: {e}");
    }
    let pre = Descriptor::parse(&descriptor(KERNARG | WAVE32, WG_X, 1)).expect("64 bytes");
    assert!(pre.check_abi("k").expect_err("preload").contains("preloads"));
    assert!(Descriptor::parse(&[0u8; 63]).is_none(), "a short descriptor is rejected");
}

#[test]
fn corrupt_code_objects_are_errors_not_crashes() {
    assert!(tk_abi::amd::read_metadata(b"not an elf").is_err());
    assert!(tk_abi::amd::read_metadata(&[]).is_err());
    // A host object is not an AMDGPU code object.
    let me = std::fs::read(env!("CARGO_BIN_EXE_tk")).expect("the tk binary");
    assert!(tk_abi::amd::read_metadata(&me).expect_err("a host ELF").contains("AMDGPU"));
    if !can_build("corrupt_code_objects_are_errors_not_crashes") {
        return;
    }
    let co =
        lld::code_object(&module(Path::new("examples/saxpy.tk"), "gfx1100".parse().expect("target"))).expect("builds");
    for cut in [16, co.hsaco.len() / 2, co.hsaco.len() - 1] {
        assert!(tk_abi::amd::read_metadata(&co.hsaco[..cut]).is_err(), "a code object cut at {cut} bytes is rejected");
    }
}

const EMU: &str = "sim:gfx1100";

device_suite!(rdna3_emulator, EMU);

#[test]
fn tk_run_on_the_rdna3_emulator_agrees_with_the_cpu_for_every_example() {
    if can_build("tk_run_on_the_rdna3_emulator_agrees_with_the_cpu_for_every_example") {
        tk_run_agrees_with_the_cpu_for_every_example(env!("CARGO_BIN_EXE_tk"), EMU);
    }
}

/// `amd:sim`: the driver (page tables, PM4 queue, doorbell, fence) in front of the simulated
/// PCIe GPU, whose command processor runs the kernels on the RDNA3 emulator.
const DRIVER: &str = "amd:sim";

// Every launch goes through the page tables, the PM4 queue and the command processor: fewer runs.
device_suite!(driver, DRIVER, sizes: [5], runs: 40, tolerance: [5], runs: 20);

#[test]
fn tk_run_through_the_driver_agrees_with_the_cpu_for_every_example() {
    if can_build("tk_run_through_the_driver_agrees_with_the_cpu_for_every_example") {
        tk_run_agrees_with_the_cpu_for_every_example(env!("CARGO_BIN_EXE_tk"), DRIVER);
    }
}

/// A GPU tk booted before (`warm`: only the queues are set up again) and one whose firmware
/// another driver left running (`left-running`: a mode-1 reset, then the whole boot) run every
/// example as the CPU does.
#[test]
fn tk_run_on_a_warm_and_a_left_running_gpu_agrees_with_the_cpu_for_every_example() {
    if can_build("tk_run_on_a_warm_and_a_left_running_gpu_agrees_with_the_cpu_for_every_example") {
        for dev in ["amd:sim,warm", "amd:sim,left-running"] {
            tk_run_agrees_with_the_cpu_for_every_example(env!("CARGO_BIN_EXE_tk"), dev);
        }
    }
}

#[test]
fn softmax_through_the_driver_agrees_with_the_cpu() {
    if !can_build("softmax_through_the_driver_agrees_with_the_cpu") {
        return;
    }
    softmax_agrees_with_the_cpu(DRIVER, &[]);
}

/// The command over the TinyGPU socket protocol: `tk run` talks to a fake server that
/// runs in this test process.
#[cfg(unix)]
#[test]
fn softmax_over_the_tinygpu_server_transport_agrees_with_the_cpu() {
    if !can_build("softmax_over_the_tinygpu_server_transport_agrees_with_the_cpu") {
        return;
    }
    let server = common::tinygpu_server("run");
    let fw = synthetic_firmware_dir("softmax");
    softmax_agrees_with_the_cpu(&format!("amd:tinygpu={}", server.path.display()), &[("TK_FIRMWARE_DIR", &fw)]);
}

fn softmax_agrees_with_the_cpu(device: &str, env: &[(&str, &Path)]) {
    let mut outs = Vec::new();
    for dev in ["cpu", device] {
        let dir = tmp_dir(&format!("softmax-{}", dev.replace([':', '/', '='], "_")));
        let d = dir.display().to_string();
        let o = tk_env(&["run", "examples/softmax.tk", "--device", dev, "--arg", "x=rand:64x100", "--out", &d], env);
        assert_eq!(o.status.code(), Some(0), "{dev}: {}", err(&o));
        let a = tk_runtime::HostArray::read_npy(&dir.join("out.npy"), tk_runtime::DType::F32).expect("an output");
        outs.push(a);
    }
    assert_eq!(outs[0].len(), 6400);
    for i in 0..outs[0].len() {
        let (x, y) = (outs[0].get_f64(i), outs[1].get_f64(i));
        assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-6), "element {i}: cpu {x}, {device} {y}");
    }
}

#[cfg(unix)]
#[test]
fn every_example_matches_the_interpreter_over_the_tinygpu_server_transport() {
    if !can_build("every_example_matches_the_interpreter_over_the_tinygpu_server_transport") {
        return;
    }
    let server = common::tinygpu_server("examples");
    let (name, dev) = common::tinygpu_device(&server);
    assert_eq!(dev.boot_state(), tk_gpu::amd::boot::BootState::Cold);
    every_example_matches_the_interpreter_on(std::sync::Arc::new(dev), &name, &[5], 40);
}

/// The random programs over the socket: 8 of each kind (24 on the in-process `amd:sim`), on a
/// GPU booted cold behind the fake server.
#[cfg(unix)]
#[test]
fn random_programs_match_the_interpreter_over_the_tinygpu_server_transport() {
    if !can_build("random_programs_match_the_interpreter_over_the_tinygpu_server_transport") {
        return;
    }
    let server = common::tinygpu_server("random");
    let (name, dev) = common::tinygpu_device(&server);
    register_device(&name, std::sync::Arc::new(dev));
    let config = proptest::test_runner::Config { cases: 8, ..common::random::config() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    runner.run(&common::random::programs(), |p| common::random::on(&name, &p)).unwrap_or_else(|e| panic!("{e}"));
}

#[cfg(unix)]
#[test]
fn tk_devices_lists_a_gpu_behind_a_tinygpu_server() {
    let server = common::tinygpu_server("devices");
    let o = Command::new(env!("CARGO_BIN_EXE_tk"))
        .arg("devices")
        .env("TK_TINYGPU_SOCKET", &server.path)
        .output()
        .expect("tk runs");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&format!("amd:tinygpu={}", server.path.display())) && out.contains("PCI 1002:744c"), "{out}");
    assert!(out.contains("amd:sim"), "{out}");
}
