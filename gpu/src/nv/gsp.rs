//! The `booter` step: GSP-RM laid out for the booter and started. In system memory the driver
//! builds GSP-RM's image (page by page, behind a three-level radix table), its signature, the
//! RISC-V bootloader, the libos arguments (log buffers and GSP-RM's own arguments with the
//! message queues) and the WPR metadata, which also says where everything goes in VRAM (the FB
//! layout below the FRTS region). Then the GSP falcon is reset into RISC-V mode with the libos
//! arguments in its mailboxes, booter_load runs on SEC2 with the WPR metadata's address in its
//! mailboxes, and GSP-RM's RISC-V core must be running afterwards.
//!
//! Layouts and values: open-gpu-kernel-modules 570.144 `gsp_fw_wpr_meta.h`,
//! `kernel_gsp_tu102.c` (`kgspCalculateFbLayout_TU102`, `kgspBootstrap_TU102`),
//! `libos_init_args.h`, `gsp_init_args.h`, `message_queue_priv.h`; nova-core `fb.rs`,
//! `gsp/fw.rs`, `gsp/boot.rs`, `firmware/booter.rs`; nouveau `r535.c`, `r570/gsp.c`
//! (docs/nvidia-facts.md, "GSP-RM", sections 1-3, and "The falcons", section 5). Where they
//! disagree tk follows nova-core: the heap clamped to [88, 280) MiB, the booter's signature
//! chosen as `fuse_ver - fls(fuse)` (the last one when no fuse is blown), no clock-boost flag,
//! three log buffers.

use super::falcon::{
    BCR_CTRL, BCR_CTRL_RISCV, BROM_CURR_UCODE_ID, BROM_ENGIDMASK, BROM_PARAADDR0, GSP, Load, MAILBOX0, MAILBOX1,
    MOD_SEL, MOD_SEL_RSA3K, OS, RISCV_ACTIVE, RISCV_CPUCTL, SEC2, SEC2_FUSE_VERSION,
};
use super::firmware::NvFirmware;
use super::rpc::{
    CMDQ_OFFSET, FN_GSP_SET_SYSTEM_INFO, FN_SET_REGISTRY, QUEUE_BYTES, QUEUE_ENTRIES, QUEUE_ENTRY_BYTES,
    QUEUE_ENTRY_OFFSET, Rpc, SHARED_BYTES, registry, rm_args, system_info,
};
use super::sysmem::{Buffer, PAGE, Paged, radix3};
use super::vbios::SIGNATURE_BYTES;
use super::{BAR_MMIO, NvError, chip};
use crate::transport::Transport;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;

/// `GspFwWprMeta`: its magic, revision and size.
pub const WPR_META_MAGIC: u64 = 0xdc3a_ae21_371a_60b3;
pub const WPR_META_REVISION: u64 = 1;
pub const WPR_META_BYTES: usize = 256;
/// The non-WPR heap below WPR2 (GA10x/AD10x: `kgspGetNonWprHeapSize` = 1 MiB).
pub const NON_WPR_HEAP_BYTES: u64 = MIB;
/// The FRTS region's size.
pub const FRTS_BYTES: u64 = MIB;
/// The GSP-RM heap's bounds (570.144, libos3 on bare metal).
pub const MIN_HEAP: u64 = 88 * MIB;
pub const MAX_HEAP: u64 = 280 * MIB;

/// Where GSP-RM's pieces go in VRAM, from the top down: the VGA workspace, the FRTS region
/// (which FWSEC-FRTS set up), the bootloader, GSP-RM's image, its heap, the 1 MiB that holds
/// the WPR metadata (WPR2 starts there), and the non-WPR heap below it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FbLayout {
    pub fb_size: u64,
    pub vga_workspace: u64,
    pub wpr_end: u64,
    pub frts: u64,
    pub boot_bin: u64,
    pub gsp_fw: u64,
    pub heap: u64,
    pub heap_size: u64,
    pub wpr_start: u64,
    pub non_wpr_heap: u64,
}

/// GSP-RM's heap for `fb_size` bytes of VRAM (`_kgspCalculateFwHeapSize`): the OS carveout
/// (22 MiB), the base (8 MiB), 96 KiB per GiB of VRAM and 96 MiB of client allocations, within
/// [`MIN_HEAP`] and [`MAX_HEAP`].
pub fn heap_size(fb_size: u64) -> u64 {
    let gib = fb_size.div_ceil(1 << 30);
    let h = 22 * MIB + 8 * MIB + (96 * 1024 * gib).next_multiple_of(MIB) + 96 * MIB;
    h.clamp(MIN_HEAP, MAX_HEAP - 1)
}

impl FbLayout {
    /// The layout for VRAM of `fb_size` bytes whose VGA workspace starts at `vga_workspace`,
    /// with a bootloader of `bootloader` bytes and GSP-RM's image of `elf` bytes; None when it
    /// does not fit.
    pub fn new(fb_size: u64, vga_workspace: u64, bootloader: u64, elf: u64) -> Option<FbLayout> {
        let down = |v: u64, a: u64| v & !(a - 1);
        let wpr_end = down(vga_workspace, 128 << 10);
        let frts = wpr_end.checked_sub(FRTS_BYTES)?;
        let boot_bin = down(frts.checked_sub(bootloader)?, 4096);
        let gsp_fw = down(boot_bin.checked_sub(elf)?, 64 << 10);
        let heap = down(gsp_fw.checked_sub(heap_size(fb_size))?, MIB);
        let wpr_start = heap.checked_sub(MIB)?;
        let non_wpr_heap = wpr_start.checked_sub(NON_WPR_HEAP_BYTES)?;
        Some(FbLayout {
            fb_size,
            vga_workspace,
            wpr_end,
            frts,
            boot_bin,
            gsp_fw,
            heap,
            heap_size: down(gsp_fw - heap, MIB),
            wpr_start,
            non_wpr_heap,
        })
    }
}

/// `GspFwWprMeta`, the fields the driver fills (the rest is zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WprMeta {
    pub magic: u64,
    pub revision: u64,
    pub radix3_elf: u64,
    pub elf_size: u64,
    pub bootloader: u64,
    pub bootloader_size: u64,
    pub bootloader_code_offset: u64,
    pub bootloader_data_offset: u64,
    pub bootloader_manifest_offset: u64,
    pub signature: u64,
    pub signature_size: u64,
    pub rsvd_start: u64,
    pub non_wpr_heap_offset: u64,
    pub non_wpr_heap_size: u64,
    pub wpr_start: u64,
    pub heap_offset: u64,
    pub heap_size: u64,
    pub gsp_fw_offset: u64,
    pub boot_bin_offset: u64,
    pub frts_offset: u64,
    pub frts_size: u64,
    pub wpr_end: u64,
    pub fb_size: u64,
    pub vga_workspace_offset: u64,
    pub vga_workspace_size: u64,
}

impl WprMeta {
    /// The fields in their order from offset 0 (25 u64s, up to `vgaWorkspaceSize` at 0xC0).
    fn fields(&mut self) -> [&mut u64; 25] {
        [
            &mut self.magic,
            &mut self.revision,
            &mut self.radix3_elf,
            &mut self.elf_size,
            &mut self.bootloader,
            &mut self.bootloader_size,
            &mut self.bootloader_code_offset,
            &mut self.bootloader_data_offset,
            &mut self.bootloader_manifest_offset,
            &mut self.signature,
            &mut self.signature_size,
            &mut self.rsvd_start,
            &mut self.non_wpr_heap_offset,
            &mut self.non_wpr_heap_size,
            &mut self.wpr_start,
            &mut self.heap_offset,
            &mut self.heap_size,
            &mut self.gsp_fw_offset,
            &mut self.boot_bin_offset,
            &mut self.frts_offset,
            &mut self.frts_size,
            &mut self.wpr_end,
            &mut self.fb_size,
            &mut self.vga_workspace_offset,
            &mut self.vga_workspace_size,
        ]
    }

    pub fn to_bytes(mut self) -> [u8; WPR_META_BYTES] {
        let mut b = [0u8; WPR_META_BYTES];
        for (k, v) in self.fields().into_iter().enumerate() {
            b[8 * k..8 * k + 8].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    /// Reads the fields back (for the simulated booter); None for fewer than 256 bytes.
    pub fn from_bytes(b: &[u8]) -> Option<WprMeta> {
        if b.len() < WPR_META_BYTES {
            return None;
        }
        let mut m = WprMeta::default();
        for (k, v) in m.fields().into_iter().enumerate() {
            *v = u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().ok()?);
        }
        Some(m)
    }
}

/// One libos memory region (`LibosMemoryRegionInitArgument`, 32 bytes): the name packed into
/// a u64 (big-endian letters), the address and size, contiguous (1) in system memory (1).
pub const LIBOS_REGION_BYTES: usize = 32;
pub const LIBOS_CONTIGUOUS: u8 = 1;
pub const LIBOS_SYSMEM: u8 = 1;
/// The log buffers' size and the RMARGS region's.
pub const LOG_BYTES: usize = 64 << 10;
pub const RMARGS_BYTES: usize = 0x1000;

/// A libos region's name as its id8.
pub fn id8(name: &str) -> u64 {
    name.bytes().take(8).fold(0, |id, c| id << 8 | u64::from(c))
}

/// The system memory GSP-RM runs with; it must live as long as the GPU runs.
pub struct GspMem {
    pub layout: FbLayout,
    pub meta: Buffer,
    pub radix: Buffer,
    pub elf: Paged,
    pub bootloader: Buffer,
    pub signature: Buffer,
    pub libos: Buffer,
    pub logs: Vec<Buffer>,
    pub rmargs: Buffer,
    pub shared: Paged,
}

fn fail(step: &'static str, detail: String) -> NvError {
    NvError::Step { step, detail }
}

fn wr(t: &dyn Transport, off: u64, v: u32) -> Result<(), NvError> {
    t.write32(BAR_MMIO, off, v).map_err(|e| fail("booter", e))
}

fn split(v: u64) -> (u32, u32) {
    (v as u32, (v >> 32) as u32)
}

impl GspMem {
    /// Builds everything GSP-RM is handed in system memory.
    pub fn new(t: &dyn Transport, fw: &NvFirmware, layout: FbLayout) -> Result<GspMem, NvError> {
        let step = "booter";
        let elf = Paged::new(t, &fw.gsp.image, step, "GSP-RM's image")?;
        let radix = radix3(t, &elf.pages, step)?;
        let bl = &fw.bootloader;
        let bootloader = Buffer::new(t, bl.image.len().next_multiple_of(PAGE), step, "the GSP bootloader")?;
        bootloader.write(0, &bl.image);
        let sig_len = fw.gsp.signature.len().next_multiple_of(256);
        let signature = Buffer::new(t, sig_len.next_multiple_of(PAGE), step, "GSP-RM's signature")?;
        signature.write(0, &fw.gsp.signature);
        // The message queues: the page table over the buffer itself, and the command queue's
        // header (the status queue's is GSP-RM's to write).
        let mut init = vec![0u8; CMDQ_OFFSET + QUEUE_ENTRY_OFFSET];
        let shared = Paged::new(t, &vec![0u8; SHARED_BYTES], step, "the message queues")?;
        for (k, pte) in shared.pages.iter().enumerate() {
            init[8 * k..8 * k + 8].copy_from_slice(&pte.to_le_bytes());
        }
        let hdr = [0, QUEUE_BYTES as u32, QUEUE_ENTRY_BYTES as u32, QUEUE_ENTRIES, 0, 1, 0x20, 0x1000];
        for (k, v) in hdr.iter().enumerate() {
            init[CMDQ_OFFSET + 4 * k..CMDQ_OFFSET + 4 * k + 4].copy_from_slice(&v.to_le_bytes());
        }
        shared.write(0, &init);
        let rmargs = Buffer::new(t, RMARGS_BYTES, step, "GSP-RM's arguments")?;
        rmargs.write(0, &rm_args(shared.pages[0]));
        // The log buffers: a put pointer, then the buffer's own page addresses.
        let mut logs = Vec::new();
        let libos = Buffer::new(t, PAGE, step, "the libos arguments")?;
        for (k, name) in ["LOGINIT", "LOGINTR", "LOGRM", "RMARGS"].iter().enumerate() {
            let (pa, size) = if *name == "RMARGS" {
                (rmargs.bus(0), RMARGS_BYTES)
            } else {
                let log = Buffer::new(t, LOG_BYTES, step, "a GSP log buffer")?;
                let ptes: Vec<u8> = (0..LOG_BYTES / PAGE).flat_map(|p| log.bus(p * PAGE).to_le_bytes()).collect();
                log.write(8, &ptes);
                let pa = log.bus(0);
                logs.push(log);
                (pa, LOG_BYTES)
            };
            let mut r = [0u8; LIBOS_REGION_BYTES];
            r[0..8].copy_from_slice(&id8(name).to_le_bytes());
            r[8..16].copy_from_slice(&pa.to_le_bytes());
            r[16..24].copy_from_slice(&(size as u64).to_le_bytes());
            r[24] = LIBOS_CONTIGUOUS;
            r[25] = LIBOS_SYSMEM;
            libos.write(k * LIBOS_REGION_BYTES, &r);
        }
        let l = layout;
        let meta = WprMeta {
            magic: WPR_META_MAGIC,
            revision: WPR_META_REVISION,
            radix3_elf: radix.bus(0),
            elf_size: fw.gsp.image.len() as u64,
            bootloader: bootloader.bus(0),
            bootloader_size: bl.image.len() as u64,
            bootloader_code_offset: u64::from(bl.code_offset),
            bootloader_data_offset: u64::from(bl.data_offset),
            bootloader_manifest_offset: u64::from(bl.manifest_offset),
            signature: signature.bus(0),
            signature_size: sig_len as u64,
            rsvd_start: l.non_wpr_heap,
            non_wpr_heap_offset: l.non_wpr_heap,
            non_wpr_heap_size: NON_WPR_HEAP_BYTES,
            wpr_start: l.wpr_start,
            heap_offset: l.heap,
            heap_size: l.heap_size,
            gsp_fw_offset: l.gsp_fw,
            boot_bin_offset: l.boot_bin,
            frts_offset: l.frts,
            frts_size: FRTS_BYTES,
            wpr_end: l.wpr_end,
            fb_size: l.fb_size,
            vga_workspace_offset: l.vga_workspace,
            vga_workspace_size: l.fb_size - l.vga_workspace,
        };
        let meta_buf = Buffer::new(t, PAGE, step, "the WPR metadata")?;
        meta_buf.write(0, &meta.to_bytes());
        Ok(GspMem { layout, meta: meta_buf, radix, elf, bootloader, signature, libos, logs, rmargs, shared })
    }
}

/// The booter signature the SEC2 fuses select (nova-core `firmware/booter.rs`, nouveau
/// `ga100_flcn_fw_signature`): with fuse version register `fuse`, `fuse_ver - fls(fuse)`,
/// or the last signature when no fuse bit is set.
pub fn booter_signature(fuse: u32, fuse_ver: u32, count: usize) -> Option<usize> {
    let r = 32 - (fuse & 0xffff).leading_zeros();
    let k = if r == 0 { count.checked_sub(1)? } else { fuse_ver.checked_sub(r)? as usize };
    (k < count).then_some(k)
}

/// Runs the `booter` step after FWSEC-FRTS: lays out GSP-RM ([`GspMem`]), puts the GSP falcon
/// into RISC-V mode with the libos arguments in its mailboxes, runs booter_load on SEC2 with
/// the WPR metadata, writes the bootloader's version to the GSP's OS register and waits for
/// GSP-RM's core to run.
pub fn boot(
    t: &dyn Transport,
    fw: &NvFirmware,
    vram: (u64, u64, u64),
    rpc: &mut Rpc,
    timeout: Duration,
) -> Result<GspMem, NvError> {
    boot_with(t, fw, vram, rpc, timeout, &|_, _| {})
}

/// [`boot`], with `before` run on the queues just before the booter (tests put their own
/// messages there).
pub fn boot_with(
    t: &dyn Transport,
    fw: &NvFirmware,
    (fb_size, vga_workspace, frts): (u64, u64, u64),
    rpc: &mut Rpc,
    timeout: Duration,
    before: &dyn Fn(&mut Rpc, &GspMem),
) -> Result<GspMem, NvError> {
    let step = "booter";
    let layout = FbLayout::new(fb_size, vga_workspace, fw.bootloader.image.len() as u64, fw.gsp.image.len() as u64)
        .filter(|l| l.frts == frts)
        .ok_or_else(|| {
            fail(step, format!("GSP-RM ({} bytes) and its heap do not fit below {frts:#x} in VRAM", fw.gsp.image.len()))
        })?;
    let mem = GspMem::new(t, fw, layout)?;
    // The first two messages wait in the command queue for GSP-RM to start.
    rpc.send(t, &mem.shared, FN_GSP_SET_SYSTEM_INFO, &system_info(t)?)?;
    rpc.send(t, &mem.shared, FN_SET_REGISTRY, &registry())?;
    before(rpc, &mem);
    // The GSP falcon: reset, RISC-V selected, the libos arguments' address in its mailboxes.
    GSP.reset(t, timeout)?;
    wr(t, GSP.base + BCR_CTRL, BCR_CTRL_RISCV)?;
    let (lo, hi) = split(mem.libos.bus(0));
    wr(t, GSP.base + MAILBOX0, lo)?;
    wr(t, GSP.base + MAILBOX1, hi)?;
    // booter_load: the signature the fuses select patched into its data.
    let b = &fw.booter;
    let mut image = b.image.clone();
    if b.ucode_id == 0 || b.ucode_id > 16 || b.engine_id_mask & 1 == 0 {
        return Err(fail(
            step,
            format!("booter_load is not for SEC2 (ucode id {}, engine mask {:#x})", b.ucode_id, b.engine_id_mask),
        ));
    }
    let fuse = chip::read(t, SEC2_FUSE_VERSION + 4 * u64::from(b.ucode_id - 1))?;
    let k = booter_signature(fuse, b.fuse_ver, b.signatures.len()).ok_or_else(|| {
        fail(
            step,
            format!(
                "SEC2's fuses (version register {fuse:#x}) select none of booter_load's {} signatures (fuse version {})",
                b.signatures.len(),
                b.fuse_ver
            ),
        )
    })?;
    let at = b.patch_loc as usize;
    let ld = &b.load;
    let sig_dmem = b.patch_loc.checked_sub(ld.os_data_offset);
    match (image.get_mut(at..at + SIGNATURE_BYTES), &b.signatures[k], sig_dmem) {
        (Some(slot), sig, Some(_)) if sig.len() == SIGNATURE_BYTES => slot.copy_from_slice(sig),
        _ => return Err(fail(step, format!("booter_load's signature place {at:#x} is not inside its data"))),
    }
    let buf = Buffer::new(t, image.len().next_multiple_of(PAGE), step, "booter_load")?;
    buf.write(0, &image);
    SEC2.reset(t, timeout)?;
    let imem = Load { src: ld.app_offset as usize, len: ld.app_size as usize, dst: 0 };
    let dmem = Load { src: ld.os_data_offset as usize, len: ld.os_data_size as usize, dst: 0 };
    SEC2.dma_load(t, &buf.sys, imem, dmem, timeout)?;
    wr(t, SEC2.base + BROM_PARAADDR0, sig_dmem.unwrap_or(0))?;
    wr(t, SEC2.base + BROM_ENGIDMASK, b.engine_id_mask)?;
    wr(t, SEC2.base + BROM_CURR_UCODE_ID, b.ucode_id)?;
    wr(t, SEC2.base + MOD_SEL, MOD_SEL_RSA3K)?;
    let (m0, m1) = SEC2.run(t, ld.app_offset, Some(split(mem.meta.bus(0))), timeout)?;
    if m0 != 0 {
        let why = t.fault().map(|f| format!(": {f}")).unwrap_or_default();
        return Err(fail(step, format!("booter_load failed on SEC2 (mailbox 0 {m0:#x}, mailbox 1 {m1:#x}){why}")));
    }
    wr(t, GSP.base + OS, fw.bootloader.app_version)?;
    let deadline = Instant::now() + timeout;
    while chip::read(t, GSP.base + RISCV_CPUCTL)? & RISCV_ACTIVE == 0 {
        if Instant::now() >= deadline {
            return Err(fail(
                step,
                format!("booter_load succeeded but GSP-RM's RISC-V core is not running after {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(mem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fb_layout_matches_the_worked_example() {
        // docs/nvidia-facts.md, "GSP-RM" 1.2: a 24 GiB GA102 without a VGA workspace, a 64 KiB
        // bootloader and a 32 MiB image.
        let fb = 24u64 << 30;
        let l = FbLayout::new(fb, fb - MIB, 0x1_0000, 0x200_0000).expect("fits");
        assert_eq!(heap_size(fb), 0x810_0000);
        assert_eq!(l.wpr_end, 0x5_fff0_0000);
        assert_eq!(l.frts, 0x5_ffe0_0000);
        assert_eq!(l.boot_bin, 0x5_ffdf_0000);
        assert_eq!(l.gsp_fw, 0x5_fddf_0000);
        assert_eq!(l.heap, 0x5_f5c0_0000);
        assert_eq!(l.wpr_start, 0x5_f5b0_0000);
        assert_eq!(l.non_wpr_heap, 0x5_f5a0_0000);
        assert_eq!(FbLayout::new(64 * MIB, 63 * MIB, 0x1_0000, 0x200_0000), None);
    }

    #[test]
    fn heap_sizes_follow_the_formula() {
        assert_eq!(heap_size(4 << 30), 127 * MIB);
        assert_eq!(heap_size(48 << 30), 131 * MIB);
        assert_eq!(heap_size(0), MIN_HEAP.max(126 * MIB));
    }

    #[test]
    fn ids_and_metadata_round_trip() {
        assert_eq!(id8("LOGINIT"), 0x004c_4f47_494e_4954);
        assert_eq!(id8("RMARGS"), 0x0000_524d_4152_4753);
        let m = WprMeta { magic: WPR_META_MAGIC, frts_offset: 7, vga_workspace_size: 9, ..WprMeta::default() };
        let b = m.to_bytes();
        assert_eq!(&b[0..8], &WPR_META_MAGIC.to_le_bytes());
        assert_eq!(&b[0x98..0xa0], &7u64.to_le_bytes());
        assert_eq!(&b[0xc0..0xc8], &9u64.to_le_bytes());
        assert_eq!(WprMeta::from_bytes(&b), Some(m));
    }

    #[test]
    fn the_fuses_pick_a_booter_signature() {
        assert_eq!(booter_signature(0, 1, 2), Some(1));
        assert_eq!(booter_signature(1, 1, 2), Some(0));
        assert_eq!(booter_signature(0b11, 1, 2), None);
        assert_eq!(booter_signature(1, 5, 2), None);
    }
}
