//! `nv:sim`: tk's NVIDIA driver (GSP boot, RPCs, its page tables, GPFIFO channels, QMD launches)
//! in front of the simulated NVIDIA PCIe GPU, whose host engine runs ptxas's cubins on the SASS
//! emulator. The differential suite runs every example, the random programs and (through
//! `common::SUITE_DEVICES`) the ONNX cases on it.

#[macro_use]
mod common;

/// The simulated GA102 through the whole driver.
const DRIVER: &str = "nv:sim";

// Every launch goes through the pushbuffer, the host engine and the MMU: fewer runs.
device_suite!(driver, DRIVER, sizes: [5], runs: 40, tolerance: [5], runs: 20);

use common::{err, tk_env, tmp_dir};
use std::path::{Path, PathBuf};
use std::process::Output;

fn saxpy_env(device: &str, env: &[(&str, &Path)]) -> Output {
    let args =
        ["run", "examples/saxpy.tk", "-k", "saxpy", "--arg", "a=2", "--arg", "x=rand:100", "--arg", "y=rand:100"];
    let mut a = args.to_vec();
    a.extend(["--device", device]);
    tk_env(&a, env)
}

/// Whether cubins can be made here (ptxas); in CI its absence fails the test.
fn can_build(test: &str) -> bool {
    common::device_ready(DRIVER, test)
}

/// An Ada GPU (`chip=ad102`, sm_89 code) and a GPU whose GSP an earlier driver left running
/// (`left-running`: WPR2 set, so a function reset first, then the whole boot) run every
/// example as the CPU does, through `tk run`.
#[test]
fn tk_run_on_ada_and_on_a_left_running_gpu_agrees_with_the_cpu_for_every_example() {
    if can_build("tk_run_on_ada_and_on_a_left_running_gpu_agrees_with_the_cpu_for_every_example") {
        for dev in ["nv:sim,chip=ad102", "nv:sim,left-running"] {
            common::tk_run_agrees_with_the_cpu_for_every_example(env!("CARGO_BIN_EXE_tk"), dev);
        }
    }
}

/// Blackwell is detected and refused by name (its GSP boots through the FSP), exit 3.
#[test]
fn blackwell_is_refused_with_a_clear_message() {
    let o = saxpy_env("nv:sim,chip=gb202", &[]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("GB202") && e.contains("FSP"), "{e}");
}

/// `TK_LOG=driver` names every step of the NVIDIA bring-up once, in order, and the count of
/// accesses the boot took.
#[test]
fn tk_log_driver_prints_the_nvidia_steps() {
    if !can_build("tk_log_driver_prints_the_nvidia_steps") {
        return;
    }
    let o = saxpy_env("nv:sim,left-running", &[("TK_LOG", Path::new("driver"))]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(0), "{e}");
    let mut at = 0;
    for step in
        ["detect", "reset", "vbios", "firmware", "fwsec-frts", "booter", "gsp-init", "rpc", "vaspace", "channels"]
    {
        let s = format!("driver: {step}: ");
        let found = e[at..].find(&s).unwrap_or_else(|| panic!("{s} (after byte {at}):\n{e}"));
        at += found + s.len();
    }
    assert!(e.lines().any(|l| l.starts_with("driver: boot done after ") && l.ends_with(" round trips)")), "{e}");
}

/// `nv:sim,link-drop=N`: wherever the link drops (the VBIOS read, FWSEC, the booter, GSP-RM's
/// start, the RPCs, the channels, the uploads, the launch), the run ends with the lost-link
/// message, exit 3, within 5 s; a link that outlives the run changes nothing; a bad option is
/// a usage error naming it.
#[test]
fn a_dropped_link_is_exit_3_within_5_seconds() {
    if !can_build("a_dropped_link_is_exit_3_within_5_seconds") {
        return;
    }
    // The boot's accesses, from the log.
    let o = saxpy_env(DRIVER, &[("TK_LOG", Path::new("driver"))]);
    let e = err(&o);
    let boot: u64 = e
        .lines()
        .find_map(|l| l.strip_prefix("driver: boot done after ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no access count in:\n{e}"));
    for n in [0, 10, boot / 8, boot / 4, boot / 2, 3 * boot / 4, boot - 40, boot - 10, boot + 1, boot + 4, boot + 8] {
        let t = std::time::Instant::now();
        let o = saxpy_env(&format!("nv:sim,link-drop={n}"), &[]);
        let took = t.elapsed();
        assert_eq!(o.status.code(), Some(3), "link-drop={n}: {}", err(&o));
        assert!(
            err(&o).contains("the GPU stopped answering: the Thunderbolt link dropped"),
            "link-drop={n}: {}",
            err(&o)
        );
        assert!(took < std::time::Duration::from_secs(5), "link-drop={n} took {took:?}");
    }
    let o = saxpy_env("nv:sim,link-drop=1000000000", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = saxpy_env("nv:sim,hang-up", &[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("unknown option `hang-up` of nv:sim"), "{}", err(&o));
}

/// `nv:sim,hang`: the launch never finishes; the run ends with the device-lost error (exit 3)
/// once `TK_GPU_TIMEOUT_MS` passes, not a hang.
#[test]
fn a_hung_gpu_is_exit_3_after_the_timeout() {
    if !can_build("a_hung_gpu_is_exit_3_after_the_timeout") {
        return;
    }
    let t = std::time::Instant::now();
    let o = saxpy_env("nv:sim,hang", &[("TK_GPU_TIMEOUT_MS", Path::new("300"))]);
    assert_eq!(o.status.code(), Some(3), "{}", err(&o));
    assert!(err(&o).contains("did not finish the launch within 300 ms"), "{}", err(&o));
    assert!(t.elapsed() < std::time::Duration::from_secs(10), "{:?}", t.elapsed());
}

/// A firmware directory without GSP-RM's files is exit 4, naming each missing file with its
/// path in linux-firmware; with the files there (the simulated GPU's, written out as
/// linux-firmware lays them out) the run works.
#[test]
fn missing_firmware_is_exit_4_naming_the_files() {
    let empty = tmp_dir("no-firmware");
    let o = saxpy_env(DRIVER, &[("TK_FIRMWARE_DIR", &empty)]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(4), "{e}");
    for f in ["nvidia/ga102/gsp/booter_load-570.144.bin", "bootloader-570.144.bin", "gsp-570.144.bin"] {
        assert!(e.contains(f), "{f}: {e}");
    }
    assert!(e.contains(&empty.display().to_string()) && e.contains("TK_FIRMWARE_DIR"), "{e}");
    if !can_build("missing_firmware_is_exit_4_naming_the_files") {
        return;
    }
    let d = tmp_dir("firmware");
    for (name, bytes) in tk_sim::pcie::nv::firmware::files("ga102").expect("files") {
        let p = d.join(name);
        std::fs::create_dir_all(p.parent().expect("a directory")).expect("mkdir");
        std::fs::write(p, bytes).expect("writes");
    }
    let o = saxpy_env(DRIVER, &[("TK_FIRMWARE_DIR", &d), ("TK_LOG", Path::new("driver"))]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert!(err(&o).contains(&format!("from {}", d.display())), "{}", err(&o));
}

/// The driver over the TinyGPU.app socket protocol, against tk-sim's TinyGPU server with a
/// simulated GA102 behind it.
#[cfg(unix)]
mod tinygpu {
    use super::*;
    use std::time::Instant;
    use tk_gpu::transport::tinygpu::TinyGpu;
    use tk_runtime::device::Device;
    use tk_runtime::devices::nv::NvDevice;
    use tk_sim::pcie::tinygpu_server::FakeServer;

    fn sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tk-nvtg-{}-{name}.sock", std::process::id()))
    }

    /// Boots the GPU behind the server with the firmware it runs (a user's driver reads the
    /// same files from linux-firmware).
    fn open(s: &FakeServer) -> NvDevice {
        let t = TinyGpu::connect(&s.path).expect("connects");
        assert_eq!(t.probe().expect("probe"), (0x10de, 0x2204));
        let files = tk_sim::pcie::nv::firmware::files("ga102").expect("files");
        let chip = tk_gpu::nv::chip::Chip { arch: tk_gpu::nv::chip::Arch::Ampere, id: 0x172, name: "GA102" };
        let fw = tk_gpu::nv::firmware::NvFirmware::from_files(&files, &chip, "synthetic").expect("firmware");
        NvDevice::open_with_firmware("nv:tinygpu", Box::new(t), Some(fw)).expect("boots over the socket")
    }

    /// The boot over the socket reads only the VBIOS's images, not the whole PROM window.
    #[test]
    fn a_boot_over_the_socket_takes_a_bounded_number_of_round_trips() {
        let s = FakeServer::start_nv(&sock("boot"), Default::default()).expect("server");
        let dev = open(&s);
        let trips = dev.gpu().round_trips();
        eprintln!("a boot over the socket took {trips} round trips");
        assert!(trips < 20_000, "{trips} round trips to boot");
    }

    /// The data goes through shared memory and the copy engine: the doorbell and the checks
    /// made while it runs that the GPU still answers, not one request per word.
    #[test]
    fn uploading_a_mebibyte_takes_a_constant_number_of_round_trips() {
        let s = FakeServer::start_nv(&sock("upload"), Default::default()).expect("server");
        let dev = open(&s);
        let q = dev.queue();
        let buf = dev.alloc(1 << 20).expect("alloc");
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + (i >> 11)) as u8).collect();
        let before = dev.gpu().round_trips();
        let start = Instant::now();
        dev.write(&q, &buf, &data).expect("upload");
        let trips = dev.gpu().round_trips() - before;
        let checks = (start.elapsed().as_millis() / 20) as u64;
        eprintln!("uploading 1 MiB took {trips} round trips");
        assert!(trips <= 1 + checks, "{trips} round trips for 1 MiB");
        let mut back = vec![0u8; 1 << 20];
        dev.read(&q, &buf, &mut back).expect("download");
        assert!(back == data, "the data comes back");
    }

    #[test]
    fn softmax_over_the_socket_agrees_with_the_cpu() {
        if !can_build("softmax_over_the_socket_agrees_with_the_cpu") {
            return;
        }
        let s = FakeServer::start_nv(&sock("run"), Default::default()).expect("server");
        let d = tmp_dir("tinygpu-firmware");
        for (name, bytes) in tk_sim::pcie::nv::firmware::files("ga102").expect("files") {
            let p = d.join(name);
            std::fs::create_dir_all(p.parent().expect("a directory")).expect("mkdir");
            std::fs::write(p, bytes).expect("writes");
        }
        let mut outs = Vec::new();
        for dev in ["cpu".to_string(), format!("nv:tinygpu={}", s.path.display())] {
            let dir = tmp_dir(&format!("softmax-{}", dev.replace([':', '/', '='], "_")));
            let out = dir.display().to_string();
            let args = ["run", "examples/softmax.tk", "--device", &dev, "--arg", "x=rand:64x100", "--out", &out];
            let o = tk_env(&args, &[("TK_FIRMWARE_DIR", &d)]);
            assert_eq!(o.status.code(), Some(0), "{dev}: {}", err(&o));
            outs.push(
                tk_runtime::HostArray::read_npy(&dir.join("out.npy"), tk_runtime::DType::F32).expect("an output"),
            );
        }
        assert_eq!(outs[0].len(), 6400);
        for i in 0..outs[0].len() {
            let (x, y) = (outs[0].get_f64(i), outs[1].get_f64(i));
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1e-6), "element {i}: cpu {x}, nv:tinygpu {y}");
        }
    }

    /// Every example over the socket, bit-identical to the interpreter, on a GPU booted behind
    /// the fake server.
    #[test]
    fn every_example_matches_the_interpreter_over_the_socket() {
        if !can_build("every_example_matches_the_interpreter_over_the_socket") {
            return;
        }
        let s = FakeServer::start_nv(&sock("examples"), Default::default()).expect("server");
        let name = format!("nv:tinygpu={}", s.path.display());
        common::every_example_matches_the_interpreter_on(std::sync::Arc::new(open(&s)), &name, &[5], 40);
    }

    /// The random programs over the socket: 8 of each kind.
    #[test]
    fn random_programs_match_the_interpreter_over_the_socket() {
        if !can_build("random_programs_match_the_interpreter_over_the_socket") {
            return;
        }
        let s = FakeServer::start_nv(&sock("random"), Default::default()).expect("server");
        let name = format!("nv:tinygpu={}", s.path.display());
        common::register_device(&name, std::sync::Arc::new(open(&s)));
        let config = proptest::test_runner::Config { cases: 8, ..common::random::config() };
        let mut runner = proptest::test_runner::TestRunner::new(config);
        runner.run(&common::random::programs(), |p| common::random::on(&name, &p)).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Cubins damaged anywhere (and cut short) are refused or load, never a panic: the cubin reader
/// the device loads with, and the emulator's decoding of what it finds.
#[test]
fn corrupt_cubins_never_panic() {
    use proptest::strategy::{Strategy, ValueTree};
    if !can_build("corrupt_cubins_never_panic") {
        return;
    }
    let t = tk_codegen::ptx::Target { sm: 86 };
    let groups: Vec<(String, Vec<tk_ir::kernel::Kernel>)> = common::compile(Path::new("examples/softmax.tk"))
        .into_iter()
        .map(|(name, g)| {
            let l = tk_toolchain::target::lower(&g, tk_toolchain::target::Target::Nvidia(t), &Default::default())
                .expect("lowers");
            (format!("{name}_"), l.kernels)
        })
        .collect();
    let m = tk_codegen::ptx::module(&groups, t).expect("PTX");
    let cubin = tk_toolchain::tools::ptxas::assemble(&m.text, t).expect("ptxas").cubin;
    let n = cubin.len();
    let edits = proptest::collection::vec((0..n, proptest::num::u8::ANY), 1..12);
    let cases = (edits, proptest::option::of(0..n));
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config::with_cases(600));
    for _ in 0..600 {
        let (edits, cut) = cases.new_tree(&mut runner).expect("a case").current();
        let mut c = cubin.clone();
        for (at, v) in edits {
            c[at] = v;
        }
        if let Some(k) = cut {
            c.truncate(k);
        }
        if let Ok(r) = tk_abi::cubin::read(&c) {
            for k in r.kernels.iter().filter(|k| k.entry) {
                let _ = tk_sim::sass::Kernel::from_code(&k.name, &k.code, 86, k.registers, k.shared_bytes);
                let _ = tk_sim::sass::code_end(&k.code, 86);
            }
        }
    }
}

/// `TK_DRIVER_TRACE=FILE tk devices --verbose` boots both simulated GPUs: the AMD one's trace
/// goes to FILE, the NVIDIA one's to FILE.2, and that one replays against a fresh `nv:sim`.
#[test]
fn tk_devices_verbose_traces_each_gpu_to_its_own_file() {
    let path = std::env::temp_dir().join(format!("tk-nv-devices-trace-{}.txt", std::process::id()));
    let o = tk_env(&["devices", "--verbose"], &[("TK_DRIVER_TRACE", &path)]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("nv:sim") && out.contains("GSP-RM 570.144 runs in WPR2"), "{out}");
    let second = PathBuf::from(format!("{}.2", path.display()));
    let text = std::fs::read_to_string(&second).expect("the second trace");
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&second);
    assert!(text.starts_with("# tk driver trace 1: nv:sim"), "{}", &text[..60.min(text.len())]);
    let sim = tk_sim::pcie::nv::NvSimGpu::new(Default::default());
    let calls = tk_gpu::transport::trace::replay(&text, &sim, &|| Ok(())).unwrap_or_else(|e| panic!("{e}"));
    assert!(calls > 200, "{calls} calls");
}
