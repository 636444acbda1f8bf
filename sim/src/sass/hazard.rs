//! The hazard checker: whether each instruction's control bits make it wait long enough for
//! the registers it reads.
//!
//! The model (docs/sass.md has the sources):
//! - A warp issues its instructions in order. The next one issues `stall` cycles after this
//!   one (bits 105-108); waits on scoreboards only add time, so a check on stall sums alone is
//!   safe.
//! - A fixed-latency producer (the integer and float ALUs, IMAD, the uniform datapath) makes
//!   its result readable a number of cycles after it issues, which depends on the producer's and
//!   the reader's classes and on the register file (Mesa NAK's `sm80_instr_latencies.rs`, the
//!   table NVIDIA gave for Ampere and Ada). Reading earlier is a hazard.
//! - A variable-latency producer (memory, MUFU, conversions, special registers, FP64)
//!   increments the scoreboard it names (bits 110-112), and its result is readable only after
//!   an instruction waited on that scoreboard (bits 116-121). Scoreboards are counters: a wait
//!   covers every producer on it. The FP64 and conversion pipe completes in order, so a wait
//!   for one of its producers also completes the earlier ones (ptxas relies on it).
//! - A memory instruction that names a read scoreboard (bits 113-115) reads its source
//!   registers late: overwriting one before a wait on that scoreboard is a hazard.
//! - A wait on a scoreboard at least 2 cycles after it was set.
//!
//! The checker follows the path the warp executes, so control flow needs no merging.

use super::decode::{Op, P, Src};

/// A register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum File {
    R,
    Ur,
    P,
    Up,
}

/// Fixed-latency producer classes (NAK's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum W {
    Alu,
    Disp64,
    Fma,
    WideDl,
    WideDh,
    Fp16,
    /// HFMA2.MMA.
    Mma,
    Udp,
    Uldc,
    Umov,
    VoteU,
}

/// Reader classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rd {
    Alu,
    Fma,
    WideAb,
    WideCl,
    WideCh,
    Fp16,
    Fp64,
    Dec,
    Agu,
    Guard,
    Udp,
    Umov,
    Uldc,
}

/// How an instruction produces its results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fixed(W),
    /// Variable latency; `pipe`: the in-order FP64 and conversion pipe.
    Var {
        pipe: bool,
    },
}

/// What the checker needs to know of one instruction, computed once at load.
#[derive(Clone, Debug)]
pub struct Info {
    pub kind: Kind,
    /// The registers read, with the class each is read as.
    pub reads: Vec<(File, u8, Rd)>,
    /// The registers written (a fixed producer's IMAD.WIDE halves have their own classes).
    pub writes: Vec<(File, u8, Option<W>)>,
    /// Whether the instruction reads its sources late (a memory instruction).
    pub late_reads: bool,
    /// Whether, without a write scoreboard, the instruction is a fixed-latency producer
    /// (FCHK).
    pub fixed_without_sb: bool,
}

/// The cycles a reader of class `rd` must wait after a fixed-latency producer of class `w`
/// wrote a register of `file` (NAK's sm80 table; see the module documentation).
pub fn latency(file: File, rd: Rd, w: W) -> u64 {
    match file {
        File::R => {
            let col = match w {
                W::Alu => 0,
                W::Disp64 => 1,
                W::Fma => 2,
                W::WideDl => 3,
                W::WideDh => 4,
                W::Fp16 => 5,
                _ => 6,
            };
            let row: [u64; 7] = match rd {
                Rd::Alu => [4, 6, 5, 3, 5, 5, 10],
                Rd::Fma | Rd::WideCl => [5, 6, 4, 2, 4, 5, 10],
                Rd::WideAb => [5, 6, 4, 4, 6, 5, 10],
                Rd::WideCh => [3, 4, 2, 2, 2, 3, 8],
                Rd::Fp16 => [5, 6, 5, 3, 5, 5, 10],
                Rd::Fp64 => [6, 6, 6, 6, 6, 6, 6],
                Rd::Dec | Rd::Guard => [4, 4, 4, 4, 4, 4, 6],
                Rd::Agu | Rd::Udp | Rd::Umov | Rd::Uldc => [5, 5, 5, 5, 5, 5, 7],
            };
            row[col]
        }
        File::P => {
            let col = match w {
                W::Alu => 0,
                W::Fp16 => 2,
                W::Mma => 3,
                _ => 1,
            };
            let row: [u64; 4] = match rd {
                Rd::Alu => [4, 5, 5, 6],
                Rd::Fma | Rd::WideAb | Rd::WideCl | Rd::WideCh => [5, 4, 5, 6],
                Rd::Fp64 => [13, 13, 13, 6],
                _ => [13, 13, 13, 14],
            };
            row[col]
        }
        File::Ur => {
            let col = match w {
                W::Udp => 0,
                W::Uldc => 1,
                W::Umov => 2,
                _ => 3,
            };
            let row: [u64; 4] = match rd {
                Rd::Dec | Rd::Agu => [9, 2, 2, 2],
                Rd::Udp => [4, 2, 2, 2],
                Rd::Umov => [7, 2, 2, 2],
                Rd::Uldc => [12, 5, 5, 5],
                _ => [6, 2, 2, 2],
            };
            row[col]
        }
        File::Up => {
            let vote = w == W::VoteU;
            match rd {
                Rd::Udp => {
                    if vote {
                        1
                    } else {
                        4
                    }
                }
                Rd::Guard => {
                    if vote {
                        5
                    } else {
                        11
                    }
                }
                _ => {
                    if vote {
                        1
                    } else {
                        6
                    }
                }
            }
        }
    }
}

/// The checker's facts about instruction `op` (`op9` its base opcode, `uniform` whether it
/// runs on the uniform datapath, `guard` its guard predicate).
pub fn info(op: &Op, op9: u32, uniform: bool, guard: P) -> Info {
    use Kind::*;
    let mut reads: Vec<(File, u8, Rd)> = Vec::new();
    let mut writes: Vec<(File, u8, Option<W>)> = Vec::new();
    let kind = match op {
        Op::Imad { kind, .. } if *kind == 1 => Fixed(if uniform { W::Udp } else { W::WideDh }),
        Op::Imad { .. } | Op::Ffma { .. } | Op::Fadd { .. } | Op::Fmul { .. } => {
            Fixed(if uniform { W::Udp } else { W::Fma })
        }
        Op::Mov { .. } if op9 == 0x35 => Fixed(W::Mma),
        Op::Mov { .. } if uniform => Fixed(W::Umov),
        Op::Uldc { .. } => Fixed(W::Uldc),
        Op::Voteu { .. } => Fixed(W::VoteU),
        Op::Hadd2F32 { .. } => Fixed(W::Fp16),
        Op::Cs2r { wide: true, .. } => Fixed(W::Disp64),
        // I2FP (sm_86) is an ALU op; I2F is not.
        Op::I2f { .. } if op9 == 0x45 => Fixed(W::Alu),
        Op::Dadd { .. } | Op::Dfma { .. } | Op::Dmul { .. } | Op::Dsetp { .. } => Var { pipe: true },
        Op::F2f { .. } | Op::F2i { .. } | Op::Frnd { .. } | Op::I2f { .. } => Var { pipe: true },
        // MUFU completes in order with the conversions: ptxas reads a MUFU result that set no
        // scoreboard after waiting for a later F2F.
        Op::Mufu { .. } => Var { pipe: true },
        Op::Fchk { .. } | Op::Popc { .. } | Op::R2ur { .. } | Op::Ldg { .. } | Op::Lds { .. } | Op::Cas { .. } => {
            Var { pipe: false }
        }
        Op::S2r { .. } => Var { pipe: false },
        Op::Stg { .. } | Op::Sts { .. } | Op::Red { .. } | Op::Bar { .. } => Var { pipe: false },
        Op::Bra { .. }
        | Op::Bssy { .. }
        | Op::Bsync { .. }
        | Op::Break { .. }
        | Op::Call { .. }
        | Op::Ret { .. }
        | Op::Exit { .. }
        | Op::Warpsync { .. }
        | Op::Nop => Var { pipe: false },
        _ => Fixed(if uniform { W::Udp } else { W::Alu }),
    };
    let memory = matches!(
        op,
        Op::Ldg { .. } | Op::Stg { .. } | Op::Red { .. } | Op::Cas { .. } | Op::Lds { .. } | Op::Sts { .. }
    );
    let rd = match kind {
        Fixed(W::Fma) => Rd::Fma,
        Fixed(W::WideDh) => Rd::WideAb,
        Fixed(W::Fp16) => Rd::Fp16,
        Fixed(W::Mma) => Rd::Fp64,
        Fixed(W::Udp) => Rd::Udp,
        Fixed(W::Umov) | Fixed(W::VoteU) => Rd::Umov,
        Fixed(W::Uldc) => Rd::Uldc,
        Fixed(_) => Rd::Alu,
        Var { .. } if memory => Rd::Agu,
        Var { .. } if matches!(op, Op::Dadd { .. } | Op::Dfma { .. } | Op::Dmul { .. } | Op::Dsetp { .. }) => Rd::Fp64,
        Var { .. } => Rd::Dec,
    };
    let src = |reads: &mut Vec<(File, u8, Rd)>, s: &Src, n: u8, rd: Rd| match *s {
        Src::R(r) if r != 255 => {
            for i in 0..n {
                reads.push((File::R, r.saturating_add(i), rd));
            }
        }
        Src::Ur(u) if u < 63 => {
            for i in 0..n {
                reads.push((File::Ur, u.saturating_add(i).min(63), rd));
            }
        }
        _ => {}
    };
    let reg = |reads: &mut Vec<(File, u8, Rd)>, r: u8, n: u8, rd: Rd| src(reads, &Src::R(r), n, rd);
    let pred = |reads: &mut Vec<(File, u8, Rd)>, p: &P, rd: Rd| {
        if p.n != 7 {
            reads.push((if p.uniform { File::Up } else { File::P }, p.n, rd));
        }
    };
    let dfile = if uniform { File::Ur } else { File::R };
    let pfile = if uniform { File::Up } else { File::P };
    let wr = |writes: &mut Vec<(File, u8, Option<W>)>, f: File, r: u8, n: u8| {
        let zero = match f {
            File::R => 255,
            File::Ur => 63,
            _ => 7,
        };
        if r != zero {
            let w = match kind {
                Fixed(w) => Some(w),
                Var { .. } => None,
            };
            for i in 0..n {
                writes.push((f, r.saturating_add(i), w));
            }
        }
    };
    pred(&mut reads, &guard, Rd::Guard);
    match op {
        Op::Imad { d, a, b, c, x, cin, kind: k, cout, .. } => {
            let wide = *k == 1;
            let (ab, cl, ch) = if wide && !uniform { (Rd::WideAb, Rd::WideCl, Rd::WideCh) } else { (rd, rd, rd) };
            src(&mut reads, a, 1, ab);
            src(&mut reads, b, 1, ab);
            match c {
                Src::R(r) if *r != 255 && *k != 0 => {
                    reads.push((File::R, *r, cl));
                    reads.push((File::R, r.saturating_add(1), ch));
                }
                _ => src(&mut reads, c, if *k == 0 { 1 } else { 2 }, cl),
            }
            if *x {
                pred(&mut reads, cin, rd);
            }
            if wide && !uniform && *d != 255 {
                writes.push((File::R, *d, Some(W::WideDl)));
                writes.push((File::R, d.saturating_add(1), Some(W::WideDh)));
            } else {
                wr(&mut writes, dfile, *d, if wide { 2 } else { 1 });
            }
            wr(&mut writes, pfile, *cout, 1);
        }
        Op::Iadd3 { d, a, b, c, x, cin, cout, .. } => {
            for s in [a, b, c] {
                src(&mut reads, s, 1, rd);
            }
            if *x {
                pred(&mut reads, &cin[0], rd);
                pred(&mut reads, &cin[1], rd);
            }
            wr(&mut writes, dfile, *d, 1);
            wr(&mut writes, pfile, cout[0], 1);
            wr(&mut writes, pfile, cout[1], 1);
        }
        Op::Isetp { p, q, a, b, pin, ex, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            pred(&mut reads, pin, rd);
            if let Some(e) = ex {
                pred(&mut reads, e, rd);
            }
            wr(&mut writes, pfile, *p, 1);
            wr(&mut writes, pfile, *q, 1);
        }
        Op::Sel { d, a, b, p } | Op::Fsel { d, a, b, p, .. } | Op::Imnmx { d, a, b, p, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            pred(&mut reads, p, rd);
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Mov { d, b } | Op::Iabs { d, b } => {
            src(&mut reads, b, 1, rd);
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Lop3 { d, p, a, b, c, .. } => {
            for s in [a, b, c] {
                src(&mut reads, s, 1, rd);
            }
            wr(&mut writes, dfile, *d, 1);
            wr(&mut writes, pfile, *p, 1);
        }
        Op::Prmt { d, a, sel: b, c } => {
            for s in [a, b, c] {
                src(&mut reads, s, 1, rd);
            }
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Shf { d, lo, shift, hi, .. } => {
            for s in [lo, shift, hi] {
                src(&mut reads, s, 1, rd);
            }
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Lea { d, cout, a, b, c, x, cin, .. } => {
            for s in [a, b, c] {
                src(&mut reads, s, 1, rd);
            }
            if *x {
                pred(&mut reads, cin, rd);
            }
            wr(&mut writes, dfile, *d, 1);
            wr(&mut writes, pfile, *cout, 1);
        }
        Op::Plop3 { p, q, srcs, .. } => {
            for s in srcs {
                pred(&mut reads, s, rd);
            }
            wr(&mut writes, File::P, *p, 1);
            wr(&mut writes, File::P, *q, 1);
        }
        Op::P2r { d, a, mask, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, mask, 1, rd);
            let m = if let Src::Imm(m) = mask { *m } else { 0x7f };
            for n in 0..7u8 {
                if m >> n & 1 == 1 {
                    reads.push((pfile, n, rd));
                }
            }
            wr(&mut writes, dfile, *d, 1);
        }
        Op::R2p { a, mask, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, mask, 1, rd);
            let m = if let Src::Imm(m) = mask { *m } else { 0x7f };
            for n in 0..7u8 {
                if m >> n & 1 == 1 {
                    wr(&mut writes, File::P, n, 1);
                }
            }
        }
        Op::Sgxt { d, a, b, .. } | Op::F2fp { d, a, b, .. } | Op::Hadd2F32 { d, a, b, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Ffma { d, a, b, c, .. } => {
            for s in [a, b, c] {
                src(&mut reads, s, 1, rd);
            }
            wr(&mut writes, File::R, *d, 1);
        }
        Op::Fadd { d, a, b, .. } | Op::Fmul { d, a, b, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            wr(&mut writes, File::R, *d, 1);
        }
        Op::Fsetp { p, q, a, b, pin, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            pred(&mut reads, pin, rd);
            wr(&mut writes, File::P, *p, 1);
            wr(&mut writes, File::P, *q, 1);
        }
        Op::Dsetp { p, q, a, b, pin, .. } => {
            src(&mut reads, a, 2, rd);
            src(&mut reads, b, 2, rd);
            pred(&mut reads, pin, rd);
            wr(&mut writes, File::P, *p, 1);
            wr(&mut writes, File::P, *q, 1);
        }
        Op::Dfma { d, a, b, c, .. } => {
            for s in [a, b, c] {
                src(&mut reads, s, 2, rd);
            }
            wr(&mut writes, File::R, *d, 2);
        }
        Op::Dadd { d, a, b, .. } | Op::Dmul { d, a, b, .. } => {
            src(&mut reads, a, 2, rd);
            src(&mut reads, b, 2, rd);
            wr(&mut writes, File::R, *d, 2);
        }
        Op::Mufu { d, b, .. } => {
            src(&mut reads, b, 1, rd);
            wr(&mut writes, File::R, *d, 1);
        }
        Op::Fchk { p, a, b, .. } => {
            src(&mut reads, a, 1, rd);
            src(&mut reads, b, 1, rd);
            wr(&mut writes, File::P, *p, 1);
        }
        Op::F2f { d, b, from, to, .. } => {
            src(&mut reads, b, if *from == 3 { 2 } else { 1 }, rd);
            wr(&mut writes, File::R, *d, if *to == 3 { 2 } else { 1 });
        }
        Op::F2i { d, b, from, bytes, .. } => {
            src(&mut reads, b, if *from == 3 { 2 } else { 1 }, rd);
            wr(&mut writes, File::R, *d, if *bytes == 8 { 2 } else { 1 });
        }
        Op::I2f { d, b, bytes, to, .. } => {
            src(&mut reads, b, if *bytes == 8 { 2 } else { 1 }, rd);
            wr(&mut writes, File::R, *d, if *to == 3 { 2 } else { 1 });
        }
        Op::Frnd { d, b, size, .. } => {
            let n = if *size == 3 { 2 } else { 1 };
            src(&mut reads, b, n, rd);
            wr(&mut writes, File::R, *d, n);
        }
        Op::Ldg { d, addr, w } => {
            reg(&mut reads, addr.r, if addr.wide { 2 } else { 1 }, rd);
            if let Some(u) = addr.ur {
                src(&mut reads, &Src::Ur(u), 2, rd);
            }
            wr(&mut writes, File::R, *d, w.regs());
        }
        Op::Stg { addr, v, w } => {
            reg(&mut reads, addr.r, if addr.wide { 2 } else { 1 }, rd);
            if let Some(u) = addr.ur {
                src(&mut reads, &Src::Ur(u), 2, rd);
            }
            reg(&mut reads, *v, w.regs(), rd);
        }
        Op::Red { addr, v, ty, .. } => {
            reg(&mut reads, addr.r, if addr.wide { 2 } else { 1 }, rd);
            if let Some(u) = addr.ur {
                src(&mut reads, &Src::Ur(u), 2, rd);
            }
            let n = if matches!(ty, super::decode::RedTy::U64 | super::decode::RedTy::S64 | super::decode::RedTy::F64) {
                2
            } else {
                1
            };
            reg(&mut reads, *v, n, rd);
        }
        Op::Cas { d, addr, cmp, new, wide } => {
            let n = if *wide { 2 } else { 1 };
            reg(&mut reads, *addr, 2, rd);
            reg(&mut reads, *cmp, n, rd);
            reg(&mut reads, *new, n, rd);
            wr(&mut writes, File::R, *d, n);
        }
        Op::Lds { d, r, w, .. } => {
            reg(&mut reads, *r, 1, rd);
            wr(&mut writes, File::R, *d, w.regs());
        }
        Op::Sts { r, v, w, .. } => {
            reg(&mut reads, *r, 1, rd);
            reg(&mut reads, *v, w.regs(), rd);
        }
        Op::Uldc { d, w, .. } => wr(&mut writes, File::Ur, *d, if *w == super::decode::Width::B64 { 2 } else { 1 }),
        Op::S2r { d, .. } => wr(&mut writes, dfile, *d, 1),
        Op::Cs2r { d, wide, .. } => wr(&mut writes, File::R, *d, if *wide { 2 } else { 1 }),
        Op::R2ur { d, a } => {
            reg(&mut reads, *a, 1, rd);
            wr(&mut writes, File::Ur, *d, 1);
        }
        Op::Voteu { d, p, src: s, .. } => {
            pred(&mut reads, s, Rd::Guard);
            wr(&mut writes, File::Ur, *d, 1);
            wr(&mut writes, File::Up, *p, 1);
        }
        Op::Uflo { d, a } | Op::Popc { d, a } => {
            src(&mut reads, a, 1, rd);
            wr(&mut writes, dfile, *d, 1);
        }
        Op::Bra { cond, .. } | Op::Bsync { cond, .. } | Op::Break { cond, .. } | Op::Exit { cond } => {
            pred(&mut reads, cond, Rd::Guard)
        }
        Op::Ret { r, .. } => reg(&mut reads, *r, 1, rd),
        Op::Bssy { .. } | Op::Call { .. } | Op::Nop | Op::Bar { .. } | Op::Warpsync { .. } => {}
    }
    Info { kind, reads, writes, late_reads: memory, fixed_without_sb: matches!(op, Op::Fchk { .. }) }
}

/// What the checker knows of one register, for the lanes of `lanes` (a warp's lanes may
/// diverge: a value one group of lanes wrote is not a hazard for another group).
#[derive(Clone, Copy, Debug)]
enum Reg {
    Ready,
    /// Written by a fixed-latency producer of class `w` at instruction `pc`, issued at `at`.
    Fixed {
        at: u64,
        w: W,
        pc: u32,
        lanes: u32,
    },
    /// Written by variable-latency producer `ticket` at `pc`, not yet waited for.
    Pending {
        ticket: u64,
        pc: u32,
        lanes: u32,
    },
}

/// A warp's hazard state.
pub struct Hazards {
    regs: Vec<Reg>,
    /// The registers a late-reading instruction has not read yet: (register, ticket, pc, the
    /// lanes it reads them for: another group of lanes may write its own copies meanwhile).
    reading: Vec<(usize, u64, u32, u32)>,
    /// Registers in `Pending`.
    pending: Vec<usize>,
    /// The tickets each scoreboard counts, and when it was last set.
    sb: [Vec<u64>; 6],
    sb_set: [Option<u64>; 6],
    /// Outstanding tickets of the in-order pipe.
    pipe: Vec<u64>,
    next_ticket: u64,
    /// The issue cycle of the next instruction.
    pub cycle: u64,
}

/// A register's slot in the checker's state (out-of-range numbers, which only hostile words
/// have, share the zero register's slot).
fn index(f: File, n: u8) -> usize {
    match f {
        File::R => n as usize,
        File::Ur => 256 + n.min(63) as usize,
        File::P => 320 + n.min(7) as usize,
        File::Up => 328 + n.min(7) as usize,
    }
}

fn name(i: usize) -> String {
    match i {
        0..=255 => format!("R{i}"),
        256..=319 => format!("UR{}", i - 256),
        320..=327 => format!("P{}", i - 320),
        _ => format!("UP{}", i - 328),
    }
}

impl Default for Hazards {
    fn default() -> Self {
        Hazards {
            regs: vec![Reg::Ready; 336],
            reading: Vec::new(),
            pending: Vec::new(),
            sb: Default::default(),
            sb_set: [None; 6],
            pipe: Vec::new(),
            next_ticket: 0,
            cycle: 0,
        }
    }
}

impl Hazards {
    /// Completes the tickets `done` (and, for the pipe, every earlier one).
    fn complete(&mut self, done: &[u64]) {
        let pipe_upto = done.iter().filter(|t| self.pipe.contains(t)).max().copied();
        let finished = |t: u64| done.contains(&t) || pipe_upto.is_some_and(|p| t <= p && self.pipe.contains(&t));
        let mut still = Vec::with_capacity(self.pending.len());
        for &i in &self.pending {
            if let Reg::Pending { ticket, .. } = self.regs[i] {
                if finished(ticket) {
                    self.regs[i] = Reg::Ready;
                } else {
                    still.push(i);
                }
            }
        }
        self.pending = still;
        self.reading.retain(|&(_, t, _, _)| !finished(t));
        if let Some(p) = pipe_upto {
            self.pipe.retain(|&t| t > p);
        }
    }

    /// Checks and records the issue of instruction `pc` (its control bits `ctrl`, its facts
    /// `info`) by the lanes of `group`, of which those of `on` pass its guard (for a uniform
    /// instruction, every lane). `text` names an instruction for the report.
    pub fn issue(
        &mut self,
        pc: u32,
        ctrl: tk_isa::sass::Control,
        info: &Info,
        group: u32,
        on: u32,
        text: &dyn Fn(u32) -> String,
    ) -> Result<(), String> {
        let t = self.cycle;
        // The scoreboards this instruction waits on.
        let mut done = Vec::new();
        for s in 0..6 {
            if ctrl.wait >> s & 1 == 1 {
                if let Some(set) = self.sb_set[s]
                    && t < set + 2
                {
                    return Err(format!(
                        "hazard: waits on scoreboard {s} {} cycle(s) after an instruction set it; a scoreboard needs 2",
                        t - set
                    ));
                }
                done.append(&mut self.sb[s]);
            }
        }
        if !done.is_empty() {
            self.complete(&done);
        }
        for &(f, n, rd) in &info.reads {
            // Uniform registers belong to the whole warp; the guard is read by every lane of
            // the group, the sources by the lanes that pass it.
            let readers = match (f, rd) {
                (File::Ur | File::Up, _) => u32::MAX,
                (_, Rd::Guard) => group,
                _ => on,
            };
            match self.regs[index(f, n)] {
                Reg::Ready => {}
                Reg::Fixed { lanes, .. } | Reg::Pending { lanes, .. } if lanes & readers == 0 => {}
                Reg::Fixed { at, w, pc: p, .. } => {
                    let need = latency(f, rd, w);
                    if t - at < need {
                        return Err(format!(
                            "hazard: reads {} {} cycle(s) after `{}` (offset {:#06x}) wrote it; it needs {need} (stall \
                             counts too short)",
                            name(index(f, n)),
                            t - at,
                            text(p),
                            p * 16
                        ));
                    }
                }
                Reg::Pending { pc: p, .. } => {
                    return Err(format!(
                        "hazard: reads {} before waiting for `{}` (offset {:#06x}), a variable-latency producer (no \
                         wait on its scoreboard)",
                        name(index(f, n)),
                        text(p),
                        p * 16
                    ));
                }
            }
        }
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        if on != 0 {
            for &(f, n, w) in &info.writes {
                let i = index(f, n);
                let lanes = if matches!(f, File::Ur | File::Up) { u32::MAX } else { on };
                if let Some(&(_, _, p, _)) = self.reading.iter().find(|r| r.0 == i && r.3 & lanes != 0) {
                    return Err(format!(
                        "hazard: overwrites {}, which `{}` (offset {:#06x}) has not read yet (no wait on its read \
                         scoreboard)",
                        name(i),
                        text(p),
                        p * 16
                    ));
                }
                // FCHK without a scoreboard: ptxas then treats it as a fixed-latency FP64-class
                // producer (its predicate is read 14 cycles later or more).
                let w = if info.fixed_without_sb && ctrl.write_sb == 7 { Some(W::Mma) } else { w };
                let kind = if w.is_some() { Kind::Fixed(W::Mma) } else { info.kind };
                self.regs[i] = match (self.regs[i], kind, w) {
                    // Lanes this write leaves alone still wait for an earlier producer (the
                    // new write's own timing is then not tracked: lenient, never strict).
                    (Reg::Pending { ticket: old, pc: p, lanes: l }, _, _) if l & !lanes != 0 => {
                        Reg::Pending { ticket: old, pc: p, lanes: l & !lanes }
                    }
                    (_, Kind::Fixed(_), Some(w)) => Reg::Fixed { at: t, w, pc, lanes },
                    _ => {
                        self.pending.push(i);
                        Reg::Pending { ticket, pc, lanes }
                    }
                };
            }
        }
        if let Kind::Var { pipe } = info.kind {
            if ctrl.write_sb < 6 {
                self.sb[ctrl.write_sb as usize].push(ticket);
                self.sb_set[ctrl.write_sb as usize] = Some(t);
            }
            if pipe {
                self.pipe.push(ticket);
            }
        }
        if info.late_reads && ctrl.read_sb < 6 {
            let s = ctrl.read_sb as usize;
            self.sb[s].push(ticket);
            self.sb_set[s] = Some(t);
            for &(f, n, _) in &info.reads {
                if f == File::R || f == File::Ur {
                    let lanes = if f == File::Ur { u32::MAX } else { on };
                    self.reading.push((index(f, n), ticket, pc, lanes));
                }
            }
        }
        self.cycle = t + u64::from(ctrl.stall);
        Ok(())
    }
}
