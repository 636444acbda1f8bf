//! The simulated booter_load on SEC2 (what the real one checks, structurally: the boot ROM's
//! parameters, the booter's code in secure IMEM under its tags, its data with the signature the
//! fuses select), and what booter_load then does with the WPR metadata whose address is in
//! SEC2's mailboxes: GSP-RM's image read through the radix table, the bootloader and the
//! signature read back and compared with the synthetic firmware, the FB layout checked against
//! WPR2 (the FRTS region FWSEC set up) and VRAM; then WPR2 grows over GSP-RM's region and the
//! GSP's RISC-V core, reset into RISC-V mode with the libos arguments in its mailboxes, starts.
//! A refusal halts SEC2 with an error code in mailbox 0 and says why (`Transport::fault`).

use super::NvSimGpu;
use super::falcon::Falcon;
use super::firmware as fw;
use tk_gpu::nv::falcon::{BOOTVEC, BROM_CURR_UCODE_ID, BROM_ENGIDMASK, BROM_PARAADDR0, MAILBOX0, MAILBOX1, MOD_SEL};
use tk_gpu::nv::gsp::{FRTS_BYTES, MIN_HEAP, WPR_META_BYTES, WPR_META_MAGIC, WPR_META_REVISION, WprMeta, id8};
use tk_gpu::nv::vbios::SIGNATURE_BYTES;

type Refusal = (u32, String);

fn refuse<T>(code: u32, why: String) -> Result<T, Refusal> {
    Err((code, why))
}

impl NvSimGpu {
    /// Reads `n` bytes of system memory at a bus address (within one piece the driver
    /// allocated).
    pub(super) fn read_bus(&self, bus: u64, n: usize) -> Result<Vec<u8>, String> {
        let mut out = vec![0u8; n];
        self.dma_read(bus, &mut out)?;
        Ok(out)
    }

    /// booter_load, started on SEC2 (`sec2` is its falcon, halted by the caller).
    pub(super) fn run_booter(&self, sec2: &Falcon) -> Result<(), Refusal> {
        let image = fw::booter_image();
        let (app, data) = (fw::BOOTER_APP, fw::BOOTER_DATA);
        let sig_at = (fw::BOOTER_PATCH_LOC - data.0) as usize;
        let want = [
            (MOD_SEL, 1, "MOD_SEL (RSA-3K)"),
            (BROM_CURR_UCODE_ID, fw::BOOTER_UCODE_ID, "BROM_CURR_UCODE_ID"),
            (BROM_ENGIDMASK, fw::BOOTER_ENGINE_MASK, "BROM_ENGIDMASK"),
            (BROM_PARAADDR0, sig_at as u32, "BROM_PARAADDR0 (the signature's DMEM offset)"),
            (BOOTVEC, app.0, "BOOTVEC (the secure code's virtual address)"),
        ];
        for (reg, v, what) in want {
            let got = sec2.read(reg).unwrap_or(0);
            if got != v {
                return refuse(2, format!("the boot ROM refuses booter_load: {what} is {got:#x}, not {v:#x}"));
            }
        }
        let code = &image[app.0 as usize..(app.0 + app.1) as usize];
        let blocks = code.len() / 256;
        if sec2.imem.get(..code.len()) != Some(code) || !sec2.imem_secure[..blocks].iter().all(|&s| s) {
            return refuse(3, "the boot ROM refuses booter_load: secure IMEM does not hold its code".into());
        }
        if let Some(k) = (0..blocks).find(|&k| sec2.imem_tag[k] != (app.0 >> 8) + k as u32) {
            return refuse(
                3,
                format!("the boot ROM refuses booter_load: IMEM block {k} has tag {:#x}", sec2.imem_tag[k]),
            );
        }
        // The SEC2 fuses read version 1: with the booter's fuse version 1, its first signature.
        let sig = &fw::booter_signatures()[0];
        if sec2.dmem.get(sig_at..sig_at + SIGNATURE_BYTES) != Some(sig.as_slice()) {
            return refuse(
                4,
                format!(
                    "the boot ROM refuses booter_load: the signature at DMEM {sig_at:#x} is not the one the fuses select"
                ),
            );
        }
        let orig = &image[data.0 as usize..(data.0 + data.1) as usize];
        let patched = |i: usize| (sig_at..sig_at + SIGNATURE_BYTES).contains(&i);
        if let Some(i) = (0..orig.len()).find(|&i| !patched(i) && sec2.dmem[i] != orig[i]) {
            return refuse(5, format!("booter_load's DMEM differs from its image at {i:#x}"));
        }
        let at = u64::from(sec2.read(MAILBOX1).unwrap_or(0)) << 32 | u64::from(sec2.read(MAILBOX0).unwrap_or(0));
        let meta =
            self.read_bus(at, WPR_META_BYTES).map_err(|e| (6, format!("booter_load reading the WPR metadata: {e}")))?;
        let m = WprMeta::from_bytes(&meta).ok_or((6, "a short WPR metadata".to_string()))?;
        self.check_wpr_meta(&m)?;
        let mut gsp = self.gsp.lock().map_err(|_| (1, "poisoned".to_string()))?;
        if !gsp.riscv || gsp.in_reset {
            return refuse(10, "booter_load found the GSP falcon not reset into RISC-V mode".into());
        }
        let libos = u64::from(gsp.read(MAILBOX1).unwrap_or(0)) << 32 | u64::from(gsp.read(MAILBOX0).unwrap_or(0));
        let first =
            self.read_bus(libos, 8).map_err(|e| (10, format!("the GSP's mailboxes name no libos arguments: {e}")))?;
        if first != id8("LOGINIT").to_le_bytes() {
            return refuse(10, format!("the libos arguments at {libos:#x} do not start with LOGINIT"));
        }
        gsp.riscv_active = true;
        drop(gsp);
        *self.wpr2.lock().map_err(|_| (1, "poisoned".to_string()))? =
            (((m.wpr_start >> 12) << 4) as u32, ((m.wpr_end >> 12) << 4) as u32);
        // booter_load is done; what GSP-RM makes of its arguments is its own affair.
        if let (Err(why), Ok(mut f)) = (self.gsp_rm_start(libos), self.fault.lock()) {
            *f = Some(format!("GSP-RM stopped at its start: {why}"));
        }
        Ok(())
    }

    fn check_wpr_meta(&self, m: &WprMeta) -> Result<(), Refusal> {
        if m.magic != WPR_META_MAGIC || m.revision != WPR_META_REVISION {
            return refuse(6, format!("the WPR metadata's magic/revision are {:#x}/{}", m.magic, m.revision));
        }
        // GSP-RM's image through the radix table: level 0's first entry, level 1's entries,
        // level 2's page addresses.
        let want = fw::gsp_image();
        if m.elf_size != want.len() as u64 {
            return refuse(7, format!("the WPR metadata says GSP-RM has {} bytes, not {}", m.elf_size, want.len()));
        }
        let word = |b: &[u8], k: usize| u64::from_le_bytes(b[8 * k..8 * k + 8].try_into().unwrap_or([0; 8]));
        let rd =
            |bus: u64, n: usize| self.read_bus(bus, n).map_err(|e| (7, format!("booter_load reading GSP-RM: {e}")));
        let l1 = word(&rd(m.radix3_elf, 8)?, 0);
        let pages = want.len().div_ceil(4096);
        let l1_page = rd(l1, 4096)?;
        let mut got = Vec::with_capacity(pages * 4096);
        for j in 0..pages.div_ceil(512) {
            let l2 = rd(word(&l1_page, j), 4096)?;
            for k in 0..512.min(pages - 512 * j) {
                got.extend(rd(word(&l2, k), 4096)?);
            }
        }
        if got.get(..want.len()) != Some(want.as_slice()) {
            return refuse(7, "the image the radix table describes is not GSP-RM's".into());
        }
        let bl = fw::bootloader_image();
        let bl_got = rd(m.bootloader, bl.len())?;
        let offs = (fw::BOOTLOADER_MONITOR_CODE.0, fw::BOOTLOADER_MONITOR_DATA.0, fw::BOOTLOADER_MANIFEST.0);
        if m.bootloader_size != bl.len() as u64
            || bl_got != bl
            || (m.bootloader_code_offset, m.bootloader_data_offset, m.bootloader_manifest_offset)
                != (u64::from(offs.0), u64::from(offs.1), u64::from(offs.2))
        {
            return refuse(8, "the WPR metadata's bootloader is not the GSP's RISC-V bootloader".into());
        }
        let sig = fw::gsp_signature(if self.opts.chip == super::SimChip::Ad102 { "ad102" } else { "ga102" });
        if m.signature_size < sig.len() as u64 || rd(m.signature, sig.len())? != sig {
            return refuse(8, "the WPR metadata's signature is not GSP-RM's for this chip".into());
        }
        // The layout: FRTS where FWSEC put it, everything below it in order, aligned, inside
        // VRAM, and a heap GSP-RM can live in.
        let (lo, hi) = *self.wpr2.lock().map_err(|_| (1, "poisoned".to_string()))?;
        let frts = u64::from(lo >> 4) << 12;
        let vram = u64::from(self.opts.chip.vram_mib()) << 20;
        let bad = |what: &str| refuse(9, format!("booter_load refuses the FB layout: {what}"));
        if hi == 0 || m.frts_offset != frts || m.frts_size != FRTS_BYTES || m.wpr_end != frts + FRTS_BYTES {
            return bad(&format!("the FRTS region {:#x} is not the one FWSEC set up at {frts:#x}", m.frts_offset));
        }
        if m.fb_size != vram
            || m.vga_workspace_offset + m.vga_workspace_size != vram
            || m.wpr_end > m.vga_workspace_offset
        {
            return bad("the VRAM size or the VGA workspace is not the GPU's");
        }
        if m.boot_bin_offset + m.bootloader_size > m.frts_offset
            || m.gsp_fw_offset + m.elf_size > m.boot_bin_offset
            || m.heap_offset + m.heap_size > m.gsp_fw_offset
            || m.wpr_start + (1 << 20) > m.heap_offset
            || m.non_wpr_heap_offset + m.non_wpr_heap_size > m.wpr_start
            || m.rsvd_start > m.non_wpr_heap_offset
        {
            return bad("its regions overlap or are out of order");
        }
        let aligned =
            [(m.boot_bin_offset, 4096), (m.gsp_fw_offset, 64 << 10), (m.heap_offset, 1 << 20), (m.wpr_start, 1 << 20)];
        if aligned.iter().any(|&(v, a)| v % a != 0) || m.heap_size < MIN_HEAP {
            return bad("a region is misaligned or the heap is smaller than 88 MiB");
        }
        Ok(())
    }
}
