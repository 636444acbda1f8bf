//! The userspace AMD driver over the TinyGPU.app socket protocol, against tk-sim's TinyGPU server
//! (a simulated GPU behind the real protocol).
#![cfg(unix)]

use std::path::PathBuf;
use std::time::{Duration, Instant};
use tk_gpu::transport::tinygpu::TinyGpu;
use tk_runtime::device::Device;
use tk_runtime::devices::amd::AmdDevice;
use tk_sim::pcie::tinygpu_server::FakeServer;

fn sock(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tk-tg-{}-{name}.sock", std::process::id()))
}

/// Boots the simulated GPU behind the server, cold, with the synthetic firmware it runs (a
/// user's driver reads the same files from linux-firmware).
fn open(s: &FakeServer) -> AmdDevice {
    let t = TinyGpu::connect(&s.path).expect("connects");
    assert_eq!(t.probe().expect("probe"), (0x1002, 0x744c));
    let fw = tk_gpu::amd::firmware::FirmwareSet::from_files(
        tk_sim::pcie::amd::synthetic(&tk_gpu::amd::discovery::navi31()),
        "synthetic",
    )
    .expect("firmware");
    AmdDevice::open_with_firmware("amd:tinygpu", Box::new(t), tk_abi::launch::AmdTarget::ALL[0], Some(fw))
        .expect("opens")
}

/// A cold boot over the socket (discovery, firmware through shared memory, PSP, SMU, MEC,
/// SDMA, the queue) in a bounded number of requests: docs/driver.md reports the count.
#[test]
fn a_cold_boot_over_the_socket_takes_a_bounded_number_of_round_trips() {
    let s = FakeServer::start(&sock("boot")).expect("server");
    let dev = open(&s);
    assert_eq!(dev.boot_state(), tk_gpu::amd::boot::BootState::Cold);
    let trips = dev.round_trips();
    eprintln!("a cold boot took {trips} round trips");
    assert!(trips < 200_000, "{trips} round trips to boot");
}

#[test]
fn uploading_a_mebibyte_takes_a_constant_number_of_round_trips() {
    let s = FakeServer::start(&sock("upload")).expect("server");
    let dev = open(&s);
    let q = dev.queue();
    let buf = dev.alloc(1 << 20).expect("alloc");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + (i >> 11)) as u8).collect();
    let before = dev.round_trips();
    dev.write(&q, &buf, &data).expect("upload");
    let trips = dev.round_trips() - before;
    // The data goes through shared memory and the GPU's DMA: the doorbell (two 32-bit
    // writes) and a few fault checks, not one request per dword.
    eprintln!("uploading 1 MiB took {trips} round trips");
    assert!(trips <= 8, "{trips} round trips for 1 MiB");
    let mut back = vec![0u8; 1 << 20];
    dev.read(&q, &buf, &mut back).expect("download");
    assert!(back == data, "the data comes back");
}

/// A launch costs 2 round trips besides the checks made while it runs that the server and the
/// GPU still answer (two every 20 ms): the doorbell, as two 32-bit writes. The ring, the kernel
/// arguments, the error slots, the fence and the interrupt ring are in shared system memory.
#[test]
fn a_launch_takes_two_round_trips() {
    use tk_gpu::amd::device::Dispatch;
    use tk_gpu::amd::regs::{PTE_EXECUTABLE, PTE_READABLE, PTE_WRITEABLE};
    let s = FakeServer::start(&sock("launch")).expect("server");
    let dev = open(&s);
    let gpu = dev.gpu();
    let code = gpu.alloc(4096, PTE_READABLE | PTE_WRITEABLE | PTE_EXECUTABLE).expect("code");
    // s_endpgm: a kernel that ends at once (RDNA3's SOPP encoding).
    gpu.upload(code.va(), &0xBFB0_0000u32.to_le_bytes()).expect("upload");
    let d = Dispatch { code_va: code.va(), rsrc: [0, 0, 0], lds_bytes: 0, kernargs: &[0; 16], blocks: 1, threads: 32 };
    let mut errors = [0u8; 16];
    gpu.dispatch(&d, &mut errors).expect("the first launch");
    let before = dev.round_trips();
    let start = Instant::now();
    gpu.dispatch(&d, &mut errors).expect("a launch");
    let trips = dev.round_trips() - before;
    let checks = (start.elapsed().as_millis() / 20) as u64;
    eprintln!("a launch took {trips} round trips ({checks} checks that the device answers were due)");
    assert!(trips >= 2 && trips <= 2 + 2 * checks, "{trips} round trips for a launch");
}

#[test]
fn a_server_that_goes_away_is_an_error_not_a_hang() {
    let s = FakeServer::start(&sock("gone")).expect("server");
    let dev = open(&s);
    let q = dev.queue();
    let buf = dev.alloc(4096).expect("alloc");
    s.disconnect();
    let start = Instant::now();
    let e = dev.write(&q, &buf, &[1; 4096]).expect_err("the server is gone");
    assert!(start.elapsed() < Duration::from_secs(30), "no hang");
    let m = e.to_string();
    assert!(m.contains("closed the connection") || m.contains("broke"), "{m}");
    // The device is lost from now on.
    assert!(dev.alloc(16).is_err());
}

#[test]
fn a_gpu_has_one_user_at_a_time() {
    let s = FakeServer::start(&sock("busy")).expect("server");
    let first = TinyGpu::connect(&s.path).expect("connects");
    let e = TinyGpu::connect(&s.path).err().expect("busy");
    assert!(e.contains("busy"), "{e}");
    drop(first);
    TinyGpu::connect(&s.path).expect("free again");
}
