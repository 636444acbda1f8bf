//! The NVIDIA userspace driver (Ampere GA10x and Ada AD10x), first steps of bring-up:
//! identifying the chip from its boot registers ([`chip`]), reading the card's VBIOS to find
//! the FWSEC firmware ([`vbios`]), and running FWSEC-FRTS on the GSP falcon, which sets up the
//! write-protected region WPR2 ([`falcon`]). The GSP boot, the RPCs, the page tables and the
//! channels follow (docs/driver.md says what is built).
//!
//! Register offsets and layouts come from NVIDIA's open-gpu-kernel-modules
//! (`src/common/inc/swref/published/nv_ref.h`, `.../turing/tu102/dev_fb.h`, `dev_bus.h`) and
//! Linux's nova-core (`drivers/gpu/nova-core/regs.rs`); each constant names its source.

pub mod channel;
pub mod chip;
pub mod device;
pub mod falcon;
pub mod firmware;
pub mod gsp;
pub mod mmu;
pub mod qmd;
pub mod rm;
pub mod rpc;
pub mod sysmem;
pub mod vbios;

/// The register BAR (BAR0: 16 MiB of registers, with the VBIOS window and the usermode
/// doorbell inside it; ../shared/notes/bringup.md).
pub const BAR_MMIO: u8 = 0;
/// The VRAM aperture (BAR1).
pub const BAR_VRAM: u8 = 1;

use crate::transport::{Transport, link_gone};
use chip::{Chip, ChipError};
use firmware::NvFirmware;
use vbios::{Vbios, VbiosError};

/// Why bring-up stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvError {
    #[error(transparent)]
    Chip(#[from] ChipError),
    #[error("reading the VBIOS through the PROM window: {0}")]
    Vbios(#[from] VbiosError),
    #[error("{step}: {detail}")]
    Step { step: &'static str, detail: String },
    /// Missing or malformed firmware files (a missing one is named with where to get it).
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
}

/// What the first bring-up steps found: the chip, whether an earlier GSP had to be reset, the
/// usable VRAM, the VBIOS and where FWSEC-FRTS will put its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub chip: Chip,
    pub was_running: bool,
    pub vram: u64,
    pub vbios: Vbios,
    /// Where the VGA workspace starts (the FRTS region lies below it).
    pub vga_workspace: u64,
    pub frts_addr: u64,
}

/// NV_PDISP_VGA_WORKSPACE_BASE (nova-core regs.rs): bit 3 valid, bits 31:8 the workspace's
/// VRAM address >> 16.
pub const VGA_WORKSPACE_BASE: u64 = 0x62_5f04;

/// The bound on every wait: `TK_GPU_TIMEOUT_MS`, else 20 s.
pub fn gpu_timeout() -> std::time::Duration {
    crate::amd::link::default_timeout()
}

fn log(step: &str, what: impl FnOnce() -> String) {
    crate::amd::link::log(step, what);
}

/// The first steps of bringing up an NVIDIA GPU (`TK_LOG=driver` names them): `detect` (the
/// chip from NV_PMC_BOOT_42; Blackwell and older chips refused by name), `reset` (a GSP left
/// running from an earlier driver is stopped by a function reset, which must clear WPR2), and
/// `vbios` (the GPU's boot firmware has finished; the usable VRAM; the VBIOS read through the
/// PROM window and its FWSEC firmware found; the FRTS region placed below the VGA workspace).
pub fn probe(t: &dyn Transport) -> Result<Probe, NvError> {
    probe_within(t, crate::amd::link::default_timeout())
}

/// [`probe`], with `timeout` bounding the wait for the GPU's boot firmware.
pub fn probe_within(t: &dyn Transport, timeout: std::time::Duration) -> Result<Probe, NvError> {
    let chip = chip::detect(t)?;
    log("detect", || format!("{} ({:?}, chip id {:#x}) at {}", chip.name, chip.arch, chip.id, t.name()));
    let was_running = chip::gsp_left_running(t)?;
    if was_running {
        log("reset", || "WPR2 is set: a GSP from an earlier driver runs; resetting the function".into());
        if let Err(e) = t.reset() {
            return Err(if link_gone(t) {
                ChipError::LinkLost.into()
            } else {
                NvError::Step { step: "reset", detail: e }
            });
        }
        if chip::gsp_left_running(t)? {
            return Err(NvError::Step {
                step: "reset",
                detail: "WPR2 is still set after a function reset; power-cycle the enclosure".into(),
            });
        }
    }
    // The boot firmware runs after power-on and after a function reset: wait for it.
    let deadline = std::time::Instant::now() + timeout;
    while !chip::gfw_done(t)? {
        if std::time::Instant::now() >= deadline {
            let v = chip::read(t, chip::GFW_BOOT_PROGRESS)?;
            return Err(ChipError::GfwNotDone(v).into());
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let vram = chip::usable_vram(t)?;
    // The images' headers say how far the VBIOS goes: read that much of the window, no more
    // (over the TinyGPU socket each 32-bit word is a round trip).
    let mut rom: Vec<u8> = Vec::new();
    let mut want = 16 << 10;
    loop {
        let have = rom.len();
        rom.resize(want, 0);
        t.read_bytes(BAR_MMIO, chip::PROM + have as u64, &mut rom[have..])
            .map_err(|e| NvError::Step { step: "vbios", detail: e })?;
        // All ones where the link dropped during the read: checked whatever the bytes say.
        if link_gone(t) {
            return Err(ChipError::LinkLost.into());
        }
        want = match vbios::extent(&rom) {
            Ok(end) if end <= rom.len() => break,
            Ok(end) => end.next_multiple_of(4).min(chip::PROM_BYTES),
            Err(VbiosError::Truncated { .. }) => (rom.len() * 2).min(chip::PROM_BYTES),
            Err(_) => break, // the parser names what is wrong
        };
        if want <= rom.len() {
            break;
        }
    }
    let vbios = vbios::parse(&rom)?;
    let ws = chip::read(t, VGA_WORKSPACE_BASE)?;
    let too_small = || NvError::Step {
        step: "vbios",
        detail: format!("the GPU reports {vram} bytes of usable VRAM, too little for the FRTS region"),
    };
    let vga_workspace = vbios::vga_workspace(vram, Some(ws)).ok_or_else(too_small)?;
    let frts_addr = vbios::frts_addr(vram, Some(ws)).ok_or_else(too_small)?;
    log("vbios", || {
        format!(
            "{} images, FWSEC v{} ({} signatures, {} + {} bytes), {} MiB of VRAM, FRTS at {frts_addr:#x}",
            vbios.images.len(),
            vbios.fwsec.desc.version,
            vbios.fwsec.signatures.len(),
            vbios.fwsec.imem.len(),
            vbios.fwsec.dmem.len(),
            vram >> 20
        )
    });
    Ok(Probe { chip, was_running, vram, vbios, vga_workspace, frts_addr })
}

/// The firmware a boot uses: `firmware` if given, else the device's own (a simulated GPU's)
/// unless `TK_FIRMWARE_DIR` is set, else the linux-firmware tree's (`firmware::dir`).
pub fn firmware(t: &dyn Transport, chip: &Chip, given: Option<NvFirmware>) -> Result<NvFirmware, NvError> {
    let fw = match given {
        Some(f) => f,
        None => match t.firmware().filter(|_| std::env::var_os("TK_FIRMWARE_DIR").is_none()) {
            Some(files) => NvFirmware::from_files(&files, chip, "the simulated GPU's synthetic firmware")?,
            None => NvFirmware::load(&firmware::dir(), chip)?,
        },
    };
    log("firmware", || {
        format!(
            "GSP-RM {} ({} KiB with booter_load and the bootloader) from {}",
            firmware::VERSION,
            fw.bytes() >> 10,
            fw.origin
        )
    });
    Ok(fw)
}

/// What a boot leaves running: the probe's findings and GSP-RM's system memory.
pub struct Boot {
    pub probe: Probe,
    pub gsp: gsp::GspMem,
    pub rpc: rpc::Rpc,
    pub init: rpc::InitReport,
    pub objects: rm::Objects,
    pub tables: mmu::PageTables,
}

/// Bring-up as far as it is built: [`probe`], `firmware` (the GSP-RM files found and checked),
/// `fwsec-frts` (FWSEC from the VBIOS runs on the GSP falcon and sets up the FRTS region,
/// WPR2), `booter` (booter_load on SEC2 loads GSP-RM and starts its RISC-V core) and
/// `gsp-init` (GSP-RM's CPU-sequencer requests served until it reports GSP_INIT_DONE), `rpc`
/// (the driver's client, device and subdevice) and `vaspace` (a VA space over the driver's own
/// page tables).
pub fn boot(t: &dyn Transport) -> Result<Boot, NvError> {
    boot_within(t, None, crate::amd::link::default_timeout())
}

/// [`boot`], with the firmware given (else found as [`firmware`] says) and `timeout`
/// bounding every wait.
pub fn boot_within(t: &dyn Transport, fw: Option<NvFirmware>, timeout: std::time::Duration) -> Result<Boot, NvError> {
    let p = probe_within(t, timeout)?;
    let fw = firmware(t, &p.chip, fw)?;
    falcon::fwsec_frts(t, &p.vbios.fwsec, p.frts_addr, timeout)?;
    log("fwsec-frts", || format!("WPR2 set: the 1 MiB FRTS region at {:#x}", p.frts_addr));
    let mut rpc = rpc::Rpc::new(timeout);
    let gsp = gsp::boot(t, &fw, (p.vram, p.vga_workspace, p.frts_addr), &mut rpc, timeout)?;
    log("booter", || {
        let l = &gsp.layout;
        format!(
            "booter_load ran on SEC2; GSP-RM runs from WPR2 {:#x}..{:#x} (heap {} MiB at {:#x})",
            l.wpr_start,
            l.wpr_end,
            l.heap_size >> 20,
            l.heap
        )
    });
    let init = rpc::wait_init_done(t, &gsp.shared, &mut rpc, timeout)?;
    log("gsp-init", || {
        format!(
            "GSP_INIT_DONE after {} CPU sequence(s) of {} commands{}",
            init.sequences,
            init.commands,
            if init.events.is_empty() { String::new() } else { format!(" and events {:x?}", init.events) }
        )
    });
    let objects = rm::objects(t, &gsp.shared, &mut rpc)?;
    log("rpc", || {
        format!(
            "client {:#x}, device {:#x}, subdevice {:#x}; the compute engine is on runlist {}",
            objects.client, objects.device, objects.subdevice, objects.gr_runlist
        )
    });
    let tables = rm::vaspace(t, &gsp.shared, &mut rpc, &objects)?;
    log("vaspace", || format!("the driver's page tables, root at bus address {:#x}, given to GSP-RM", tables.root_bus));
    Ok(Boot { probe: p, gsp, rpc, init, objects, tables })
}
