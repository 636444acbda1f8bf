//! The simulated GPU's host engine and the engines behind it. A doorbell write names a channel
//! by its work-submit token (runlist << 16 | channel id); the host reads GP_PUT from the
//! channel's USERD, fetches each GPFIFO entry and its pushbuffer segment through the channel's
//! VA space (the MMU), and decodes the methods: host methods (SET_OBJECT, the semaphore), and
//! the methods of the object bound to each subchannel, the copy engine (AMPERE_DMA_COPY_B:
//! linear copies and semaphore releases) and the compute engine (a QMD v3 sent with
//! SEND_PCAS_A / SEND_SIGNALING_PCAS2_B, run on the SASS emulator with its global memory
//! through the MMU). GP_GET goes back to USERD. Anything it does not model is a fault that
//! names it (`Transport::fault`); with `hang` a kernel never finishes: its channel stops there.
//! Layouts: tk_gpu::nv::{channel, qmd, device} name the sources.

use super::NvSimGpu;
use super::rm::Channel;
use std::collections::HashMap;
use tk_gpu::nv::channel::{SEM_ADDR_LO, SET_OBJECT, USERD_GP_GET, USERD_GP_PUT};
use tk_gpu::nv::device::{LAUNCH_DMA, LINE_LENGTH_IN, OFFSET_IN_UPPER, SEND_PCAS_A, SEND_SIGNALING_PCAS2_B};
use tk_gpu::nv::mmu::Aperture;
use tk_gpu::nv::qmd::{self, Qmd};
use tk_gpu::nv::rm::{ADA_COMPUTE_A, AMPERE_COMPUTE_B, AMPERE_DMA_COPY_B};

/// Host methods besides SET_OBJECT and the semaphore that the model accepts and ignores: NOP,
/// NON_STALL_INTERRUPT, MEM_OP_A..D (cache and TLB maintenance) and WFI.
const HOST_IGNORED: [u32; 7] = [0x008, 0x020, 0x028, 0x02c, 0x030, 0x034, 0x078];
/// Compute methods stored for later (shader memory windows and local memory, cache
/// invalidations) besides the two that launch.
const COMPUTE_STORED: [u32; 12] = [0x2a0, 0x2a4, 0x2e4, 0x2e8, 0x2ec, 0x790, 0x794, 0x7b0, 0x7b4, 0x21c, 0x1698, 0x110];
/// Copy methods: the semaphore, the offsets, pitches, line length and count.
const COPY_STORED: [u32; 11] = [0x240, 0x244, 0x248, 0x400, 0x404, 0x408, 0x40c, 0x410, 0x414, 0x418, 0x41c];
/// What a launch on a `hang` GPU comes to: the kernel never finishes.
const HUNG: &str = "hung";
/// A kernel's code is read until its closing self-branch, within this much.
const MAX_CODE: usize = 1 << 20;

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// Global memory of a launch through the MMU: pages read on first touch, written back after.
struct VaGlobal<'a> {
    gpu: &'a NvSimGpu,
    root: u64,
    pages: HashMap<u64, (Aperture, u64, Vec<u8>)>,
}

impl crate::sass::Global for VaGlobal<'_> {
    fn bytes(&mut self, addr: u64, n: u64) -> Result<&mut [u8], String> {
        if n == 0 || !addr.is_multiple_of(n) {
            return Err(format!("misaligned global access of {n} bytes at {addr:#x}"));
        }
        let page = addr / 4096;
        if !self.pages.contains_key(&page) {
            let (ap, pa) = self.gpu.translate(self.root, page * 4096)?;
            let data = self.gpu.phys_read(ap, pa, 4096)?;
            self.pages.insert(page, (ap, pa, data));
        }
        let off = (addr % 4096) as usize;
        let p = self.pages.get_mut(&page).ok_or("a page went missing")?;
        Ok(&mut p.2[off..off + n as usize])
    }
}

impl NvSimGpu {
    /// A doorbell write: runs the channel's new GPFIFO entries.
    pub(super) fn doorbell(&self, token: u32) -> Result<(), String> {
        let (chid, runlist) = (token & 0xfff, token >> 16 & 0x7f);
        let (mut ch, scheduled, classes) = {
            let g = self.gsp_rm.lock().map_err(|_| "poisoned")?;
            let ch =
                g.rm.channels
                    .iter()
                    .find(|c| c.chid == chid)
                    .cloned()
                    .ok_or(format!("a doorbell with token {token:#x}: no channel {chid} exists"))?;
            let classes: Vec<u32> =
                g.rm.objects.iter().filter(|(_, o)| o.parent == ch.handle).map(|(_, o)| o.class).collect();
            (ch, g.rm.scheduled, classes)
        };
        if runlist != super::rm::GR_RUNLIST {
            return Err(format!(
                "a doorbell with token {token:#x} names runlist {runlist}; channel {chid} is on runlist {}",
                super::rm::GR_RUNLIST
            ));
        }
        if !scheduled {
            return Err("a doorbell for a channel whose group was never scheduled (NVA06C GPFIFO_SCHEDULE)".into());
        }
        let userd = |off: usize| -> Result<Vec<u8>, String> {
            if ch.userd_sys {
                self.read_bus(ch.userd + off as u64, 4)
            } else {
                self.vram_read(ch.userd + off as u64, 4)
            }
        };
        let put = u32_at(&userd(USERD_GP_PUT)?, 0);
        if put >= ch.entries {
            return Err(format!("GP_PUT {put} is past the channel's {} GPFIFO entries", ch.entries));
        }
        let result = (|| {
            while ch.get != put {
                let e = self.va_read(ch.root, ch.gpfifo_va + 8 * u64::from(ch.get), 8)?;
                let (lo, hi) = (u32_at(&e, 0), u32_at(&e, 4));
                let len = (hi >> 10) & 0x1f_ffff;
                if len != 0 {
                    let va = u64::from(lo & !3) | u64::from(hi & 0xff) << 32;
                    let pb = self.va_read(ch.root, va, 4 * len as usize)?;
                    let words: Vec<u32> = pb.chunks_exact(4).map(|w| u32_at(w, 0)).collect();
                    match self.run_methods(&mut ch, &classes, &words) {
                        // A hung kernel: the channel stops at this entry for good.
                        Err(e) if e == HUNG => return Ok(()),
                        r => r?,
                    }
                }
                ch.get = (ch.get + 1) % ch.entries;
            }
            Ok(())
        })();
        let at = ch.userd + USERD_GP_GET as u64;
        let get = ch.get.to_le_bytes();
        if ch.userd_sys {
            self.dma_write(at, &get)?
        } else {
            self.vram_write(at, &get)?
        }
        if let Ok(mut g) = self.gsp_rm.lock()
            && let Some(c) = g.rm.channels.iter_mut().find(|c| c.chid == chid)
        {
            *c = ch;
        }
        result
    }

    fn run_methods(&self, ch: &mut Channel, classes: &[u32], w: &[u32]) -> Result<(), String> {
        let mut i = 0;
        while i < w.len() {
            let h = w[i];
            i += 1;
            if h == 0 {
                continue;
            }
            let (op, subch, method, count) = (h >> 29, h >> 13 & 7, (h & 0xfff) << 2, (h >> 16 & 0x1fff) as usize);
            let data = if op == 4 {
                vec![count as u32]
            } else {
                let d = w.get(i..i + count).ok_or(format!(
                    "a pushbuffer method header {h:#010x} announces {count} data words past the segment's end"
                ))?;
                i += count;
                d.to_vec()
            };
            for (k, v) in data.into_iter().enumerate() {
                let m = match op {
                    1 => method + 4 * k as u32,
                    3 | 4 => method,
                    5 => method + if k == 0 { 0 } else { 4 },
                    _ => return Err(format!("pushbuffer word {h:#010x}: method opcode {op} is not modelled")),
                };
                self.method(ch, classes, subch, m, v)?;
            }
        }
        Ok(())
    }

    fn method(&self, ch: &mut Channel, classes: &[u32], subch: u32, m: u32, v: u32) -> Result<(), String> {
        let compute = [AMPERE_COMPUTE_B, ADA_COMPUTE_A];
        if m == SET_OBJECT {
            let class = v & 0xffff;
            if !classes.contains(&class) {
                return Err(format!(
                    "SET_OBJECT of class {class:#x} on subchannel {subch}: no object of it on the channel"
                ));
            }
            ch.subch[subch as usize] = class;
            return Ok(());
        }
        if m < 0x100 {
            return match m {
                _ if (SEM_ADDR_LO..SEM_ADDR_LO + 16).contains(&m) => {
                    ch.methods.insert((8, m), v);
                    Ok(())
                }
                0x06c => self.semaphore(ch, v),
                _ if HOST_IGNORED.contains(&m) => Ok(()),
                _ => Err(format!("host method {m:#x} (value {v:#x}) is not modelled")),
            };
        }
        let class = ch.subch[subch as usize];
        let get = |ch: &Channel, m: u32| ch.methods.get(&(subch, m)).copied().unwrap_or(0);
        match class {
            0 => Err(format!("method {m:#x} on subchannel {subch}, which has no object (SET_OBJECT first)")),
            AMPERE_DMA_COPY_B if COPY_STORED.contains(&m) => {
                ch.methods.insert((subch, m), v);
                Ok(())
            }
            AMPERE_DMA_COPY_B if m == LAUNCH_DMA => {
                let (src, dst, len) = (
                    u64::from(get(ch, OFFSET_IN_UPPER) & 0x1_ffff) << 32 | u64::from(get(ch, OFFSET_IN_UPPER + 4)),
                    u64::from(get(ch, OFFSET_IN_UPPER + 8) & 0x1_ffff) << 32 | u64::from(get(ch, OFFSET_IN_UPPER + 12)),
                    get(ch, LINE_LENGTH_IN) as usize,
                );
                if v & (1 << 7 | 1 << 8) != (1 << 7 | 1 << 8) || v & (1 << 9 | 1 << 10 | 3 << 12) != 0 {
                    return Err(format!(
                        "LAUNCH_DMA {v:#x}: only single-line pitch copies between virtual addresses are modelled"
                    ));
                }
                if v & 3 != 0 {
                    let bytes = self.va_read(ch.root, src, len)?;
                    self.va_write(ch.root, dst, &bytes)?;
                }
                match v >> 3 & 3 {
                    0 => Ok(()),
                    1 => {
                        let at = u64::from(get(ch, 0x240) & 0x1_ffff) << 32 | u64::from(get(ch, 0x244));
                        self.va_write(ch.root, at, &get(ch, 0x248).to_le_bytes())
                    }
                    t => Err(format!("LAUNCH_DMA {v:#x}: semaphore type {t} is not modelled")),
                }
            }
            c if compute.contains(&c) && (COMPUTE_STORED.contains(&m) || m == SEND_PCAS_A) => {
                ch.methods.insert((subch, m), v);
                Ok(())
            }
            c if compute.contains(&c) && m == SEND_SIGNALING_PCAS2_B && self.opts.hang => Err(HUNG.into()),
            c if compute.contains(&c) && m == SEND_SIGNALING_PCAS2_B => match v & 0xf {
                2 | 3 | 9 => self.run_qmd(ch, u64::from(get(ch, SEND_PCAS_A)) << 8),
                a => Err(format!("SEND_SIGNALING_PCAS2_B action {a} is not modelled (2, 3 and 9 schedule a QMD)")),
            },
            c => Err(format!("method {m:#x} (value {v:#x}) of class {c:#x} on subchannel {subch} is not modelled")),
        }
    }

    /// SEM_EXECUTE: a release writes the payload (32 or 64 bits) at the semaphore address.
    fn semaphore(&self, ch: &mut Channel, v: u32) -> Result<(), String> {
        let g = |m: u32| ch.methods.get(&(8, m)).copied().unwrap_or(0);
        if v & 7 != 1 {
            return Err(format!("SEM_EXECUTE {v:#x}: only releases are modelled"));
        }
        let at = u64::from(g(SEM_ADDR_LO + 4) & 0xff) << 32 | u64::from(g(SEM_ADDR_LO) & !3);
        let payload = u64::from(g(SEM_ADDR_LO + 12)) << 32 | u64::from(g(SEM_ADDR_LO + 8));
        if v & 1 << 24 != 0 {
            self.va_write(ch.root, at, &payload.to_le_bytes())
        } else {
            self.va_write(ch.root, at, &(payload as u32).to_le_bytes())
        }
    }

    /// Runs the QMD at `va` on the SASS emulator.
    fn run_qmd(&self, ch: &Channel, va: u64) -> Result<(), String> {
        let q = Qmd::from_bytes(&self.va_read(ch.root, va, qmd::QMD_BYTES)?).ok_or("a short QMD")?;
        let bad = |m: String| Err(format!("the QMD at {va:#x}: {m}"));
        if q.get(qmd::QMD_MAJOR_VERSION) != 3 {
            return bad(format!("QMD version {}, not 3", q.get(qmd::QMD_MAJOR_VERSION)));
        }
        let sm = if self.opts.chip == super::SimChip::Ad102 { 89 } else { 86 };
        let version = ((sm / 10) << 4) | (sm % 10);
        if q.get(qmd::SASS_VERSION) != version {
            return bad(format!("SASS_VERSION {:#x} is not this GPU's ({version:#x})", q.get(qmd::SASS_VERSION)));
        }
        let (blocks, threads) = (q.get(qmd::CTA_RASTER_WIDTH), q.get(qmd::CTA_THREAD_DIMENSION0));
        let dims =
            [qmd::CTA_RASTER_HEIGHT, qmd::CTA_RASTER_DEPTH, qmd::CTA_THREAD_DIMENSION1, qmd::CTA_THREAD_DIMENSION2];
        if dims.iter().any(|&f| q.get(f) != 1) {
            return bad("the simulated GPU runs one-dimensional grids and blocks only".into());
        }
        if blocks == 0 || !(1..=1024).contains(&threads) {
            return bad(format!("{blocks} blocks of {threads} threads"));
        }
        let bank = |i: u32| -> Result<Vec<u8>, String> {
            let mut b = if q.get(qmd::constant_buffer_valid(i)) == 1 {
                let addr = u64::from(q.get(qmd::constant_buffer_addr_upper(i))) << 32
                    | u64::from(q.get(qmd::constant_buffer_addr_lower(i)));
                self.va_read(ch.root, addr, (q.get(qmd::constant_buffer_size_shifted4(i)) as usize) << 4)?
            } else {
                Vec::new()
            };
            b.resize(0x1_0000, 0);
            Ok(b)
        };
        if q.get(qmd::constant_buffer_valid(0)) != 1 {
            return bad("constant buffer 0 is not valid".into());
        }
        let (bank0, bank2) = (bank(0)?, bank(2)?);
        let program = u64::from(q.get(qmd::PROGRAM_ADDRESS_UPPER)) << 32 | u64::from(q.get(qmd::PROGRAM_ADDRESS_LOWER));
        let mut code = Vec::new();
        let end = loop {
            let chunk = self.va_read(ch.root, program + code.len() as u64, 4096)?;
            code.extend(chunk);
            if let Some(e) = crate::sass::code_end(&code, sm) {
                break e;
            }
            if code.len() >= MAX_CODE {
                return bad(format!("no closing self-branch in the {MAX_CODE} bytes of code at {program:#x}"));
            }
        };
        let name = format!("the kernel at {program:#x}");
        let shared = u64::from(q.get(qmd::SHARED_MEMORY_SIZE));
        let k = crate::sass::Kernel::from_code(&name, &code[..end], sm, q.get(qmd::REGISTER_COUNT_V), shared)
            .map_err(|e| e.to_string())?;
        let program = crate::sass::Program {
            sm,
            kernels: Vec::new(),
            host_driven: false,
            check_hazards: std::env::var("TK_SASS_HAZARDS").map_or(true, |v| v != "0"),
            max_steps: crate::sass::MAX_STEPS,
        };
        let mut global = VaGlobal { gpu: self, root: ch.root, pages: HashMap::new() };
        let seed = self.launches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let grid = crate::ptx::Grid { blocks, threads };
        let run = program.launch_raw(&k, grid, (&bank0, &bank2), &mut global, seed);
        // What the kernel wrote reaches memory even when it faulted part way.
        for (_, (ap, pa, data)) in global.pages {
            self.phys_write(ap, pa, &data)?;
        }
        run.map(|_| ()).map_err(|e| e.to_string())
    }
}
