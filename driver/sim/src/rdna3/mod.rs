//! An RDNA3 (gfx11) emulator: runs the code objects tk's AMD backend produces, instruction by
//! instruction, on any machine.
//!
//! [`CodeObject::parse`] reads the ELF code object, decodes its whole `.text` section (an unknown
//! instruction is an error naming it) and each kernel's 64-byte descriptor. A launch runs the
//! workgroups one after another; the wave32 waves of a workgroup run in a seeded random order,
//! each until it ends or reaches `s_barrier`. The initial registers are those the descriptor
//! asks for under tk's ABI: the kernarg segment pointer in `s[0:1]`, the workgroup id in x in the
//! first SGPR after the user SGPRs, the work-item id in x in `v0`.
//!
//! Every global and scalar memory access is checked against the regions of the launch, every LDS
//! access against the workgroup's LDS; reading an LDS word another wave wrote since the last
//! barrier is reported as a missing barrier, and using the result of a load before the
//! `s_waitcnt` that waits for it is reported too. The approximate instructions (`v_rcp_f32`,
//! `v_rsq_f32`, `v_sqrt_f32`, `v_exp_f32`, `v_log_f32`) are off by up to the 1 ULP the ISA
//! documents, and the f64 ones (`v_rcp_f64`, ...) by up to 2^29 ULP, so code that needs more is
//! caught.

pub mod exec;
pub mod isa;

pub use exec::{Memory, Region};
pub use isa::{DecodeError, Inst, decode, decode_all};

use exec::{Exec, Group, LANES, Wave};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Instructions one launch may execute before it is stopped (an endless loop).
pub const MAX_STEPS: u64 = 1 << 34;

/// What tk's loaders read from a kernel descriptor.
#[derive(Clone, Debug)]
pub struct KernelCode {
    pub name: String,
    /// The kernel's first instruction: an index into [`CodeObject::insts`].
    pub entry: usize,
    pub user_sgprs: u16,
    pub workgroup_id_x: bool,
    pub vgprs: usize,
    pub lds_bytes: usize,
}

/// A decoded code object.
pub struct CodeObject {
    pub insts: Vec<Inst>,
    /// Word index in `.text` -> instruction index (`u32::MAX` inside an instruction).
    index: Vec<u32>,
    uses: Vec<Vec<(u16, u16)>>,
    pub kernels: Vec<KernelCode>,
}

/// Why a launch failed.
#[derive(Debug, thiserror::Error)]
pub enum EmuError {
    #[error("the code object: {0}")]
    Object(String),
    #[error("decoding the code object {0}")]
    Decode(#[from] DecodeError),
    #[error("the code object has no kernel `{0}`")]
    NoKernel(String),
    #[error("kernel `{kernel}`, workgroup {group}, wave {wave}, at {pc:#x} `{inst}`: {message}")]
    Fault { kernel: String, group: u32, wave: u32, pc: u32, inst: String, message: String },
}

impl CodeObject {
    /// Reads an ELF code object: its `.text`, symbols and kernel descriptors.
    pub fn parse(bytes: &[u8]) -> Result<CodeObject, EmuError> {
        use object::{Object, ObjectSection, ObjectSymbol};
        let bad = |m: String| EmuError::Object(m);
        let file = object::File::parse(bytes).map_err(|e| bad(format!("not an ELF file: {e}")))?;
        // EM_AMDGPU
        let machine = match &file {
            object::File::Elf64(e) => {
                use object::read::elf::FileHeader;
                e.elf_header().e_machine(e.endian())
            }
            _ => 0,
        };
        if machine != 224 {
            return Err(bad("not an AMDGPU code object (a 64-bit ELF file for machine 224)".into()));
        }
        let text = file.section_by_name(".text").ok_or_else(|| bad("no .text section".into()))?;
        let data = text.data().map_err(|e| bad(format!(".text: {e}")))?;
        let code: Vec<u32> =
            data.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let insts = decode_all(&code)?;
        let mut index = vec![u32::MAX; code.len() + 1];
        for (k, i) in insts.iter().enumerate() {
            index[(i.pc / 4) as usize] = k as u32;
        }
        let uses = insts.iter().map(exec::uses).collect();
        let mut kernels = Vec::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            let Some(kname) = name.strip_suffix(".kd") else { continue };
            let sec = sym
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .ok_or_else(|| bad(format!("{name} is in no section")))?;
            let sd = sec.data().map_err(|e| bad(format!("{name}: {e}")))?;
            let off = sym.address().checked_sub(sec.address()).ok_or_else(|| bad(format!("{name}: bad address")))?
                as usize;
            let kd = sd.get(off..off + 64).ok_or_else(|| bad(format!("{name}: the descriptor is truncated")))?;
            let u32_at = |o: usize| u32::from_le_bytes([kd[o], kd[o + 1], kd[o + 2], kd[o + 3]]);
            let entry_off = i64::from_le_bytes(kd[16..24].try_into().unwrap_or([0; 8]));
            let entry_addr = (sym.address() as i64).wrapping_add(entry_off);
            let rel = entry_addr - text.address() as i64;
            let entry = usize::try_from(rel / 4)
                .ok()
                .and_then(|w| index.get(w))
                .copied()
                .filter(|&k| k != u32::MAX && rel % 4 == 0)
                .ok_or_else(|| bad(format!("{name}: the kernel's code is not at an instruction of .text")))?;
            let (rsrc1, rsrc2) = (u32_at(48), u32_at(52));
            kernels.push(KernelCode {
                name: kname.to_string(),
                entry: entry as usize,
                user_sgprs: ((rsrc2 >> 1) & 31) as u16,
                workgroup_id_x: rsrc2 >> 7 & 1 == 1,
                // Wave32 allocates VGPRs in blocks of 8.
                vgprs: (((rsrc1 & 63) + 1) * 8) as usize,
                lds_bytes: u32_at(0) as usize,
            });
        }
        Ok(CodeObject { insts, index, uses, kernels })
    }

    pub fn kernel(&self, name: &str) -> Option<&KernelCode> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// The disassembly of the whole code section, one instruction per line.
    pub fn disassemble(&self) -> String {
        let mut s = String::new();
        for i in &self.insts {
            s.push_str(&i.to_string());
            s.push('\n');
        }
        s
    }

    /// Runs `groups` workgroups of `threads` work-items of kernel `name`. `kernarg` is the address
    /// of the kernel arguments in `mem`.
    pub fn launch(
        &self,
        name: &str,
        groups: u32,
        threads: u32,
        kernarg: u64,
        mem: &mut Memory<'_>,
        seed: u64,
    ) -> Result<(), EmuError> {
        let k = self.kernel(name).ok_or_else(|| EmuError::NoKernel(name.into()))?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut budget = MAX_STEPS;
        let nwaves = threads.div_ceil(LANES as u32).max(1);
        for group in 0..groups {
            let mut g = Group { lds: vec![0; k.lds_bytes], lds_writer: vec![(u32::MAX, 0); k.lds_bytes], phase: 0 };
            let mut waves: Vec<Wave> = (0..nwaves)
                .map(|id| {
                    let mut w = Wave::new(id, k.vgprs);
                    w.pc = k.entry;
                    w.s[0] = kernarg as u32;
                    w.s[1] = (kernarg >> 32) as u32;
                    if k.workgroup_id_x {
                        w.s[k.user_sgprs as usize] = group;
                    }
                    let live = threads.saturating_sub(id * LANES as u32).min(LANES as u32);
                    w.s[126] = if live >= 32 { u32::MAX } else { (1u32 << live) - 1 };
                    for lane in 0..LANES {
                        w.v[0][lane] = id * LANES as u32 + lane as u32;
                    }
                    w
                })
                .collect();
            let mut order: Vec<usize> = (0..waves.len()).collect();
            loop {
                order.shuffle(&mut rng);
                let mut ran = false;
                for &wi in &order {
                    let w = &mut waves[wi];
                    if w.done || w.at_barrier {
                        continue;
                    }
                    ran = true;
                    let mut ex = Exec {
                        prog: &self.insts,
                        index: &self.index,
                        uses: &self.uses,
                        mem: &mut *mem,
                        budget: &mut budget,
                    };
                    ex.run(w, &mut g).map_err(|(at, message)| EmuError::Fault {
                        kernel: name.into(),
                        group,
                        wave: wi as u32,
                        pc: self.insts.get(at).map_or(0, |i| i.pc),
                        inst: self.insts.get(at).map(|i| i.to_string()).unwrap_or_default(),
                        message,
                    })?;
                }
                if waves.iter().all(|w| w.done) {
                    break;
                }
                if !ran || waves.iter().all(|w| w.done || w.at_barrier) {
                    for w in &mut waves {
                        w.at_barrier = false;
                    }
                    g.phase += 1;
                }
            }
        }
        Ok(())
    }
}
