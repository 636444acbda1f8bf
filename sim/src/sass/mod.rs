//! A SASS emulator: runs the machine code in a cubin (what ptxas makes of tk's PTX, and what an
//! NVIDIA GPU executes) for sm_80, sm_86 and sm_89, on any machine.
//!
//! A cubin is read and decoded once ([`Program::load`]); a word the emulator does not model is
//! an error at load time, naming the kernel and the offset. A launch runs a grid of blocks;
//! each block's warps of 32 lanes run in a seeded random order, each until it waits at a
//! barrier or exits. Lanes keep their own program counters (Volta's independent thread
//! scheduling): a warp executes the lanes at its lowest program counter together, and
//! convergence barriers (BSSY/BSYNC/BREAK) make lanes wait for the others as the hardware does.
//! Every global access is checked against the launch's buffers (bounds and alignment), every
//! shared access against the block's shared memory, and two lanes touching the same shared
//! byte between barriers (one of them writing) is reported as a missing barrier. Each report
//! names the kernel, the block, the thread and the instruction's offset.

mod decode;
mod exec;
pub mod fp;
pub mod hazard;

pub use decode::{Inst, Op};
pub use tk_isa::sass::SMS;

use crate::ptx::{Arg, Grid};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Bits of a global address that select the buffer (as in the PTX simulator).
const BUF_SHIFT: u32 = 40;
/// Thread-instructions one launch may execute before it is stopped (an endless loop).
pub const MAX_STEPS: u64 = 1 << 34;
/// The size of a constant bank.
const BANK_BYTES: usize = 0x1_0000;

/// What went wrong loading or running SASS.
#[derive(Debug, thiserror::Error)]
pub enum SassError {
    #[error("reading the cubin: {0}")]
    Cubin(#[from] tk_abi::cubin::CubinError),
    #[error("the cubin is for sm_{0}; the SASS emulator runs sm_80, sm_86 and sm_89")]
    Arch(u32),
    #[error(
        "kernel `{kernel}`, offset {offset:#06x}: the SASS emulator does not model this instruction \
         ({text}; word {word:#034x})"
    )]
    Unknown { kernel: String, offset: u32, word: u128, text: String },
    #[error("kernel `{kernel}`, offset {offset:#06x}: {message}")]
    Invalid { kernel: String, offset: u32, message: String },
    #[error("the cubin has no kernel `{0}`")]
    NoKernel(String),
    #[error("kernel `{kernel}` takes {want} arguments, got {got}")]
    Arguments { kernel: String, want: usize, got: usize },
    #[error("kernel `{kernel}`, block {block}, thread {thread}, offset {offset:#06x} ({text}): {message}")]
    Fault { kernel: String, block: u32, thread: u32, offset: u32, text: String, message: String },
    #[error("kernel `{kernel}`: {message}")]
    Launch { kernel: String, message: String },
    #[error("kernel `{kernel}`: interrupted")]
    Interrupted { kernel: String },
}

/// One kernel, decoded.
pub struct Kernel {
    pub name: String,
    /// The instructions, one per 16 bytes of code.
    pub insts: Vec<Inst>,
    /// The words, for reports.
    words: Vec<u128>,
    /// What the hazard checker needs of each instruction.
    hz: Vec<hazard::Info>,
    sm: u32,
    registers: usize,
    param_base: u32,
    params: Vec<tk_abi::cubin::Param>,
    bank0: Vec<u8>,
    bank2: Vec<u8>,
    shared_bytes: usize,
}

/// A cubin's kernels, decoded for the emulator.
pub struct Program {
    /// The architecture the cubin is for (86 for sm_86).
    pub sm: u32,
    pub kernels: Vec<Kernel>,
    /// Whether a host is driving launches (it may interrupt them and wants progress).
    pub host_driven: bool,
    /// Whether launches check each instruction's control bits ([`hazard`]); on by default,
    /// `TK_SASS_HAZARDS=0` turns it off.
    pub check_hazards: bool,
    /// Thread-instructions a launch may execute ([`MAX_STEPS`] unless changed).
    pub max_steps: u64,
}

/// What a lane is doing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum St {
    Run,
    /// Waiting at a BSYNC of convergence barrier n.
    Sync(u8),
    /// Waiting at BAR.SYNC n.
    Bar(u8),
    /// Waiting at a WARPSYNC for the lanes of the mask.
    Warpsync(u32),
    Exit,
}

/// A warp: 32 lanes' registers (register-major: `regs[r * 32 + lane]`), predicates as lane
/// masks, the uniform registers and predicates, and each lane's program counter (an
/// instruction index) and state.
struct Warp {
    /// The first thread's index in the block.
    base: u32,
    regs: Vec<u32>,
    preds: [u32; 7],
    ur: [u32; 64],
    up: u8,
    pc: [u32; 32],
    st: [St; 32],
    /// The lanes each convergence barrier waits for.
    bmask: [u32; 16],
    hz: hazard::Hazards,
}

/// Global memory as a launch sees it: `n` bytes at `addr` (an aligned access of at most 16
/// bytes), checked, or a message saying what is wrong with the address.
pub trait Global {
    fn bytes(&mut self, addr: u64, n: u64) -> Result<&mut [u8], String>;
}

/// The launch's buffers, buffer k at `(k + 1) << BUF_SHIFT` (the simulators' own addressing).
struct Buffers<'a, 'm>(&'a mut [&'m mut [u8]]);

impl Global for Buffers<'_, '_> {
    fn bytes(&mut self, addr: u64, n: u64) -> Result<&mut [u8], String> {
        let b = (addr >> BUF_SHIFT) as usize;
        let off = addr & ((1u64 << BUF_SHIFT) - 1);
        if b == 0 || b > self.0.len() {
            return Err(format!("global access at address {addr:#x} is in no buffer of the launch"));
        }
        if !off.is_multiple_of(n) {
            return Err(format!("misaligned global access of {n} bytes at offset {off} of buffer {}", b - 1));
        }
        let len = self.0[b - 1].len() as u64;
        if off + n > len {
            return Err(format!(
                "global access of {n} bytes at offset {off} of buffer {} is out of bounds (the buffer has {len} bytes, \
                 element {} of {})",
                b - 1,
                off / n,
                len / n
            ));
        }
        Ok(&mut self.0[b - 1][off as usize..(off + n) as usize])
    }
}

/// The last accesses to one shared-memory byte in the current barrier interval.
#[derive(Clone, Copy)]
struct Track {
    epoch: u64,
    writer: u32,
    reader: u32,
}

const NONE: u32 = u32::MAX;
const MANY: u32 = u32::MAX - 1;

/// A fault inside a warp: the lane and the message (the block adds the rest).
struct Fault {
    lane: usize,
    message: String,
    /// The instruction's index (set by [`Env::run`]).
    pc: u32,
}

/// What a block's warps share while one runs.
struct Env<'a> {
    k: &'a Kernel,
    bank0: &'a [u8],
    bank2: &'a [u8],
    ctaid: u32,
    mem: &'a mut dyn Global,
    shared: &'a mut [u8],
    track: &'a mut [Track],
    epoch: u64,
    steps: u64,
    max_steps: u64,
    /// The thread whose instructions are printed (`TK_SASS_TRACE=BLOCK.THREAD`).
    trace: Option<u32>,
    /// Whether the hazard checker runs.
    hazards: bool,
    /// Whether to look for the host's interrupt request while a warp runs, and whether it came.
    host_driven: bool,
    interrupted: bool,
}

impl Program {
    /// Reads a cubin and decodes every kernel's code.
    pub fn load(cubin: &[u8]) -> Result<Program, SassError> {
        let c = tk_abi::cubin::read(cubin)?;
        if !tk_isa::sass::SMS.contains(&c.sm) {
            return Err(SassError::Arch(c.sm));
        }
        let mut kernels = Vec::new();
        for k in c.kernels.iter().filter(|k| k.entry) {
            kernels.push(Kernel::decode(k, c.sm)?);
        }
        let check_hazards = std::env::var("TK_SASS_HAZARDS").map_or(true, |v| v != "0");
        Ok(Program { sm: c.sm, kernels, host_driven: false, check_hazards, max_steps: MAX_STEPS })
    }

    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }

    /// Runs kernel `name` on a grid; `seed` fixes the order warps run in. Returns the number of
    /// thread-instructions executed.
    pub fn launch(&self, name: &str, grid: Grid, args: &mut [Arg<'_>], seed: u64) -> Result<u64, SassError> {
        let k = self.kernel(name).ok_or_else(|| SassError::NoKernel(name.into()))?;
        if args.len() != k.params.len() {
            return Err(SassError::Arguments { kernel: name.into(), want: k.params.len(), got: args.len() });
        }
        let launch_err = |m: String| SassError::Launch { kernel: name.into(), message: m };
        if grid.threads == 0 || grid.threads > 1024 {
            return Err(launch_err(format!("{} threads per block", grid.threads)));
        }
        let mut bank0 = k.bank0.clone();
        // The driver's part of bank 0 (the CUDA ABI's layout): the block and grid sizes.
        for (at, v) in [(0x0, grid.threads), (0x4, 1), (0x8, 1), (0xc, grid.blocks), (0x10, 1), (0x14, 1)] {
            bank0[at..at + 4].copy_from_slice(&u32::to_le_bytes(v));
        }
        let mut mem: Vec<&mut [u8]> = Vec::new();
        for (p, a) in k.params.iter().zip(args.iter_mut()) {
            let at = (k.param_base + u32::from(p.offset)) as usize;
            let v = match a {
                Arg::Buffer(b) => {
                    let v = (mem.len() as u64 + 1) << BUF_SHIFT;
                    mem.push(b);
                    v
                }
                Arg::Int(v) => *v as u64,
            };
            let n = usize::from(p.size).min(8);
            bank0[at..at + n].copy_from_slice(&v.to_le_bytes()[..n]);
        }
        self.run(k, grid, &bank0, &k.bank2, &mut Buffers(&mut mem), seed)
    }

    /// Runs kernel `k` on a grid as a GPU's front end would start it: constant banks 0 and 2 as
    /// given (bank 0 holds the grid's sizes and the parameters where the code reads them) and
    /// global memory through `global`. Returns the thread-instructions executed.
    pub fn launch_raw(
        &self,
        k: &Kernel,
        grid: Grid,
        (bank0, bank2): (&[u8], &[u8]),
        global: &mut dyn Global,
        seed: u64,
    ) -> Result<u64, SassError> {
        if grid.threads == 0 || grid.threads > 1024 {
            return Err(SassError::Launch {
                kernel: k.name.clone(),
                message: format!("{} threads per block", grid.threads),
            });
        }
        self.run(k, grid, bank0, bank2, global, seed)
    }

    fn run(
        &self,
        k: &Kernel,
        grid: Grid,
        bank0: &[u8],
        bank2: &[u8],
        global: &mut dyn Global,
        seed: u64,
    ) -> Result<u64, SassError> {
        let name = k.name.as_str();
        let launch_err = |m: String| SassError::Launch { kernel: name.into(), message: m };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut steps = 0u64;
        if self.host_driven {
            tk_abi::progress::units(u64::from(grid.blocks));
        }
        let nwarps = grid.threads.div_ceil(32) as usize;
        // A debugging aid: `TK_SASS_TRACE=B.T` prints what thread T of block B executes.
        let trace: Option<(u32, u32)> = std::env::var("TK_SASS_TRACE").ok().and_then(|v| {
            let (b, t) = v.split_once('.')?;
            Some((b.parse().ok()?, t.parse().ok()?))
        });
        for b in 0..grid.blocks {
            let mut shared = vec![0u8; k.shared_bytes];
            let mut track = vec![Track { epoch: u64::MAX, writer: NONE, reader: NONE }; k.shared_bytes];
            let mut warps: Vec<Warp> = (0..nwarps)
                .map(|w| {
                    let base = w as u32 * 32;
                    let lanes = (grid.threads - base).min(32) as usize;
                    let mut st = [St::Exit; 32];
                    st[..lanes].fill(St::Run);
                    Warp {
                        base,
                        // All 255 registers exist (a hostile word cannot index past them); the
                        // kernel's own count is checked at load.
                        regs: vec![0; 256 * 32],
                        preds: [0; 7],
                        ur: [0; 64],
                        up: 0,
                        pc: [0; 32],
                        st,
                        bmask: [0; 16],
                        hz: hazard::Hazards::default(),
                    }
                })
                .collect();
            let mut env = Env {
                k,
                bank0,
                bank2,
                ctaid: b,
                mem: &mut *global,
                shared: &mut shared,
                track: &mut track,
                epoch: 0,
                steps,
                max_steps: self.max_steps,
                trace: trace.filter(|&(tb, _)| tb == b).map(|(_, t)| t),
                hazards: self.check_hazards,
                host_driven: self.host_driven,
                interrupted: false,
            };
            let mut order: Vec<usize> = (0..nwarps).collect();
            loop {
                if self.host_driven && tk_abi::interrupt::requested() {
                    return Err(SassError::Interrupted { kernel: name.into() });
                }
                order.shuffle(&mut rng);
                for &w in &order {
                    let warp = &mut warps[w];
                    env.run(warp).map_err(|f| env.fault(warp, f))?;
                    if env.interrupted {
                        return Err(SassError::Interrupted { kernel: name.into() });
                    }
                    if env.steps > self.max_steps {
                        return Err(launch_err(format!(
                            "stopped after {} instructions (an endless loop?)",
                            self.max_steps
                        )));
                    }
                }
                // Every lane waits at a barrier, waits at a convergence barrier, or has exited.
                let mut waiting = None;
                for (wi, warp) in warps.iter().enumerate() {
                    for l in 0..32 {
                        let message = match warp.st[l] {
                            St::Bar(id) => match waiting {
                                None => {
                                    waiting = Some((id, wi, l));
                                    continue;
                                }
                                Some((first, fw, fl)) if first != id => format!(
                                    "barrier divergence: thread {} waits at barrier {first}, this thread at barrier {id}",
                                    warps[fw].base + fl as u32
                                ),
                                _ => continue,
                            },
                            St::Warpsync(_) => {
                                "deadlock: this thread waits at WARPSYNC for threads that never arrive".to_string()
                            }
                            St::Sync(bn) => format!(
                                "deadlock: this thread waits at BSYNC B{bn} for threads that wait at a block barrier or \
                                 never arrive"
                            ),
                            _ => continue,
                        };
                        return Err(env.fault(warp, Fault { pc: warp.pc[l], lane: l, message }));
                    }
                }
                if waiting.is_none() {
                    break;
                }
                for warp in &mut warps {
                    for l in 0..32 {
                        if let St::Bar(_) = warp.st[l] {
                            warp.st[l] = St::Run;
                        }
                    }
                }
                env.epoch += 1;
            }
            steps = env.steps;
            if self.host_driven {
                tk_abi::progress::advance(1);
            }
        }
        Ok(steps)
    }
}

/// Where a kernel's code ends when all a GPU's front end knows is where it starts: just after
/// the branch to itself that closes every kernel ptxas writes (the loop after its last EXIT).
/// None when a word before it is not SASS the emulator knows, or there is no such branch.
pub fn code_end(code: &[u8], sm: u32) -> Option<usize> {
    for (i, c) in code.chunks_exact(16).enumerate() {
        let mut b = [0u8; 16];
        b.copy_from_slice(c);
        let at = (i * 16) as u32;
        let inst = decode::decode(tk_isa::sass::word(&b), at, sm)?;
        if matches!(inst.op, Op::Bra { .. }) && exec::target(&inst.op) == Some(at) {
            return Some(at as usize + 16);
        }
    }
    None
}

impl Kernel {
    /// A kernel from its machine code alone, as a GPU's front end finds it in memory: `code`
    /// (whole 16-byte words), the registers per thread and the shared memory its launch gives
    /// it. The constant banks come with each launch ([`Program::launch_raw`]).
    pub fn from_code(name: &str, code: &[u8], sm: u32, registers: u32, shared_bytes: u64) -> Result<Kernel, SassError> {
        if !tk_isa::sass::SMS.contains(&sm) {
            return Err(SassError::Arch(sm));
        }
        let k = tk_abi::cubin::Kernel {
            name: name.to_string(),
            entry: true,
            code: code[..code.len() / 16 * 16].to_vec(),
            registers,
            barriers: 0,
            param_base: 0,
            param_bytes: 0,
            params: Vec::new(),
            exit_offsets: Vec::new(),
            frame_size: 0,
            min_stack_size: 0,
            constant0: Vec::new(),
            constant2: Vec::new(),
            shared_bytes,
            relocations: Vec::new(),
            attributes: Vec::new(),
        };
        Kernel::decode(&k, sm)
    }

    fn decode(k: &tk_abi::cubin::Kernel, sm: u32) -> Result<Kernel, SassError> {
        let n = k.code.len() / 16;
        let mut insts = Vec::with_capacity(n);
        let mut words = Vec::with_capacity(n);
        for i in 0..n {
            let mut b = [0u8; 16];
            b.copy_from_slice(&k.code[i * 16..i * 16 + 16]);
            let w = tk_isa::sass::word(&b);
            let at = (i * 16) as u32;
            let Some(inst) = decode::decode(w, at, sm) else {
                let text = tk_isa::sass::print(w, sm, u64::from(at), &|t| Some(format!("{t:#x}")))
                    .map_or_else(|| "not in tk's SASS tables".to_string(), |t| t.to_string());
                return Err(SassError::Unknown { kernel: k.name.clone(), offset: at, word: w, text });
            };
            insts.push(inst);
            words.push(w);
        }
        let registers = (k.registers as usize).clamp(1, 255);
        let bad = |offset: u32, message: String| SassError::Invalid { kernel: k.name.clone(), offset, message };
        for (i, inst) in insts.iter().enumerate() {
            let at = (i * 16) as u32;
            let text = || {
                tk_isa::sass::print(words[i], sm, u64::from(at), &|t| Some(format!("{t:#x}")))
                    .map_or_else(String::new, |t| t.to_string())
            };
            if let Some(r) =
                exec::max_register(&inst.op).filter(|&r| !inst.uniform && r as usize >= registers && r != 255)
            {
                return Err(bad(
                    at,
                    format!("{} uses R{r}, but the cubin gives the kernel {registers} registers per thread", text()),
                ));
            }
            if let Some(t) = exec::target(&inst.op)
                && (t % 16 != 0 || t as usize / 16 >= n)
            {
                return Err(bad(at, format!("branches to {t:#x}, outside the kernel's {} bytes of code", n * 16)));
            }
        }
        let mut bank0 = k.constant0.clone();
        bank0.resize(BANK_BYTES, 0);
        if k.param_base as usize + k.param_bytes as usize > BANK_BYTES {
            return Err(bad(0, "the parameters lie outside constant bank 0".into()));
        }
        for p in &k.params {
            if (k.param_base + u32::from(p.offset) + u32::from(p.size)) as usize > BANK_BYTES {
                return Err(bad(0, format!("parameter {} lies outside constant bank 0", p.ordinal)));
            }
        }
        let hz = insts
            .iter()
            .zip(&words)
            .map(|(i, &w)| hazard::info(&i.op, tk_isa::sass::bits(w, 0, 9), i.uniform, i.guard))
            .collect();
        let mut bank2 = k.constant2.clone();
        bank2.resize(BANK_BYTES, 0);
        Ok(Kernel {
            name: k.name.clone(),
            insts,
            words,
            hz,
            sm,
            registers,
            param_base: k.param_base,
            params: k.params.clone(),
            bank0,
            bank2,
            shared_bytes: k.shared_bytes.min(228 << 10) as usize,
        })
    }

    /// The word of instruction `i`.
    pub fn word(&self, i: usize) -> Option<u128> {
        self.words.get(i).copied()
    }

    /// What the hazard checker knows of instruction `i`.
    pub fn hazard_info(&self, i: usize) -> Option<&hazard::Info> {
        self.hz.get(i)
    }

    /// The text of the instruction at index `i`, for reports.
    fn text(&self, i: usize) -> String {
        let Some(&w) = self.words.get(i) else { return "past the end of the code".into() };
        tk_isa::sass::print(w, self.sm, (i * 16) as u64, &|t| Some(format!("{t:#x}")))
            .map_or_else(|| format!("{w:#034x}"), |t| t.to_string())
    }
}

impl Env<'_> {
    /// Lane `l`'s registers, predicates and the uniform registers, named (for tracing).
    fn snapshot(&self, w: &Warp, l: usize) -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = (0..self.k.registers).map(|r| (format!("R{r}"), w.regs[r * 32 + l])).collect();
        v.extend((0..7).map(|p| (format!("P{p}"), w.preds[p] >> l & 1)));
        v.extend((0..63).map(|u| (format!("UR{u}"), w.ur[u])));
        v.extend((0..7).map(|p| (format!("UP{p}"), u32::from(w.up >> p & 1))));
        v.push(("pc".into(), w.pc[l] * 16));
        v
    }

    fn fault(&self, w: &Warp, f: Fault) -> SassError {
        let i = f.pc as usize;
        SassError::Fault {
            kernel: self.k.name.clone(),
            block: self.ctaid,
            thread: w.base + f.lane as u32,
            offset: (i * 16) as u32,
            text: self.k.text(i),
            message: f.message,
        }
    }

    /// Runs a warp until every lane waits at a barrier or has exited.
    fn run(&mut self, w: &mut Warp) -> Result<(), Fault> {
        let mut issued = 0u32;
        loop {
            // A long-running warp still answers the host's interrupt (Ctrl-C in the REPL).
            issued = issued.wrapping_add(1);
            if self.host_driven && issued.is_multiple_of(1 << 16) && tk_abi::interrupt::requested() {
                self.interrupted = true;
                return Ok(());
            }
            let mut pc = u32::MAX;
            let mut mask = 0u32;
            for l in 0..32 {
                if w.st[l] == St::Run {
                    if w.pc[l] < pc {
                        pc = w.pc[l];
                        mask = 1 << l;
                    } else if w.pc[l] == pc {
                        mask |= 1 << l;
                    }
                }
            }
            if mask == 0 {
                return Ok(());
            }
            let Some(inst) = self.k.insts.get(pc as usize) else {
                return Err(Fault {
                    lane: mask.trailing_zeros() as usize,
                    message: "ran past the end of the code".into(),
                    pc,
                });
            };
            self.steps += u64::from(mask.count_ones());
            if self.steps > self.max_steps {
                return Ok(());
            }
            if self.hazards {
                let on = if inst.uniform {
                    if exec::guard(w, inst.guard, 0) { u32::MAX } else { 0 }
                } else {
                    exec::lanes(mask).filter(|&l| exec::guard(w, inst.guard, l)).fold(0, |m, l| m | 1 << l)
                };
                let k = self.k;
                w.hz.issue(pc, inst.ctrl, &k.hz[pc as usize], mask, on, &|p| k.text(p as usize))
                    .map_err(|m| Fault { lane: mask.trailing_zeros() as usize, message: m, pc })?;
            }
            let traced = self.trace.filter(|&t| t >= w.base && t < w.base + 32 && mask >> (t - w.base) & 1 == 1);
            let before = traced.map(|t| self.snapshot(w, (t - w.base) as usize));
            self.step(w, inst, pc, mask).map_err(|f| Fault { pc, ..f })?;
            if let (Some(t), Some(before)) = (traced, before) {
                let after = self.snapshot(w, (t - w.base) as usize);
                let changed: Vec<String> = before
                    .iter()
                    .zip(&after)
                    .filter(|(a, b)| a != b)
                    .map(|(_, (name, v))| format!("{name}={v:#x}"))
                    .collect();
                eprintln!("{:04x}  {:<50} {}", pc * 16, self.k.text(pc as usize), changed.join(" "));
            }
        }
    }

    /// The global memory of `n` bytes at `addr`, checked.
    fn global(&mut self, addr: u64, n: u64) -> Result<&mut [u8], String> {
        self.mem.bytes(addr, n)
    }

    /// The shared memory of `n` bytes at `addr` for thread `tid`, checked for bounds and for
    /// races with other threads since the last barrier.
    fn shared(&mut self, tid: u32, addr: u64, n: u64, write: bool) -> Result<&mut [u8], String> {
        let end = addr.saturating_add(n);
        if end > self.shared.len() as u64 {
            return Err(format!(
                "shared-memory access of {n} bytes at address {addr:#x} is out of bounds (the block has {} bytes)",
                self.shared.len()
            ));
        }
        if !addr.is_multiple_of(n) {
            return Err(format!("misaligned shared-memory access of {n} bytes at address {addr:#x}"));
        }
        for a in addr..end {
            let tr = &mut self.track[a as usize];
            if tr.epoch != self.epoch {
                *tr = Track { epoch: self.epoch, writer: NONE, reader: NONE };
            }
            let other_writer = tr.writer != NONE && tr.writer != tid;
            let other_reader = tr.reader != NONE && tr.reader != tid;
            if other_writer || (write && other_reader) {
                let other = if other_writer { tr.writer } else { tr.reader };
                let other = if other == MANY { "other threads".to_string() } else { format!("thread {other}") };
                return Err(format!(
                    "shared-memory race: this thread {} address {a:#x}, which {other} {} since the last barrier (a \
                     missing barrier)",
                    if write { "writes" } else { "reads" },
                    if other_writer { "wrote" } else { "read" }
                ));
            }
            if write {
                tr.writer = tid;
            } else if tr.reader == NONE {
                tr.reader = tid;
            } else if tr.reader != tid {
                tr.reader = MANY;
            }
        }
        Ok(&mut self.shared[addr as usize..end as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The low 12 bits (base opcode and operand form) of the instructions the emulator models.
    const OPCODES: [u32; 40] = [
        0x224, 0x225, 0x227, 0x824, 0xa24, 0xc24, 0x210, 0x810, 0x20c, 0x80c, 0x207, 0x807, 0x208, 0x202, 0x802, 0x212,
        0x812, 0x219, 0x819, 0x211, 0x21c, 0x203, 0x804, 0x216, 0x21a, 0x217, 0x223, 0x221, 0x220, 0x20b, 0x22a, 0x22b,
        0x229, 0x228, 0x308, 0x302, 0x310, 0x311, 0x312, 0x313,
    ];
    const OTHERS: [u32; 24] = [
        0x981, 0x986, 0x98e, 0x3a9, 0xab9, 0x882, 0xc82, 0x919, 0x9c3, 0x805, 0x3c2, 0x947, 0x945, 0x941, 0x942, 0x944,
        0x950, 0x94d, 0x948, 0x984, 0x388, 0xb1d, 0x886, 0x2a4,
    ];

    /// A kernel of `words` (those the emulator decodes) taking two buffers.
    fn kernel(words: &[u128]) -> Option<Kernel> {
        let code: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let p = |ordinal, offset| tk_abi::cubin::Param { ordinal, offset, size: 8 };
        let k = tk_abi::cubin::Kernel {
            name: "k".into(),
            entry: true,
            code,
            registers: 255,
            barriers: 1,
            param_base: 0x160,
            param_bytes: 16,
            params: vec![p(0, 0), p(1, 8)],
            exit_offsets: Vec::new(),
            frame_size: 0,
            min_stack_size: 0,
            constant0: vec![0; 0x170],
            constant2: vec![0; 64],
            shared_bytes: 256,
            relocations: Vec::new(),
            attributes: Vec::new(),
        };
        Kernel::decode(&k, 86).ok()
    }

    /// A warp in an endless loop answers the host's interrupt request (Ctrl-C in the REPL)
    /// instead of running to the step limit.
    #[test]
    fn an_endless_loop_is_interrupted() {
        // `BRA` to itself (ptxas's closing self-branch: offset -16, no guard, no wait).
        let _turn = crate::INTERRUPT_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        let bra = 0x000f_c000_0383_ffff_ffff_fff0_0000_7947u128;
        let k = kernel(&[bra]).expect("decodes");
        let p = Program { sm: 86, kernels: vec![k], host_driven: true, check_hazards: false, max_steps: u64::MAX };
        let (mut a, mut b) = (vec![0u8; 4], vec![0u8; 4]);
        let mut args = [Arg::Buffer(&mut a), Arg::Buffer(&mut b)];
        tk_abi::interrupt::request();
        let r = p.launch("k", Grid { blocks: 1, threads: 32 }, &mut args, 0);
        tk_abi::interrupt::clear();
        assert!(matches!(r, Err(SassError::Interrupted { .. })), "{r:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 3000, ..Default::default() })]
        /// Hostile code (modelled opcodes with random operands, modifiers and control bits)
        /// loads or is refused, and runs to an error or an end, never a panic.
        #[test]
        fn random_code_never_panics(
            words in proptest::collection::vec((0usize..64, proptest::num::u64::ANY, proptest::num::u64::ANY), 1..24),
            seed in proptest::num::u64::ANY,
        ) {
            let words: Vec<u128> = words
                .into_iter()
                .map(|(i, lo, hi)| {
                    let op = if i < OPCODES.len() { OPCODES[i] } else { OTHERS[i % OTHERS.len()] };
                    (u128::from(hi) << 64 | u128::from(lo)) & !0xfff | u128::from(op)
                })
                .filter(|&w| decode::decode(w, 0, 86).is_some())
                .collect();
            if let Some(k) = kernel(&words) {
                let p = Program { sm: 86, kernels: vec![k], host_driven: false, check_hazards: seed % 2 == 0, max_steps: 20_000 };
                let (mut a, mut b) = (vec![0u8; 256], vec![0u8; 256]);
                let mut args = [Arg::Buffer(&mut a), Arg::Buffer(&mut b)];
                // Most runs end past the code's end (random code has no EXIT), after every
                // instruction ran.
                let _ = p.launch("k", Grid { blocks: 2, threads: 48 }, &mut args, seed);
            }
        }
    }
}
