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
/// The instruction tables (tk-isa), under the name the emulator's modules use.
pub use tk_isa::rdna3 as isa;

pub use exec::{Memory, Region, Regions};
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
    /// Where [`CodeObject::from_code`] stopped decoding on a word it does not know, and why:
    /// reported if a wave gets there.
    undecoded: Option<(u32, String)>,
    /// Whether the host runs the launches directly (the `sim:*` devices): then a launch stops at
    /// the host's interrupt ([`tk_abi::interrupt`]) between rounds of warps and reports the
    /// blocks it has run ([`tk_abi::progress`]). Not inside a simulated PCIe GPU: hardware does
    /// neither.
    pub host_driven: bool,
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
    /// The host asked the run to stop ([`tk_abi::interrupt`]).
    #[error("kernel `{0}`: interrupted")]
    Interrupted(String),
}

impl CodeObject {
    /// Reads an ELF code object (tk-abi's reader: `.text` and the kernel descriptors) and decodes
    /// its whole `.text`.
    pub fn parse(bytes: &[u8]) -> Result<CodeObject, EmuError> {
        let obj = tk_abi::amd::read_code(bytes).map_err(EmuError::Object)?;
        let code: Vec<u32> = obj.text.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let insts = decode_all(&code)?;
        let mut index = vec![u32::MAX; code.len() + 1];
        for (k, i) in insts.iter().enumerate() {
            index[(i.pc / 4) as usize] = k as u32;
        }
        let uses = insts.iter().map(exec::uses).collect();
        let mut kernels = Vec::new();
        for k in &obj.kernels {
            let entry = index.get((k.offset / 4) as usize).copied().filter(|&i| i != u32::MAX).ok_or_else(|| {
                EmuError::Object(format!("{}: the kernel's code is not at an instruction of .text", k.name))
            })?;
            let d = &k.descriptor;
            let (rsrc1, rsrc2) = (d.compute_pgm_rsrc1, d.compute_pgm_rsrc2);
            kernels.push(KernelCode {
                name: k.name.clone(),
                entry: entry as usize,
                user_sgprs: ((rsrc2 >> 1) & 31) as u16,
                workgroup_id_x: rsrc2 >> 7 & 1 == 1,
                // Wave32 allocates VGPRs in blocks of 8.
                vgprs: (((rsrc1 & 63) + 1) * 8) as usize,
                lds_bytes: d.group_segment_fixed_size as usize,
            });
        }
        Ok(CodeObject { insts, index, uses, kernels, undecoded: None, host_driven: false })
    }

    /// A code object made of raw machine code with one kernel at its start (for tests).
    pub fn from_words(code: &[u32], mut kernel: KernelCode) -> Result<CodeObject, EmuError> {
        let insts = decode_all(code)?;
        let mut index = vec![u32::MAX; code.len() + 1];
        for (k, i) in insts.iter().enumerate() {
            index[(i.pc / 4) as usize] = k as u32;
        }
        let uses = insts.iter().map(exec::uses).collect();
        kernel.entry = 0;
        Ok(CodeObject { insts, index, uses, kernels: vec![kernel], undecoded: None, host_driven: false })
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

    /// Machine code fetched from memory at a kernel's entry (what a command processor has): it is
    /// decoded up to the first word that is not an instruction or `s_code_end`; a branch beyond
    /// is reported when taken.
    pub fn from_code(code: &[u32], kernel: KernelCode) -> CodeObject {
        let mut insts = Vec::new();
        let mut undecoded = None;
        let mut i = 0;
        while i < code.len() {
            let inst = match decode(code, i) {
                Ok(inst) => inst,
                Err(e) => {
                    undecoded = Some((4 * i as u32, e.to_string()));
                    break;
                }
            };
            if inst.op.name == "s_code_end" {
                break;
            }
            i += inst.len as usize;
            insts.push(inst);
        }
        let mut index = vec![u32::MAX; code.len() + 1];
        for (k, x) in insts.iter().enumerate() {
            index[(x.pc / 4) as usize] = k as u32;
        }
        let uses = insts.iter().map(exec::uses).collect();
        CodeObject {
            insts,
            index,
            uses,
            kernels: vec![KernelCode { entry: 0, ..kernel }],
            undecoded,
            host_driven: false,
        }
    }

    /// Runs `groups` workgroups of `threads` work-items of kernel `name`. `kernarg` is the address
    /// of the kernel arguments in `mem`.
    pub fn launch(
        &self,
        name: &str,
        groups: u32,
        threads: u32,
        kernarg: u64,
        mem: &mut dyn Memory,
        seed: u64,
    ) -> Result<(), EmuError> {
        let user = [kernarg as u32, (kernarg >> 32) as u32];
        self.launch_with(name, groups, threads, &user, mem, seed)
    }

    /// Like [`CodeObject::launch`], with the user SGPRs a command processor loads (`s0`, `s1`, ...
    /// from COMPUTE_USER_DATA_*).
    pub fn launch_with(
        &self,
        name: &str,
        groups: u32,
        threads: u32,
        user: &[u32],
        mem: &mut dyn Memory,
        seed: u64,
    ) -> Result<(), EmuError> {
        let k = self.kernel(name).ok_or_else(|| EmuError::NoKernel(name.into()))?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut budget = MAX_STEPS;
        let nwaves = threads.div_ceil(LANES as u32).max(1);
        if self.host_driven {
            tk_abi::progress::units(u64::from(groups));
        }
        for group in 0..groups {
            let mut g = Group {
                lds: vec![0; k.lds_bytes],
                lds_writer: vec![(u32::MAX, 0); k.lds_bytes],
                lds_reader: vec![(u32::MAX, 0); k.lds_bytes],
                phase: 0,
            };
            let mut waves: Vec<Wave> = (0..nwaves)
                .map(|id| {
                    let mut w = Wave::new(id, k.vgprs);
                    w.pc = k.entry;
                    for (r, v) in user.iter().take(k.user_sgprs as usize).enumerate() {
                        w.s[r] = *v;
                    }
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
                if self.host_driven && tk_abi::interrupt::requested() {
                    return Err(EmuError::Interrupted(name.into()));
                }
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
                        undecoded: self.undecoded.as_ref(),
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
            if self.host_driven {
                tk_abi::progress::advance(1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel() -> KernelCode {
        KernelCode { name: "k".into(), entry: 0, user_sgprs: 2, workgroup_id_x: true, vgprs: 8, lds_bytes: 256 }
    }

    /// Runs raw machine code with one 16-byte buffer at 0x1000 and 16 bytes of kernel arguments
    /// (the buffer's address) at 0x100.
    fn run(code: &[u32], threads: u32) -> (Result<(), EmuError>, Vec<u8>) {
        run_with(code, threads, &[0; 16])
    }

    /// Like [`run`], with the buffer's initial bytes.
    fn run_with(code: &[u32], threads: u32, init: &[u8]) -> (Result<(), EmuError>, Vec<u8>) {
        let co = CodeObject::from_words(code, kernel()).expect("decodes");
        let mut buf = init.to_vec();
        let mut args = 0x1000u64.to_le_bytes().to_vec();
        args.resize(64, 0);
        let r = {
            let mut mem = Regions {
                regions: vec![
                    Region { base: 0x1000, data: &mut buf, name: "buffer 0".into(), writable: true },
                    Region { base: 0x100, data: &mut args, name: "the kernel arguments".into(), writable: false },
                ],
            };
            co.launch("k", 1, threads, 0x100, &mut mem, 0)
        };
        (r, buf)
    }

    // s_load_b64 s[2:3], s[0:1], null
    const LOAD_ARG: [u32; 2] = [0xF4040080, 0xF8000000];
    // s_waitcnt lgkmcnt(0)
    const WAIT: u32 = 0xBF89FC07;
    // v_lshlrev_b32_e32 v1, 2, v0
    const OFFSET: u32 = 0x30020082;
    // global_store_b32 v1, v0, s[2:3]
    const STORE: [u32; 2] = [0xDC6A0000, 0x00020001];
    const END: u32 = 0xBFB00000;

    #[test]
    fn a_kernel_stores_its_lane_ids() {
        let (r, buf) = run(&[LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET, STORE[0], STORE[1], END], 4);
        r.expect("runs");
        let got: Vec<u32> = buf.chunks(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        assert_eq!(got, [0, 1, 2, 3]);
    }

    #[test]
    fn an_host_driven_launch_stops_at_the_hosts_request() {
        // The request is process-wide: the tests that make a launch host-driven take turns, and
        // the others' launches do not look at it.
        let _turn = crate::INTERRUPT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let code = [LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET, STORE[0], STORE[1], END];
        let mut co = CodeObject::from_words(&code, kernel()).expect("decodes");
        co.host_driven = true;
        let mut buf = vec![0u8; 16];
        let mut args = 0x1000u64.to_le_bytes().to_vec();
        args.resize(64, 0);
        let mut mem = Regions {
            regions: vec![
                Region { base: 0x1000, data: &mut buf, name: "buffer 0".into(), writable: true },
                Region { base: 0x100, data: &mut args, name: "the kernel arguments".into(), writable: false },
            ],
        };
        tk_abi::interrupt::request();
        let r = co.launch("k", 1, 4, 0x100, &mut mem, 0);
        tk_abi::interrupt::clear();
        assert!(matches!(r, Err(EmuError::Interrupted(_))), "{r:?}");
        co.launch("k", 1, 4, 0x100, &mut mem, 0).expect("runs once cleared");
    }

    #[test]
    fn a_store_past_the_buffer_is_reported() {
        // Five work-items store five words into four.
        let (r, _) = run(&[LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET, STORE[0], STORE[1], END], 5);
        let e = r.expect_err("faults").to_string();
        assert!(e.contains("lane 4") && e.contains("past the end of buffer 0"), "{e}");
        assert!(e.contains("global_store_b32 v1, v0, s[2:3]"), "{e}");
    }

    #[test]
    fn using_a_load_before_its_waitcnt_is_reported() {
        let (r, _) = run(&[LOAD_ARG[0], LOAD_ARG[1], OFFSET, STORE[0], STORE[1], END], 4);
        let e = r.expect_err("faults").to_string();
        assert!(e.contains("uses s[2:3]") && e.contains("s_waitcnt lgkmcnt"), "{e}");
    }

    #[test]
    fn a_missing_barrier_between_lds_accesses_is_reported() {
        // ds_store_b32 v1, v0; ds_load_b32 v2, v3 (v3 = 0: wave 1 reads what wave 0 wrote).
        let (ds_store, ds_load) = ([0xD8340000, 0x00000001], [0xD8D80000, 0x02000003]);
        // v_mov_b32_e32 v3, 0
        let zero = 0x7E060280;
        let code = [OFFSET, zero, ds_store[0], ds_store[1], ds_load[0], ds_load[1], WAIT, END];
        let (r, _) = run(&code, 64);
        let e = r.expect_err("faults").to_string();
        assert!(e.contains("missing barrier"), "{e}");
        // With s_barrier between the store and the load, it runs.
        let code = [OFFSET, zero, ds_store[0], ds_store[1], 0xBFBD0000, ds_load[0], ds_load[1], WAIT, END];
        run(&code, 64).0.expect("runs with the barrier");
    }

    #[test]
    fn an_unknown_instruction_is_named() {
        let e = CodeObject::from_words(&[0xBE80FF00], kernel()).err().expect("fails").to_string();
        assert!(e.contains("unknown SOP1 opcode 255"), "{e}");
    }

    #[test]
    fn code_fetched_from_memory_names_the_word_it_could_not_decode_when_a_wave_gets_there() {
        // s_branch 1 jumps over an unknown word to s_endpgm; decoding stopped at the unknown word.
        let co = CodeObject::from_code(&[0xBFA00001, 0xBE80FF00, END], kernel());
        let mut mem = Regions { regions: vec![] };
        let e = co.launch("k", 1, 1, 0, &mut mem, 0).expect_err("faults").to_string();
        assert!(
            e.contains("branches to 0x8") && e.contains("decoding stopped at code offset 0x4: unknown SOP1 opcode 255"),
            "{e}"
        );
        // Without a branch past it, the code before the unknown word runs.
        let co = CodeObject::from_code(&[END, 0xBE80FF00], kernel());
        co.launch("k", 1, 1, 0, &mut mem, 0).expect("runs");
    }

    // Instruction families, one program each. The words were assembled with llvm-mc; the
    // expected values are worked out from the ISA's description of each instruction.

    // global_store_b32 v1, v2, s[2:3]: each lane stores v2 at 4 x its id.
    const STORE_V2: [u32; 2] = [0xDC6A0000, 0x00020201];

    /// Runs `body` between the prologue (s[2:3] = the buffer, v1 = 4 x lane) and a store of v2,
    /// and returns the stored words.
    fn lanes(body: &[u32], threads: u32) -> Vec<u32> {
        let mut code = vec![LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET];
        code.extend_from_slice(body);
        code.extend_from_slice(&[STORE_V2[0], STORE_V2[1], END]);
        let (r, buf) = run_with(&code, threads, &[0; 64]);
        r.unwrap_or_else(|e| panic!("{e}"));
        buf.chunks(4).take(threads as usize).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
    }

    #[test]
    fn sop2_carries_and_borrows_through_scc() {
        // s_mov_b32 s4, -1; s_add_u32 s5, s4, 2 (carry: SCC = 1); s_addc_u32 s6, 0, 0 (= SCC).
        let body = [0xBE8400C1, 0x80058204, 0x82068080, 0x7E040206];
        assert_eq!(lanes(&body, 2), [1, 1]);
        // s_sub_u32 s8, 0, 1 (borrow: SCC = 1); s_subb_u32 s9, 0, 0 = 0 - 0 - 1.
        let body = [0x80888180, 0x82898080, 0x7E040209];
        assert_eq!(lanes(&body, 2), [u32::MAX, u32::MAX]);
    }

    #[test]
    fn sop1_saveexec_masks_vector_writes() {
        // v_cmp_gt_u32 vcc_lo, 2, v0 (lanes 0 and 1); s_and_saveexec_b32 s7, vcc_lo;
        // v_mov_b32 v2, 7 (only those lanes); s_or_b32 exec_lo, exec_lo, s7 (all lanes again).
        let body = [0x7C980082, 0xBE87206A, 0x7E040287, 0x8C7E077E];
        assert_eq!(lanes(&body, 4), [7, 7, 0, 0]);
    }

    #[test]
    fn sopp_branches_on_scc() {
        // s_mov_b32 s4, 0; loop: s_add_i32 s4, s4, 1; s_cmp_lg_u32 s4, 5; s_cbranch_scc1 loop.
        let body = [0xBE840080, 0x81048104, 0xBF078504, 0xBFA2FFFD, 0x7E040204];
        assert_eq!(lanes(&body, 1), [5]);
    }

    #[test]
    fn vop3sd_carry_out_feeds_vop2_carry_in() {
        // v_add_co_u32 v2, vcc_lo, v0, -1 carries for every lane but 0;
        // v_add_co_ci_u32_e32 v3, vcc_lo, 0, v4, vcc_lo = the carry; v_mov_b32 v2, v3.
        let body = [0xD7006A02, 0x00018300, 0x40060880, 0x7E040303];
        assert_eq!(lanes(&body, 4), [0, 1, 1, 1]);
    }

    #[test]
    fn vopd_halves_read_before_either_writes() {
        // v3 = 5, v2 = lane; v_dual_mov_b32 v2, v3 :: v_dual_mov_b32 v5, v2 (the old v2);
        // v_sub_nc_u32 v2, v2, v5 = 5 - lane.
        let body = [0x7E060285, 0x7E040300, 0xCA100103, 0x02040102, 0x4C040B02];
        assert_eq!(lanes(&body, 4), [5, 4, 3, 2]);
    }

    #[test]
    fn vop3p_fma_mix_converts_half_sources() {
        // v3 = f16 2.0, v4 = f16 3.0, v5 = f32 1.0; v_fma_mix_f32 v2, v3, v4, v5 op_sel_hi:[1,1,0].
        let body = [0x7E0602FF, 0x4000, 0x7E0802FF, 0x4200, 0x7E0A02F2, 0xCC200002, 0x1C160903];
        assert_eq!(lanes(&body, 1), [7.0f32.to_bits()]);
    }

    #[test]
    fn vop3_integer_and_bitfield_operations() {
        // v4 = 7; v_mad_u64_u32 v[2:3], null, v0, 0x10000, v[4:5] = lane << 16 | 7.
        let body = [0x7E080287, 0xD6FE7C02, 0x0411FF00, 0x00010000];
        assert_eq!(lanes(&body, 3), [7, 0x10007, 0x20007]);
        // v3 = 0x12345678; v_bfe_u32 v2, v3, 4, 8 = bits 4..12.
        let body = [0x7E0602FF, 0x12345678, 0xD6100002, 0x02210903];
        assert_eq!(lanes(&body, 1), [0x67]);
        // v4 = 1; v_lshlrev_b64 v[2:3], 33, v[4:5] puts bit 33 in v3; v_mov_b32 v2, v3.
        let body = [0x7E080281, 0xD73C0002, 0x000208A1, 0x7E040303];
        assert_eq!(lanes(&body, 1), [2]);
        // s5 = 0x12345678; s_bfe_u32 s4, s5, 0x80004 (offset 4, width 8); v_mov_b32 v2, s4.
        let body = [0xBE8500FF, 0x12345678, 0x9304FF05, 0x00080004, 0x7E040204];
        assert_eq!(lanes(&body, 1), [0x67]);
    }

    #[test]
    fn mul24_products_sign_or_zero_extend_their_low_24_bits() {
        // v3 = 0x800000 (-2^23 as i24), v4 = 0x7fffff (2^23 - 1).
        let set = [0x7E0602FF, 0x0080_0000, 0x7E0802FF, 0x007F_FFFF];
        let with = |op: &[u32]| lanes(&[&set[..], op].concat(), 1)[0];
        // v_mul_i32_i24_e32 v2, v3, v4: the low 32 bits of -2^46 + 2^23.
        assert_eq!(with(&[0x12040903]), 0x0080_0000);
        // v_mul_hi_i32_i24_e32 v2, v3, v4 and its VOP3 form: the high bits, sign-extended.
        assert_eq!(with(&[0x14040903]), 0xFFFF_C000);
        assert_eq!(with(&[0xD50A0002, 0x00020903]), 0xFFFF_C000);
        // v_mul_hi_u32_u24_e32 v2, v3, v4: (2^46 - 2^23) >> 32.
        assert_eq!(with(&[0x18040903]), 0x3FFF);
    }

    #[test]
    fn sopk_multiplies_compares_and_moves_conditionally() {
        // s5 = s6 = 0; s_movk_i32 s4, 7; s_mulk_i32 s4, -3 (= -21);
        // s_cmpk_lt_i32 s4, 0 (true) then s_cmovk_i32 s5, 9 (taken);
        // s_cmpk_lt_u32 s4, 0 (false: unsigned) then s_cmovk_i32 s6, 5 (not taken).
        let prog = [0xBE850080, 0xBE860080, 0xB0040007, 0xB804FFFD, 0xB3840000, 0xB1050009, 0xB6840000, 0xB1060005];
        let with = |mov: u32| lanes(&[&prog[..], &[mov]].concat(), 1)[0];
        // v_mov_b32_e32 v2, s4 / s5 / s6.
        assert_eq!(with(0x7E040204), (-21i32) as u32);
        assert_eq!(with(0x7E040205), 9);
        assert_eq!(with(0x7E040206), 0);
    }

    #[test]
    fn sop1_counts_bits_and_moves_conditionally() {
        // v_mov_b32_e32 v2, s5 after each program.
        let v2_of_s5 = |prog: &[u32]| lanes(&[prog, &[0x7E040205]].concat(), 1)[0];
        // s4 = 0x00f00000; s_clz_i32_u32 s5, s4 = 8.
        assert_eq!(v2_of_s5(&[0xBE8400FF, 0x00F0_0000, 0xBE850A04]), 8);
        // s4 = 0xfff0ffff; s_cls_i32 s5, s4 = 12 (the leading ones).
        assert_eq!(v2_of_s5(&[0xBE8400FF, 0xFFF0_FFFF, 0xBE850C04]), 12);
        // s_clz_i32_u32 of 0 is -1.
        assert_eq!(v2_of_s5(&[0xBE840080, 0xBE850A04]), u32::MAX);
        // s_bcnt0_i32_b32 of 0xff = 24.
        assert_eq!(v2_of_s5(&[0xBE8400FF, 0xFF, 0xBE851604]), 24);
        // s5 = 0xff, s4 = 3; s_bitset0_b32 s5, s4 clears bit 3; s_cmp_eq_u32 s4, 3 then
        // s_cmov_b32 s5, 42 (taken); s_cmp_eq_u32 s4, 4 then s_cmov_b32 s5, 43 (not taken).
        let set = [0xBE8500FF, 0xFF, 0xBE840083, 0xBE851004];
        assert_eq!(v2_of_s5(&set), 0xF7);
        assert_eq!(v2_of_s5(&[&set[..], &[0xBF068304, 0xBE8502AA, 0xBF068404, 0xBE8502AB]].concat()), 42);
    }

    #[test]
    fn ldexp_f32_rounds_once_into_denormals_and_overflows_to_infinity() {
        // v3 = 1.5; v4 = n; v_ldexp_f32 v2, v3, v4.
        let ldexp = |n: u32| lanes(&[0x7E0602FF, 0x3FC0_0000, 0x7E0802FF, n, 0xD71C0002, 0x00020903], 1)[0];
        assert_eq!(ldexp(-3i32 as u32), 0.1875f32.to_bits());
        // 1.5 x the smallest denormal rounds to even: 2 x it.
        assert_eq!(ldexp(-149i32 as u32), 2);
        assert_eq!(ldexp(128), f32::INFINITY.to_bits());
    }

    #[test]
    fn three_operand_integer_min_max_and_median() {
        // v3 = -5, v4 = 3, v5 = 7; then OP v2, v3, v4, v5 (word 0 given, word 1 = 0x04160903).
        let with = |w0: u32| lanes(&[0x7E0602C5, 0x7E080283, 0x7E0A0287, w0, 0x04160903], 1)[0];
        let big = (-5i32) as u32;
        for (name, w0, want) in [
            ("v_min3_i32", 0xD61A0002, big),
            ("v_min3_u32", 0xD61B0002, 3),
            ("v_max3_i32", 0xD61D0002, 7),
            ("v_max3_u32", 0xD61E0002, big),
            ("v_med3_i32", 0xD6200002, 3),
            ("v_med3_u32", 0xD6210002, 7),
            // max(min(a, b), c) and min(max(a, b), c).
            ("v_minmax_i32", 0xD6650002, 7),
            ("v_minmax_u32", 0xD6630002, 7),
            ("v_maxmin_i32", 0xD6640002, 3),
            ("v_maxmin_u32", 0xD6620002, 7),
        ] {
            assert_eq!(with(w0), want, "{name}");
        }
    }

    #[test]
    fn byte_permutes_alignbyte_and_fused_integer_forms() {
        // v3 = 0x11223344, v4 = 0x55667788 (so {v3, v4} has bytes 88 77 66 55 44 33 22 11 from
        // the bottom), v5 = the selector; then OP v2, v3, v4, v5.
        let with = |sel: u32, w0: u32| {
            lanes(&[0x7E0602FF, 0x1122_3344, 0x7E0802FF, 0x5566_7788, 0x7E0A02FF, sel, w0, 0x04160903], 1)[0]
        };
        // v_perm_b32: bytes 1, sign of byte 1 (0x77: clear), 0xff, 0x00.
        assert_eq!(with(0x0C0D_0801, 0xD6440002), 0x00FF_0077);
        assert_eq!(with(0x0705_0300, 0xD6440002), 0x1133_5588);
        // v_alignbyte_b32 by 3 bytes.
        assert_eq!(with(3, 0xD6170002), 0x2233_4455);
        // v3 = -5, v4 = 3, v5 = 7.
        let small = |w0: u32| lanes(&[0x7E0602C5, 0x7E080283, 0x7E0A0287, w0, 0x04160903], 1)[0];
        assert_eq!(small(0xD6450002), u32::MAX, "v_xad_u32: (-5 ^ 3) + 7");
        assert_eq!(small(0xD6470002), 0xFFFF_FF00, "v_add_lshl_u32: (-5 + 3) << 7");
        assert_eq!(small(0xD6590002), 0x2FFF8, "v_mad_u32_u16: 0xfffb * 3 + 7");
        assert_eq!(small(0xD65A0002), (-8i32) as u32, "v_mad_i32_i16");
        // The 16-bit forms: the low half.
        for (name, w0, want) in [
            ("v_min3_i16", 0xD64A0002, 0xFFFB),
            ("v_max3_u16", 0xD64E0002, 0xFFFB),
            ("v_med3_i16", 0xD6500002, 3),
            ("v_mad_u16", 0xD6410002, 0xFFF8),
            ("v_mad_i16", 0xD6530002, 0xFFF8),
        ] {
            assert_eq!(small(w0) & 0xffff, want, "{name}");
        }
    }

    #[test]
    fn d16_loads_fill_one_half_and_keep_the_other() {
        // v2 = 0x12345678; LOAD v2, v1, s[2:3] (the buffer's first bytes: f0 be); s_waitcnt
        // vmcnt(0); store v2.
        let with = |w0: u32| {
            let code = [
                LOAD_ARG[0],
                LOAD_ARG[1],
                WAIT,
                OFFSET,
                0x7E0402FF,
                0x1234_5678,
                w0,
                0x02020001,
                0xBF8903F7,
                STORE_V2[0],
                STORE_V2[1],
                END,
            ];
            let mut init = [0u8; 16];
            init[..2].copy_from_slice(&[0xF0, 0xBE]);
            let (r, buf) = run_with(&code, 1, &init);
            r.unwrap_or_else(|e| panic!("{e}"));
            u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]])
        };
        assert_eq!(with(0xDC820000), 0x1234_BEF0, "global_load_d16_b16");
        assert_eq!(with(0xDC7A0000), 0x1234_00F0, "global_load_d16_u8");
        assert_eq!(with(0xDC8A0000), 0xFFF0_5678, "global_load_d16_hi_i8");
        assert_eq!(with(0xDC8E0000), 0xBEF0_5678, "global_load_d16_hi_b16");
    }

    #[test]
    fn packed_16_bit_integer_operations_work_on_both_halves() {
        // v3 = [lo -5, hi 3], v4 = [lo 7, hi -32767]; then OP v2, v3, v4 (two words).
        let set = [0x7E0602FF, 0x0003_FFFB, 0x7E0802FF, 0x8001_0007];
        let with = |w: [u32; 2]| lanes(&[&set[..], &w[..]].concat(), 1)[0];
        for (name, w, want) in [
            ("v_pk_add_u16", [0xCC0A4002, 0x18020903], 0x8004_0002),
            ("v_pk_sub_i16", [0xCC034002, 0x18020903], 0x8002_FFF4),
            ("v_pk_mul_lo_u16", [0xCC014002, 0x18020903], 0x8003_FFDD),
            ("v_pk_max_i16", [0xCC074002, 0x18020903], 0x0003_0007),
            ("v_pk_max_u16", [0xCC0C4002, 0x18020903], 0x8001_FFFB),
            ("v_pk_min_i16", [0xCC084002, 0x18020903], 0x8001_FFFB),
            // Shifts: the amount is the first source's half (mod 16).
            ("v_pk_ashrrev_i16", [0xCC064002, 0x18020903], 0xF000_0000),
            ("v_pk_lshrrev_b16", [0xCC054002, 0x18020903], 0x1000_0000),
            ("v_pk_lshlrev_b16", [0xCC044002, 0x18020903], 0x0008_3800),
            // op_sel:[1,0] op_sel_hi:[0,1]: the low result adds v3's high half and v4's low one.
            ("v_pk_add_u16 (op_sel)", [0xCC0A4802, 0x10020903], 0x7FFC_000A),
            ("v_pk_mad_u16 v2, v3, v4, v4", [0xCC094002, 0x1C120903], 0x0004_FFE4),
            // An inline constant's low half for both results (op_sel_hi:[0,1]), as LLVM writes it.
            ("v_pk_ashrrev_i16 v2, 1, v4", [0xCC064002, 0x10020881], 0xC000_0003),
        ] {
            assert_eq!(with(w), want, "{name}");
        }
        // v_pk_sub_i16 v2, 0, v4 (op_sel_hi default): 0 is 0 in both halves either way.
        assert_eq!(with([0xCC034002, 0x18020880]), 0x7FFF_FFF9);
        // The high half of an inline constant such as 1 is not something the emulator guesses.
        let code = [&[LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET], &set[..], &[0xCC064002, 0x18020881, END]].concat();
        let e = run(&code, 1).0.expect_err("refused").to_string();
        assert!(e.contains("high half of an inline constant"), "{e}");
    }

    #[test]
    fn bytes_convert_to_floats_and_leading_sign_bits_count() {
        // v3 = 0x80c0fe01; then OP v2, v3.
        let with = |w: u32| lanes(&[0x7E0602FF, 0x80C0_FE01, w], 1)[0];
        assert_eq!(with(0x7E042503), 254.0f32.to_bits(), "v_cvt_f32_ubyte1");
        assert_eq!(with(0x7E042703), 192.0f32.to_bits(), "v_cvt_f32_ubyte2");
        assert_eq!(with(0x7E042903), 128.0f32.to_bits(), "v_cvt_f32_ubyte3");
        assert_eq!(with(0x7E047703), 1, "v_cls_i32");
        // v4 = 0x0f0f00ff; v_xnor_b32_e32 v2, v3, v4.
        assert_eq!(
            lanes(&[0x7E0602FF, 0x80C0_FE01, 0x7E0802FF, 0x0F0F_00FF, 0x3C040903], 1)[0],
            !(0x80C0_FE01u32 ^ 0x0F0F_00FF)
        );
    }

    #[test]
    fn sop2_packs_halves_and_fused_shift_adds() {
        // s4 = 0x11112222, s5 = 0x33334444; OP s6, ...; v_mov_b32 v2, s6.
        let set = [0xBE8400FF, 0x1111_2222, 0xBE8500FF, 0x3333_4444];
        let with = |w: &[u32]| lanes(&[&set[..], w, &[0x7E040206]].concat(), 1)[0];
        for (name, w, want) in [
            ("s_pack_ll_b32_b16", 0x99060504, 0x4444_2222),
            ("s_pack_lh_b32_b16", 0x99860504, 0x3333_2222),
            ("s_pack_hh_b32_b16", 0x9A060504, 0x3333_1111),
            ("s_pack_hl_b32_b16", 0x9A860504, 0x4444_1111),
            ("s_lshl2_add_u32", 0x87860504, 0x7777_CCCC),
            ("s_nand_b32", 0x8E060504, 0xEEEE_FFFF),
            ("s_xnor_b32", 0x90060504, 0xDDDD_9999),
            ("s_absdiff_i32 s6, s5, s4", 0x83060405, 0x2222_2222),
            ("s_bfm_b32 s6, 5, 3", 0x95068385, 0xF8),
        ] {
            assert_eq!(with(&[w]), want, "{name}");
        }
        // s_not_b64 s[6:7], s[4:5]: both words; s_cmov_b64 s[6:7], s[4:5] after a true compare.
        let not = [0xBE861F04];
        assert_eq!(with(&[0xBE8400FF, 0xFFFF, not[0]]), 0xFFFF_0000);
        assert_eq!(lanes(&[&set[..], &[not[0], 0x7E040207]].concat(), 1)[0], !0x3333_4444u32);
        assert_eq!(with(&[0xBE861F04, 0xBF060404, 0xBE860304]), 0x1111_2222);
        // The 64-bit bit counts of s[4:5] = 0x00f00000_00000000.
        let pair = [0xBE840080, 0xBE8500FF, 0x00F0_0000];
        for (name, w, want) in [
            ("s_ctz_i32_b64", 0xBE860904, 52),
            ("s_clz_i32_u64", 0xBE860B04, 8),
            ("s_bcnt1_i32_b64", 0xBE861904, 4),
            ("s_brev_b64 (low word)", 0xBE860504, 0xF00),
        ] {
            assert_eq!(with(&[&pair[..], &[w]].concat()), want, "{name}");
        }
        // s_lshl2_add_u32 s6, s5, s5 carries out: SCC = 1 (s_addc_u32 s6, 0, 0 reads it).
        assert_eq!(with(&[0x87860505]), 0x5554);
        assert_eq!(with(&[0x87860505, 0x82068080]), 1);
    }

    #[test]
    fn packed_f16_operations_select_and_negate_each_half() {
        // v3 = [lo -2.0, hi 1.0], v4 = [lo 0.5, hi 2.0] (f16); then OP v2, ... (two words).
        let set = [0x7E0602FF, 0x3C00_C000, 0x7E0802FF, 0x4000_3800];
        let with = |w: [u32; 2]| lanes(&[&set[..], &w[..]].concat(), 1)[0];
        for (name, w, want) in [
            ("v_pk_add_f16", [0xCC0F4002, 0x18020903], 0x4200_BE00),
            ("v_pk_mul_f16", [0xCC104002, 0x18020903], 0x4000_BC00),
            ("v_pk_min_f16", [0xCC114002, 0x18020903], 0x3C00_C000),
            ("v_pk_max_f16", [0xCC124002, 0x18020903], 0x4000_3800),
            ("v_pk_fma_f16 v2, v3, v4, v4", [0xCC0E4002, 0x1C120903], 0x4400_B800),
            ("v_pk_add_f16 neg_lo:[1,0] neg_hi:[0,1]", [0xCC0F4202, 0x38020903], 0xBC00_4100),
            ("v_pk_mul_f16 v2, v3, 0.5 op_sel_hi:[1,0]", [0xCC104002, 0x0801E103], 0x3800_BC00),
            ("v_pk_add_f16 op_sel:[1,1] op_sel_hi:[0,0]", [0xCC0F5802, 0x00020903], 0xBE00_4200),
        ] {
            assert_eq!(with(w), want, "{name}");
        }
    }

    #[test]
    fn cross_lane_reads_and_writes() {
        // v_readlane_b32 s4, v0, 5 (= 5); v_writelane_b32 v2, s4, 3 writes lane 3 only.
        let body = [0xD7600004, 0x00010B00, 0xD7610002, 0x00010604];
        assert_eq!(lanes(&body, 4), [0, 0, 0, 5]);
    }

    #[test]
    fn vopc_class_selects_with_cndmask() {
        // v2 = lane as float bits: +0, then denormals. v_cmp_class_f32 s10, v2, 0x60 (-0 or +0);
        // v_cndmask_b32_e64 v2, 1, 2, s10.
        let body = [0x7E040300, 0xD47E000A, 0x0001FF02, 0x00000060, 0xD5010002, 0x00290481];
        assert_eq!(lanes(&body, 3), [2, 1, 1]);
    }

    #[test]
    fn the_reciprocal_of_a_power_of_two_is_exact() {
        // v_rcp_f32 v2, 2.0: the 1 ULP error never applies to an exact result.
        assert_eq!(lanes(&[0x7E0454F4], 1), [0.5f32.to_bits()]);
    }

    #[test]
    fn narrow_loads_extend_and_high_half_stores() {
        let init = [0x80, 0xff, 0x34, 0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        // global_load_i8 v2, v1, s[2:3] sign-extends 0x80; s_waitcnt vmcnt(0).
        let mut code = vec![LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET, 0xDC460000, 0x02020001, 0xBF8903F7];
        code.extend_from_slice(&[STORE_V2[0], STORE_V2[1], END]);
        let (r, buf) = run_with(&code, 1, &init);
        r.expect("runs");
        assert_eq!(&buf[..4], &0xffff_ff80u32.to_le_bytes());
        // global_load_u16 zero-extends 0xff80.
        code[4..6].copy_from_slice(&[0xDC4A0000, 0x02020001]);
        let (r, buf) = run_with(&code, 1, &init);
        r.expect("runs");
        assert_eq!(&buf[..4], &0xff80u32.to_le_bytes());
        // v2 = 0x12345678; global_store_d16_hi_b16 v1, v2, s[2:3] stores 0x1234 only.
        let code = [LOAD_ARG[0], LOAD_ARG[1], WAIT, OFFSET, 0x7E0402FF, 0x12345678, 0xDC960000, 0x00020201, END];
        let (r, buf) = run_with(&code, 1, &init);
        r.expect("runs");
        assert_eq!(&buf[..4], &[0x34, 0x12, 0x34, 0x56]);
    }

    #[test]
    fn atomic_adds_of_every_lane_all_land() {
        // v3 = 0; global_atomic_add_u32 v3, v0, s[2:3]: 32 lanes add their ids to one word.
        let code = [LOAD_ARG[0], LOAD_ARG[1], WAIT, 0x7E060280, 0xDCD60000, 0x00020003, END];
        let (r, buf) = run_with(&code, 32, &[1, 0, 0, 0, 7, 0, 0, 0]);
        r.expect("runs");
        assert_eq!(&buf[..4], &(1 + (0..32).sum::<u32>()).to_le_bytes());
        assert_eq!(&buf[4..8], &7u32.to_le_bytes());
        // At byte 2 (v3 = 2) the add is misaligned: the GPU faults, so the emulator does.
        let code = [LOAD_ARG[0], LOAD_ARG[1], WAIT, 0x7E060282, 0xDCD60000, 0x00020003, END];
        let (r, _) = run_with(&code, 1, &[0; 8]);
        let e = r.expect_err("misaligned").to_string();
        assert!(e.contains("not aligned to 4 bytes"), "{e}");
    }

    #[test]
    fn atomic_compare_and_swap_returns_the_old_value() {
        // memory = 5; v4 = 9 (new), v6 = 5 (compare);
        // global_atomic_cmpswap_b64 v[2:3], v1, v[4:7], s[2:3] glc; s_waitcnt vmcnt(0);
        // global_store_b32 v1, v2, s[2:3] offset:8 (the old value).
        let code = [
            LOAD_ARG[0],
            LOAD_ARG[1],
            WAIT,
            OFFSET,
            0x7E080289,
            0x7E0C0285,
            0xDD0A4000,
            0x02020401,
            0xBF8903F7,
            0xDC6A0008,
            0x00020201,
            END,
        ];
        let mut init = [0u8; 16];
        init[0] = 5;
        let (r, buf) = run_with(&code, 1, &init);
        r.expect("runs");
        assert_eq!(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")), 9);
        assert_eq!(&buf[8..12], &5u32.to_le_bytes());
        // A different compare value leaves memory alone.
        init[0] = 6;
        let (r, buf) = run_with(&code, 1, &init);
        r.expect("runs");
        assert_eq!((buf[0], buf[8]), (6, 6));
    }
}
