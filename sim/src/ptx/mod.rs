//! A PTX simulator: runs the PTX that tk's NVIDIA backend emits on any machine, so GPU code
//! can be tested and debugged without a GPU.
//!
//! The module is decoded once ([`Module::parse`]); a launch then executes a grid of blocks, each
//! a set of threads grouped in warps of 32. Warps run in a seeded random order, each thread until
//! it reaches a barrier or exits, so code that depends on an unsynchronised order shows it.
//! Every global access is checked against the buffers of the launch and every shared access
//! against the block's shared memory; conflicting shared-memory accesses by two threads between
//! two barriers (a missing barrier) and threads waiting at different barriers are reported. Each
//! report names the kernel, the block and thread, the address and buffer and the PTX line.
//! Nothing the simulated program does can crash the simulator.

mod parse;

pub use parse::{Func, Module, ParseError};

use parse::{Bin, Cmp, Inst, Op, Opnd, Rnd, Space, Sreg, Ty, Un};
use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Bits of a global address that select the buffer (the rest is the offset in it).
const BUF_SHIFT: u32 = 40;
/// Instructions one launch may execute before it is stopped (an endless loop).
pub const MAX_STEPS: u64 = 1 << 34;

/// One kernel argument.
pub enum Arg<'a> {
    /// A buffer: its global address is [`buffer_address`] of its index among the buffers.
    Buffer(&'a mut [u8]),
    /// An integer parameter (`.s64`, `.u64`, ...).
    Int(i64),
}

/// The global address of buffer `i` of a launch (buffers are numbered in argument order).
pub fn buffer_address(i: usize) -> u64 {
    (i as u64 + 1) << BUF_SHIFT
}

/// The grid of a launch.
#[derive(Clone, Copy, Debug)]
pub struct Grid {
    pub blocks: u32,
    pub threads: u32,
}

/// What went wrong in a simulated launch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SimError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("the module has no kernel `{0}`")]
    NoKernel(String),
    #[error("kernel `{kernel}` takes {want} arguments, got {got}")]
    Arguments { kernel: String, want: usize, got: usize },
    /// `loc` is the `.tk` source (file, lo, hi) of the access when the PTX says it.
    #[error("kernel `{kernel}`, block {block}, thread {thread}, PTX line {line}: {message}")]
    Fault { kernel: String, block: u32, thread: u32, line: u32, message: String, loc: Option<(u32, u32, u32)> },
    #[error("kernel `{kernel}`: {message}")]
    Launch { kernel: String, message: String },
    /// The host asked the run to stop ([`tk_abi::interrupt`]).
    #[error("kernel `{kernel}`: interrupted")]
    Interrupted { kernel: String },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    AtBarrier,
    Exited,
}

struct Thread {
    tid: u32,
    pc: usize,
    regs: Vec<u64>,
    state: State,
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

struct Block<'m> {
    f: &'m Func,
    ctaid: u32,
    grid: Grid,
    shared: Vec<u8>,
    track: Vec<Track>,
    epoch: u64,
}

struct Fault {
    line: u32,
    message: String,
    loc: Option<(u32, u32, u32)>,
}

fn fault<T>(inst: &Inst, m: impl Into<String>) -> Result<T, Fault> {
    Err(Fault { line: inst.line, message: m.into(), loc: inst.loc })
}

impl Module {
    /// Runs kernel `name` on a grid. `seed` fixes the order warps run in.
    pub fn launch(&self, name: &str, grid: Grid, args: &mut [Arg<'_>], seed: u64) -> Result<u64, SimError> {
        let f = self.funcs.iter().find(|f| f.name == name).ok_or_else(|| SimError::NoKernel(name.into()))?;
        if args.len() != f.params.len() {
            return Err(SimError::Arguments { kernel: name.into(), want: f.params.len(), got: args.len() });
        }
        if grid.threads == 0 || grid.threads > 1024 {
            return Err(SimError::Launch {
                kernel: name.into(),
                message: format!("{} threads per block", grid.threads),
            });
        }
        let mut params = Vec::with_capacity(args.len());
        let mut mem: Vec<&mut [u8]> = Vec::new();
        for a in args.iter_mut() {
            match a {
                Arg::Buffer(b) => {
                    params.push(buffer_address(mem.len()));
                    mem.push(b);
                }
                Arg::Int(v) => params.push(*v as u64),
            }
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut steps = 0u64;
        if self.host_driven {
            tk_abi::progress::units(u64::from(grid.blocks));
        }
        for b in 0..grid.blocks {
            let mut block = Block {
                f,
                ctaid: b,
                grid,
                shared: vec![0; f.shared_bytes as usize],
                track: vec![Track { epoch: u64::MAX, writer: NONE, reader: NONE }; f.shared_bytes as usize],
                epoch: 0,
            };
            let mut threads: Vec<Thread> = (0..grid.threads)
                .map(|t| Thread { tid: t, pc: 0, regs: vec![0; f.nregs], state: State::Running })
                .collect();
            let warps = grid.threads.div_ceil(32) as usize;
            let mut order: Vec<usize> = (0..warps).collect();
            loop {
                if self.host_driven && tk_abi::interrupt::requested() {
                    return Err(SimError::Interrupted { kernel: name.into() });
                }
                order.shuffle(&mut rng);
                let mut ran = false;
                for &w in &order {
                    let lo = w * 32;
                    let hi = (lo + 32).min(threads.len());
                    for t in &mut threads[lo..hi] {
                        if t.state != State::Running {
                            continue;
                        }
                        ran = true;
                        block.run(t, &params, &mut mem, &mut steps).map_err(|e| SimError::Fault {
                            kernel: name.into(),
                            block: b,
                            thread: t.tid,
                            line: e.line,
                            message: e.message,
                            loc: e.loc,
                        })?;
                        if steps > MAX_STEPS {
                            return Err(SimError::Launch {
                                kernel: name.into(),
                                message: format!("stopped after {MAX_STEPS} instructions (an endless loop?)"),
                            });
                        }
                    }
                }
                if ran {
                    continue;
                }
                // Every thread waits at a barrier or has exited: release the barrier.
                let waiting: Vec<&Thread> = threads.iter().filter(|t| t.state == State::AtBarrier).collect();
                let Some(first) = waiting.first() else { break };
                if let Some(other) = waiting.iter().find(|t| t.pc != first.pc) {
                    let line = |t: &Thread| f.insts.get(t.pc.wrapping_sub(1)).map_or(0, |i| i.line);
                    return Err(SimError::Fault {
                        kernel: name.into(),
                        block: b,
                        thread: other.tid,
                        line: line(other),
                        message: format!(
                            "barrier divergence: thread {} waits at the barrier of PTX line {}, thread {} at line {}",
                            first.tid,
                            line(first),
                            other.tid,
                            line(other)
                        ),
                        loc: None,
                    });
                }
                for t in &mut threads {
                    if t.state == State::AtBarrier {
                        t.state = State::Running;
                    }
                }
                block.epoch += 1;
            }
            if self.host_driven {
                tk_abi::progress::advance(1);
            }
        }
        Ok(steps)
    }
}

fn f32v(b: u64) -> f32 {
    f32::from_bits(b as u32)
}
fn f64v(b: u64) -> f64 {
    f64::from_bits(b)
}
fn f32b(v: f32) -> u64 {
    u64::from(v.to_bits())
}
fn f64b(v: f64) -> u64 {
    v.to_bits()
}

/// A value of type `t` (held in the low bits) widened to i128 with its signedness.
fn int(v: u64, t: Ty) -> i128 {
    match t {
        Ty::S8 => i128::from(v as i8),
        Ty::S16 => i128::from(v as i16),
        Ty::S32 => i128::from(v as i32),
        Ty::S64 => i128::from(v as i64),
        Ty::U8 | Ty::B8 | Ty::Pred => i128::from(v as u8),
        Ty::U16 | Ty::B16 => i128::from(v as u16),
        Ty::U32 | Ty::B32 => i128::from(v as u32),
        _ => i128::from(v),
    }
}

/// Keeps the bits of a value of type `t`.
fn trunc(v: u64, t: Ty) -> u64 {
    match t.bytes() {
        1 => v & 0xff,
        2 => v & 0xffff,
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

/// An f64 rounded to f32 toward zero.
fn f32_rz(x: f64) -> f32 {
    if x.is_nan() || x.is_infinite() {
        return x as f32;
    }
    let r = x as f32;
    if f64::from(r).abs() > x.abs() { f32::from_bits(r.to_bits() - 1) } else { r }
}

impl Block<'_> {
    fn get(&self, t: &Thread, o: &Opnd) -> u64 {
        match *o {
            Opnd::Reg(r) => t.regs[r as usize],
            Opnd::NotReg(r) => u64::from(t.regs[r as usize] == 0),
            Opnd::Imm(v) => v,
            Opnd::Sreg(s) => u64::from(match s {
                Sreg::Tid => t.tid,
                Sreg::Ntid => self.grid.threads,
                Sreg::Ctaid => self.ctaid,
                Sreg::Nctaid => self.grid.blocks,
            }),
            Opnd::Shared(off) => off,
            Opnd::Mem(..) | Opnd::Param(_) => 0,
        }
    }

    fn shared_access(&mut self, tid: u32, addr: u64, n: u64, write: bool, inst: &Inst) -> Result<usize, Fault> {
        let end = addr.saturating_add(n);
        if end > self.shared.len() as u64 {
            let var = self.f.shared.iter().map(|(n, o, b)| format!("{n} at {o}..{}", o + b)).collect::<Vec<_>>();
            return fault(
                inst,
                format!(
                    "shared-memory access of {n} bytes at address {addr} is out of bounds ({} bytes: {})",
                    self.shared.len(),
                    var.join(", ")
                ),
            );
        }
        let buf = |off: u64| {
            self.f
                .shared
                .iter()
                .find(|(_, o, b)| off >= *o && off < o + b)
                .map_or("?".to_string(), |(n, o, _)| format!("{n}[byte {}]", off - o))
        };
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
                let what = if write { "writes" } else { "reads" };
                return fault(
                    inst,
                    format!(
                        "shared-memory race: this thread {what} {} (address {a}), which {other} {} since the last \
                         barrier (a missing barrier)",
                        buf(a),
                        if other_writer { "wrote" } else { "read" }
                    ),
                );
            }
            if write {
                tr.writer = tid;
            } else if tr.reader == NONE {
                tr.reader = tid;
            } else if tr.reader != tid {
                tr.reader = MANY;
            }
        }
        Ok(addr as usize)
    }

    fn global<'b>(mem: &'b mut [&mut [u8]], addr: u64, n: u64, inst: &Inst) -> Result<&'b mut [u8], Fault> {
        let b = (addr >> BUF_SHIFT) as usize;
        let off = addr & ((1u64 << BUF_SHIFT) - 1);
        if b == 0 || b > mem.len() {
            return fault(inst, format!("global access at address {addr:#x} is in no buffer of the launch"));
        }
        let len = mem[b - 1].len() as u64;
        if off + n > len {
            return fault(
                inst,
                format!(
                    "global access of {n} bytes at offset {off} of buffer {} is out of bounds (the buffer has {len} \
                     bytes, element {} of {})",
                    b - 1,
                    off / n.max(1),
                    len / n.max(1)
                ),
            );
        }
        Ok(&mut mem[b - 1][off as usize..(off + n) as usize])
    }

    /// Runs a thread until it reaches a barrier or exits.
    fn run(&mut self, t: &mut Thread, params: &[u64], mem: &mut [&mut [u8]], steps: &mut u64) -> Result<(), Fault> {
        let f = self.f;
        loop {
            let Some(inst) = f.insts.get(t.pc) else {
                t.state = State::Exited;
                return Ok(());
            };
            t.pc += 1;
            *steps += 1;
            if let Some((p, neg)) = inst.guard
                && (t.regs[p as usize] != 0) == neg
            {
                continue;
            }
            let a = &inst.args;
            let dst = match a.first() {
                Some(Opnd::Reg(r)) => *r as usize,
                _ => usize::MAX,
            };
            let src = |i: usize| -> u64 { a.get(i).map_or(0, |o| self.get(t, o)) };
            let v: u64 = match inst.op {
                Op::Bra(target) => {
                    t.pc = target;
                    continue;
                }
                Op::Ret => {
                    t.state = State::Exited;
                    return Ok(());
                }
                Op::Bar => {
                    t.state = State::AtBarrier;
                    return Ok(());
                }
                Op::Un(u, ty) => un(u, ty, src(1)),
                Op::Bin(b, ty) => {
                    let (x, y) = (src(1), src(2));
                    match bin(b, ty, x, y) {
                        Some(v) => v,
                        None => return fault(inst, "integer division by zero"),
                    }
                }
                Op::Mad(ty) => trunc(src(1).wrapping_mul(src(2)).wrapping_add(src(3)), ty),
                Op::Fma(ty) => match ty {
                    Ty::F32 => f32b(f32v(src(1)).mul_add(f32v(src(2)), f32v(src(3)))),
                    _ => f64b(f64v(src(1)).mul_add(f64v(src(2)), f64v(src(3)))),
                },
                Op::Selp(ty) => trunc(if src(3) != 0 { src(1) } else { src(2) }, ty),
                Op::Setp(c, ty) => u64::from(setp(c, ty, src(1), src(2))),
                Op::Cvt { dst: d, src: s, rnd } => cvt(d, s, rnd, src(1)),
                Op::Cvta => src(1),
                Op::Bfe(ty) => {
                    let (x, pos, len) = (src(1), src(2) as u32 & 0xff, src(3) as u32 & 0xff);
                    let bits = (ty.bytes() * 8) as u32;
                    let len = len.min(bits);
                    let pos = pos.min(bits);
                    if len == 0 {
                        0
                    } else {
                        let field = (x >> pos) & if len >= 64 { u64::MAX } else { (1u64 << len) - 1 };
                        if ty.signed() && len < 64 && (field >> (len - 1)) & 1 == 1 {
                            trunc(field | (u64::MAX << len), ty)
                        } else {
                            field
                        }
                    }
                }
                Op::Ld(space, ty) => {
                    let n = ty.bytes();
                    // Loads and stores of global and shared memory must be naturally aligned: a
                    // GPU faults on a misaligned address ("misaligned address").
                    if let (Space::Global | Space::Shared, Some(Opnd::Mem(r, off))) = (space, a.get(1)) {
                        let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                        if !addr.is_multiple_of(n) {
                            return fault(inst, format!("misaligned load: {n} bytes at address {addr:#x}"));
                        }
                    }
                    let raw = match (space, a.get(1)) {
                        (Space::Param, Some(Opnd::Param(p))) => params[*p as usize],
                        (Space::Global, Some(Opnd::Mem(r, off))) => {
                            let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                            let s = Self::global(mem, addr, n, inst)?;
                            le(s)
                        }
                        (Space::Shared, Some(Opnd::Mem(r, off))) => {
                            let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                            let i = self.shared_access(t.tid, addr, n, false, inst)?;
                            le(&self.shared[i..i + n as usize])
                        }
                        _ => return fault(inst, "unsupported load operand"),
                    };
                    // Sub-word integer loads extend to the register.
                    match ty {
                        Ty::S8 | Ty::S16 => int(raw, ty) as u64 & 0xffff_ffff,
                        _ => raw,
                    }
                }
                Op::St(space, ty) => {
                    let n = ty.bytes() as usize;
                    let val = src(1).to_le_bytes();
                    let Some(Opnd::Mem(r, off)) = a.first() else { return fault(inst, "unsupported store operand") };
                    let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                    if !addr.is_multiple_of(n as u64) {
                        return fault(inst, format!("misaligned store: {n} bytes at address {addr:#x}"));
                    }
                    match space {
                        Space::Global => Self::global(mem, addr, n as u64, inst)?.copy_from_slice(&val[..n]),
                        Space::Shared => {
                            let i = self.shared_access(t.tid, addr, n as u64, true, inst)?;
                            self.shared[i..i + n].copy_from_slice(&val[..n]);
                        }
                        Space::Param => return fault(inst, "store to the parameter space"),
                    }
                    continue;
                }
                Op::RedAdd(ty) => {
                    let n = ty.bytes();
                    let Some(Opnd::Mem(r, off)) = a.first() else { return fault(inst, "unsupported atomic operand") };
                    let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                    if !addr.is_multiple_of(n) {
                        return fault(inst, format!("misaligned atomic: {n} bytes at address {addr:#x}"));
                    }
                    let v = src(1);
                    let s = Self::global(mem, addr, n, inst)?;
                    let sum = trunc(le(s).wrapping_add(v), ty);
                    s.copy_from_slice(&sum.to_le_bytes()[..n as usize]);
                    continue;
                }
                Op::AtomCas(ty) => {
                    let n = ty.bytes();
                    let Some(Opnd::Mem(r, off)) = a.get(1) else { return fault(inst, "unsupported atomic operand") };
                    let addr = t.regs[*r as usize].wrapping_add(*off as u64);
                    if !addr.is_multiple_of(n) {
                        return fault(inst, format!("misaligned atomic: {n} bytes at address {addr:#x}"));
                    }
                    let (cmp, new) = (src(2), src(3));
                    let s = Self::global(mem, addr, n, inst)?;
                    let old = le(s);
                    if old == trunc(cmp, ty) {
                        s.copy_from_slice(&new.to_le_bytes()[..n as usize]);
                    }
                    old
                }
            };
            if dst == usize::MAX {
                return fault(inst, "the destination is not a register");
            }
            t.regs[dst] = v;
        }
    }
}

fn le(s: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b[..s.len()].copy_from_slice(s);
    u64::from_le_bytes(b)
}

fn un(u: Un, ty: Ty, x: u64) -> u64 {
    match (u, ty) {
        (Un::Mov, t) => trunc(x, t),
        (Un::Not, Ty::Pred) => u64::from(x == 0),
        (Un::Not, t) => trunc(!x, t),
        (Un::Neg, Ty::F32) => x ^ 0x8000_0000,
        (Un::Neg, Ty::F64) => x ^ (1 << 63),
        (Un::Neg, t) => trunc(x.wrapping_neg(), t),
        (Un::Abs, Ty::F32) => x & 0x7fff_ffff,
        (Un::Abs, Ty::F64) => x & !(1 << 63),
        (Un::Abs, t) => trunc(int(x, t).unsigned_abs() as u64, t),
        (Un::Sqrt, Ty::F32) => f32b(f32v(x).sqrt()),
        (Un::Sqrt, _) => f64b(f64v(x).sqrt()),
        (Un::Rcp, Ty::F32) => f32b(1.0 / f32v(x)),
        (Un::Rcp, _) => f64b(1.0 / f64v(x)),
    }
}

/// A binary operation; `None` for an integer division by zero.
fn bin(b: Bin, ty: Ty, x: u64, y: u64) -> Option<u64> {
    if ty == Ty::F32 {
        let (a, c) = (f32v(x), f32v(y));
        return Some(f32b(match b {
            Bin::Add => a + c,
            Bin::Sub => a - c,
            Bin::MulLo | Bin::MulWide => a * c,
            Bin::Div => a / c,
            Bin::Min => a.min(c),
            Bin::Max => a.max(c),
            _ => f32::NAN,
        }));
    }
    if ty == Ty::F64 {
        let (a, c) = (f64v(x), f64v(y));
        return Some(f64b(match b {
            Bin::Add => a + c,
            Bin::Sub => a - c,
            Bin::MulLo | Bin::MulWide => a * c,
            Bin::Div => a / c,
            Bin::Min => a.min(c),
            Bin::Max => a.max(c),
            _ => f64::NAN,
        }));
    }
    if ty == Ty::Pred {
        let (p, q) = (x != 0, y != 0);
        return Some(u64::from(match b {
            Bin::And => p && q,
            Bin::Or => p || q,
            _ => p ^ q,
        }));
    }
    let bits = (ty.bytes() * 8) as u32;
    let (a, c) = (int(x, ty), int(y, ty));
    let r: i128 = match b {
        Bin::Add => a.wrapping_add(c),
        Bin::Sub => a.wrapping_sub(c),
        Bin::MulLo => a.wrapping_mul(c),
        // `mul.wide`: the full product of two values of the type, twice as wide.
        Bin::MulWide => return Some((a.wrapping_mul(c)) as u64),
        Bin::Div | Bin::Rem => {
            if c == 0 {
                return None;
            }
            // Truncating toward zero; the result wraps at the type's width (MIN / -1 = MIN).
            if b == Bin::Div { a / c } else { a % c }
        }
        Bin::And => a & c,
        Bin::Or => a | c,
        Bin::Xor => a ^ c,
        Bin::Shl => {
            let s = (y as u32).min(bits);
            return Some(if s >= bits { 0 } else { trunc(x << s, ty) });
        }
        Bin::Shr => {
            let s = (y as u32).min(bits);
            match (ty.signed(), s >= bits) {
                (true, true) => {
                    if a < 0 {
                        -1
                    } else {
                        0
                    }
                }
                (false, true) => 0,
                _ => a >> s,
            }
        }
        Bin::Min => a.min(c),
        Bin::Max => a.max(c),
    };
    Some(trunc(r as u64, ty))
}

fn setp(c: Cmp, ty: Ty, x: u64, y: u64) -> bool {
    if ty.float() {
        let (a, b) = if ty == Ty::F32 { (f64::from(f32v(x)), f64::from(f32v(y))) } else { (f64v(x), f64v(y)) };
        return match c {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b && !a.is_nan() && !b.is_nan(),
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Neu => a != b,
            Cmp::Nan => a.is_nan() || b.is_nan(),
            Cmp::Lo | Cmp::Ls | Cmp::Hi | Cmp::Hs => false,
        };
    }
    let (a, b) = (int(x, ty), int(y, ty));
    let (ua, ub) = (trunc(x, ty), trunc(y, ty));
    match c {
        Cmp::Eq => a == b,
        Cmp::Ne | Cmp::Neu => a != b,
        Cmp::Lt => a < b,
        Cmp::Le => a <= b,
        Cmp::Gt => a > b,
        Cmp::Ge => a >= b,
        Cmp::Lo => ua < ub,
        Cmp::Ls => ua <= ub,
        Cmp::Hi => ua > ub,
        Cmp::Hs => ua >= ub,
        Cmp::Nan => false,
    }
}

/// `cvt` between the types tk's PTX uses, with PTX's rules: float-to-integer conversions
/// saturate and map NaN to 0 (to 0x8000000000000000 for 64-bit destinations); float-to-float conversions round as the modifier says.
fn cvt(d: Ty, s: Ty, rnd: Rnd, x: u64) -> u64 {
    let fval = |x: u64| -> f64 {
        match s {
            Ty::F32 => f64::from(f32v(x)),
            Ty::F64 => f64v(x),
            Ty::F16 => f64::from(half::f16::from_bits(x as u16)),
            Ty::Bf16 => f64::from(half::bf16::from_bits(x as u16)),
            _ => 0.0,
        }
    };
    if s.float() && d.float() {
        let v = fval(x);
        return match (d, rnd) {
            (Ty::F32, Rnd::Rz) => f32b(f32_rz(v)),
            (Ty::F32, Rnd::Rmi) => f32b((v as f32).floor()),
            (Ty::F32, Rnd::Rpi) => f32b((v as f32).ceil()),
            (Ty::F32, Rnd::Rni) => f32b((v as f32).round_ties_even()),
            (Ty::F32, Rnd::Rzi) => f32b((v as f32).trunc()),
            (Ty::F32, _) if s == Ty::F32 => x & 0xffff_ffff,
            (Ty::F32, _) => f32b(v as f32),
            (Ty::F64, Rnd::Rmi) => f64b(v.floor()),
            (Ty::F64, Rnd::Rpi) => f64b(v.ceil()),
            (Ty::F64, Rnd::Rni) => f64b(v.round_ties_even()),
            (Ty::F64, Rnd::Rzi) => f64b(v.trunc()),
            (Ty::F64, _) => f64b(v),
            // To f16/bf16: from f32 (the only source tk uses), rounded to nearest even.
            (Ty::F16, _) => u64::from(half::f16::from_f32(v as f32).to_bits()),
            (Ty::Bf16, _) => u64::from(half::bf16::from_f32(v as f32).to_bits()),
            _ => 0,
        };
    }
    if s.float() {
        // Float to integer: round as the modifier says (truncate by default), saturate, NaN -> 0.
        let v = fval(x);
        let r = match rnd {
            Rnd::Rmi => v.floor(),
            Rnd::Rpi => v.ceil(),
            Rnd::Rni => v.round_ties_even(),
            _ => v.trunc(),
        };
        let i: i128 = if r.is_nan() {
            // NaN becomes 0 in a 32-bit or narrower destination but 0x8000000000000000 in a
            // 64-bit one: measured on an H200 (sm_90) through `cvt.rzi.s64.f64`, which is what
            // a simulator returning 0 here had hidden from tk's own PTX.
            if matches!(d, Ty::S64 | Ty::U64) { i128::from(i64::MIN) } else { 0 }
        } else {
            let (lo, hi) = match d {
                Ty::S8 => (i128::from(i8::MIN), i128::from(i8::MAX)),
                Ty::S16 => (i128::from(i16::MIN), i128::from(i16::MAX)),
                Ty::S32 => (i128::from(i32::MIN), i128::from(i32::MAX)),
                Ty::S64 => (i128::from(i64::MIN), i128::from(i64::MAX)),
                Ty::U8 => (0, i128::from(u8::MAX)),
                Ty::U16 => (0, i128::from(u16::MAX)),
                Ty::U32 => (0, i128::from(u32::MAX)),
                _ => (0, i128::from(u64::MAX)),
            };
            (r as i128).clamp(lo, hi)
        };
        return trunc(i as u64, d);
    }
    let v = int(x, s);
    if d.float() {
        return match d {
            Ty::F32 => f32b(v as f32),
            Ty::F64 => f64b(v as f64),
            Ty::F16 => u64::from(half::f16::from_f32(v as f32).to_bits()),
            _ => u64::from(half::bf16::from_f32(v as f32).to_bits()),
        };
    }
    // Integer to integer: wrap to the destination (the source was sign- or zero-extended).
    trunc(v as u64, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(body: &str) -> String {
        format!(
            ".version 7.0\n.target sm_86\n.address_size 64\n.visible .entry k(\n.param .u64 p\n)\n{{\n\
             .reg .b64 %rd0;\n.reg .b32 %r0;\nld.param.u64 %rd0, [p];\nmov.u32 %r0, %tid.x;\n{body}\nret;\n}}\n"
        )
    }

    #[test]
    fn integer_atomic_adds_of_every_thread_all_land() {
        let m = Module::parse(&kernel("red.global.add.u32 [%rd0], %r0;")).expect("parses");
        let mut buf = 5u32.to_le_bytes().to_vec();
        buf.extend_from_slice(&[0xff; 4]);
        let mut args = [Arg::Buffer(&mut buf)];
        m.launch("k", Grid { blocks: 3, threads: 64 }, &mut args, 7).expect("runs");
        assert_eq!(&buf[..4], &(5 + 3 * (0..64).sum::<u32>()).to_le_bytes());
        assert_eq!(&buf[4..], &[0xff; 4], "the next word is untouched");
        // Misaligned loads and stores fault, as on the GPU.
        for body in ["ld.global.u32 %r0, [%rd0+2];", "st.global.u32 [%rd0+6], %r0;"] {
            let m = Module::parse(&kernel(body)).expect("parses");
            let mut buf = vec![0u8; 64];
            let mut args = [Arg::Buffer(&mut buf)];
            let e = m.launch("k", Grid { blocks: 1, threads: 1 }, &mut args, 7).expect_err("misaligned");
            assert!(e.to_string().contains("misaligned"), "{body}: {e}");
        }
        // A misaligned atomic faults, as on the GPU.
        let m = Module::parse(&kernel("add.s64 %rd0, %rd0, 2;\nred.global.add.u32 [%rd0], %r0;")).expect("parses");
        let mut args = [Arg::Buffer(&mut buf)];
        let e = m.launch("k", Grid { blocks: 1, threads: 1 }, &mut args, 7).expect_err("misaligned");
        assert!(e.to_string().contains("misaligned atomic"), "{e}");
    }

    #[test]
    fn nan_to_a_64_bit_integer_is_the_minimum_as_on_the_gpu() {
        let nan64 = f64::NAN.to_bits();
        let nan32 = u64::from(f32::NAN.to_bits());
        assert_eq!(cvt(Ty::S64, Ty::F64, Rnd::Rzi, nan64), 0x8000_0000_0000_0000);
        assert_eq!(cvt(Ty::S64, Ty::F32, Rnd::Rzi, nan32), 0x8000_0000_0000_0000);
        assert_eq!(cvt(Ty::S32, Ty::F64, Rnd::Rzi, nan64), 0);
        assert_eq!(cvt(Ty::S64, Ty::F64, Rnd::Rzi, 1e300f64.to_bits()), i64::MAX as u64);
        assert_eq!(cvt(Ty::S64, Ty::F64, Rnd::Rzi, (-2.5f64).to_bits()), -2i64 as u64);
    }

    #[test]
    fn float_reductions_are_refused() {
        // PTX's float atomics flush subnormals, which the simulator does not model.
        let e = Module::parse(&kernel("red.global.add.f32 [%rd0], %r0;")).expect_err("refused");
        assert!(e.to_string().contains("only integer atomic adds"), "{e}");
    }
}
