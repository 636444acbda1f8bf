//! What each instruction does, lane by lane.
//!
//! The integer semantics follow the public descriptions of the instructions (Mesa NAK's
//! constant folding of IMAD, IADD3, ISETP, LOP3, SHF, PRMT and friends); the float ones are
//! IEEE 754 in the instruction's rounding mode ([`super::fp`]), with `.FTZ` flushing denormal
//! inputs and results. MUFU computes the correctly rounded value of its function, flushing
//! denormals as the hardware's unit does; that is within the unit's documented error, and the
//! refinement ptxas puts after it makes the final results exact either way.

use super::decode::{Addr, Fm, MufuOp, Op, P, RedOp, RedTy, Src, Width};
use super::fp::{self, Rnd};
use super::{Env, Fault, St, Warp};
use half::{bf16, f16};

/// The highest register an operation names (for a pair or a quad, its last register).
pub fn max_register(op: &Op) -> Option<u8> {
    let src = |s: &Src, n: u8| match *s {
        Src::R(r) if r != 255 => Some(r.saturating_add(n - 1)),
        _ => None,
    };
    let reg = |r: u8, n: u8| (r != 255).then(|| r.saturating_add(n - 1));
    let mut all: Vec<Option<u8>> = Vec::new();
    match op {
        Op::Imad { d, a, b, c, kind, .. } => {
            let wide = *kind == 1;
            all.extend([
                reg(*d, if wide { 2 } else { 1 }),
                src(a, 1),
                src(b, 1),
                src(c, if *kind == 0 { 1 } else { 2 }),
            ]);
        }
        Op::Iadd3 { d, a, b, c, .. } => all.extend([reg(*d, 1), src(a, 1), src(b, 1), src(c, 1)]),
        Op::Isetp { a, b, .. } => all.extend([src(a, 1), src(b, 1)]),
        Op::Sel { d, a, b, .. } | Op::Fsel { d, a, b, .. } | Op::Sgxt { d, a, b, .. } | Op::Imnmx { d, a, b, .. } => {
            all.extend([reg(*d, 1), src(a, 1), src(b, 1)])
        }
        Op::Mov { d, b } | Op::Iabs { d, b } => all.extend([reg(*d, 1), src(b, 1)]),
        Op::Lop3 { d, a, b, c, .. } | Op::Prmt { d, a, sel: b, c } => {
            all.extend([reg(*d, 1), src(a, 1), src(b, 1), src(c, 1)])
        }
        Op::Shf { d, lo, shift, hi, .. } => all.extend([reg(*d, 1), src(lo, 1), src(shift, 1), src(hi, 1)]),
        Op::Lea { d, a, b, c, .. } => all.extend([reg(*d, 1), src(a, 1), src(b, 1), src(c, 1)]),
        Op::P2r { d, a, mask, .. } => all.extend([reg(*d, 1), src(a, 1), src(mask, 1)]),
        Op::R2p { a, mask, .. } => all.extend([src(a, 1), src(mask, 1)]),
        Op::Ffma { d, a, b, c, .. } => all.extend([reg(*d, 1), src(a, 1), src(b, 1), src(c, 1)]),
        Op::Fadd { d, a, b, .. } | Op::Fmul { d, a, b, .. } => all.extend([reg(*d, 1), src(a, 1), src(b, 1)]),
        Op::Fsetp { a, b, .. } | Op::Fchk { a, b, .. } => all.extend([src(a, 1), src(b, 1)]),
        Op::Dsetp { a, b, .. } => all.extend([src(a, 2), src(b, 2)]),
        Op::Dfma { d, a, b, c, .. } => all.extend([reg(*d, 2), src(a, 2), src(b, 2), src(c, 2)]),
        Op::Dadd { d, a, b, .. } | Op::Dmul { d, a, b, .. } => all.extend([reg(*d, 2), src(a, 2), src(b, 2)]),
        Op::Mufu { d, b, .. } => all.extend([reg(*d, 1), src(b, 1)]),
        Op::Hadd2F32 { d, a, b, .. } | Op::F2fp { d, a, b, .. } => all.extend([reg(*d, 1), src(a, 1), src(b, 1)]),
        Op::F2f { d, b, from, to, .. } => {
            all.extend([reg(*d, if *to == 3 { 2 } else { 1 }), src(b, if *from == 3 { 2 } else { 1 })])
        }
        Op::F2i { d, b, from, bytes, .. } => {
            all.extend([reg(*d, if *bytes == 8 { 2 } else { 1 }), src(b, if *from == 3 { 2 } else { 1 })])
        }
        Op::I2f { d, b, bytes, to, .. } => {
            all.extend([reg(*d, if *to == 3 { 2 } else { 1 }), src(b, if *bytes == 8 { 2 } else { 1 })])
        }
        Op::Frnd { d, b, size, .. } => {
            let n = if *size == 3 { 2 } else { 1 };
            all.extend([reg(*d, n), src(b, n)])
        }
        Op::Ldg { d, addr, w } => all.extend([reg(*d, w.regs()), reg(addr.r, if addr.wide { 2 } else { 1 })]),
        Op::Stg { addr, v, w } => all.extend([reg(*v, w.regs()), reg(addr.r, if addr.wide { 2 } else { 1 })]),
        Op::Red { addr, v, ty, .. } => {
            let n = if matches!(ty, RedTy::U64 | RedTy::S64 | RedTy::F64) { 2 } else { 1 };
            all.extend([reg(*v, n), reg(addr.r, if addr.wide { 2 } else { 1 })])
        }
        Op::Cas { d, addr, cmp, new, wide } => {
            let n = if *wide { 2 } else { 1 };
            all.extend([reg(*d, n), reg(*addr, 2), reg(*cmp, n), reg(*new, n)])
        }
        Op::Lds { d, r, w, .. } => all.extend([reg(*d, w.regs()), reg(*r, 1)]),
        Op::Sts { r, v, w, .. } => all.extend([reg(*v, w.regs()), reg(*r, 1)]),
        Op::S2r { d, .. } => all.push(reg(*d, 1)),
        Op::Cs2r { d, wide, .. } => all.push(reg(*d, if *wide { 2 } else { 1 })),
        Op::R2ur { a, .. } => all.push(reg(*a, 1)),
        Op::Popc { d, a } => all.extend([reg(*d, 1), src(a, 1)]),
        Op::Ret { r, .. } => all.push(reg(*r, 1)),
        _ => {}
    }
    all.into_iter().flatten().max()
}

/// The branch target of a control-flow operation, in bytes.
pub fn target(op: &Op) -> Option<u32> {
    match *op {
        Op::Bra { target, .. } | Op::Bssy { target, .. } | Op::Call { target } => Some(target),
        _ => None,
    }
}

fn f32m(v: u32, m: Fm) -> f32 {
    let v = if m.abs { v & 0x7fff_ffff } else { v };
    f32::from_bits(if m.neg { v ^ 0x8000_0000 } else { v })
}

fn f64m(v: u64, m: Fm) -> f64 {
    let v = if m.abs { v & !(1 << 63) } else { v };
    f64::from_bits(if m.neg { v ^ (1 << 63) } else { v })
}

fn ftz_if(x: f32, on: bool) -> f32 {
    if on { fp::ftz32(x) } else { x }
}

/// `.SAT`: clamped to [0, 1], NaN to 0.
fn sat(x: f32, on: bool) -> f32 {
    if !on {
        x
    } else if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

/// NVIDIA's canonical single NaN.
fn canon32(x: f32) -> u32 {
    if x.is_nan() { 0x7fff_ffff } else { x.to_bits() }
}

fn canon64(x: f64) -> u64 {
    if x.is_nan() { 0x7fff_ffff_ffff_ffff } else { x.to_bits() }
}

/// An integer comparison (ISETP's codes: F LT EQ LE GT NE GE T).
fn icmp(cmp: u8, a: u32, b: u32, signed: bool) -> bool {
    let o = if signed { (a as i32).cmp(&(b as i32)) } else { a.cmp(&b) };
    use std::cmp::Ordering::*;
    match cmp {
        1 => o == Less,
        2 => o == Equal,
        3 => o != Greater,
        4 => o == Greater,
        5 => o != Equal,
        6 => o != Less,
        7 => true,
        _ => false,
    }
}

/// A float comparison (FSETP's codes: F LT EQ LE GT NE GE NUM NAN LTU EQU LEU GTU NEU GEU T).
fn fcmp(cmp: u8, a: f64, b: f64) -> bool {
    let unordered = a.is_nan() || b.is_nan();
    match cmp {
        0 => false,
        1 => a < b,
        2 => a == b,
        3 => a <= b,
        4 => a > b,
        5 => !unordered && a != b,
        6 => a >= b,
        7 => !unordered,
        8 => unordered,
        9 => unordered || a < b,
        10 => unordered || a == b,
        11 => unordered || a <= b,
        12 => unordered || a > b,
        13 => unordered || a != b,
        14 => unordered || a >= b,
        _ => true,
    }
}

fn setop(op: u8, x: bool, y: bool) -> bool {
    match op {
        0 => x && y,
        1 => x || y,
        _ => x ^ y,
    }
}

/// The three-input truth table `lut` applied bitwise (a is 0xF0, b 0xCC, c 0xAA).
fn lop3(lut: u8, a: u32, b: u32, c: u32) -> u32 {
    let mut r = 0;
    for i in 0..8 {
        if lut >> i & 1 == 1 {
            let x = if i & 4 != 0 { a } else { !a };
            let y = if i & 2 != 0 { b } else { !b };
            let z = if i & 1 != 0 { c } else { !c };
            r |= x & y & z;
        }
    }
    r
}

/// FCHK: whether the quotient a / b needs ptxas's slow path (the fast reciprocal sequence is
/// exact only for normal operands whose quotient and reciprocal stay normal).
fn fchk(a: f32, b: f32) -> bool {
    let ea = (a.to_bits() >> 23) & 0xff;
    let eb = (b.to_bits() >> 23) & 0xff;
    let normal = |e: u32| (1..255).contains(&e);
    !(normal(ea) && normal(eb) && eb <= 252 && ea <= 252 && (ea as i32 - eb as i32).abs() <= 125)
}

fn mufu(op: MufuOp, v: u32) -> u32 {
    let x = fp::ftz32(f32::from_bits(v));
    let r = match op {
        MufuOp::Rcp => 1.0 / f64::from(x),
        MufuOp::Rsq => 1.0 / f64::from(x).sqrt(),
        MufuOp::Sqrt => f64::from(x).sqrt(),
        MufuOp::Ex2 => f64::from(x).exp2(),
        MufuOp::Lg2 => f64::from(x).log2(),
        MufuOp::Sin => (f64::from(x) * std::f64::consts::TAU).sin(),
        MufuOp::Cos => (f64::from(x) * std::f64::consts::TAU).cos(),
        MufuOp::Rcp64h | MufuOp::Rsq64h => {
            // The high word of a double in, the high word of the result out.
            let d = f64::from_bits(u64::from(v) << 32);
            let d = if d.is_subnormal() { 0.0f64.copysign(d) } else { d };
            let r = if op == MufuOp::Rcp64h { 1.0 / d } else { 1.0 / d.sqrt() };
            let r = if r.is_subnormal() { 0.0f64.copysign(r) } else { r };
            return (canon64(r) >> 32) as u32;
        }
    };
    canon32(fp::ftz32(r as f32))
}

impl Warp {
    #[inline]
    fn r(&self, r: u8, l: usize) -> u32 {
        if r == 255 { 0 } else { self.regs[r as usize * 32 + l] }
    }
    #[inline]
    fn set(&mut self, d: u8, l: usize, v: u32) {
        if d != 255 {
            self.regs[d as usize * 32 + l] = v;
        }
    }
    fn set64(&mut self, d: u8, l: usize, v: u64) {
        self.set(d, l, v as u32);
        self.set(d.saturating_add(1), l, (v >> 32) as u32);
    }
    fn r64(&self, r: u8, l: usize) -> u64 {
        if r == 255 { 0 } else { u64::from(self.r(r, l)) | u64::from(self.r(r.saturating_add(1), l)) << 32 }
    }
    fn ur64(&self, u: u8) -> u64 {
        if u >= 63 { 0 } else { u64::from(self.ur[u as usize]) | u64::from(self.ur[(u + 1).min(63) as usize]) << 32 }
    }
    #[inline]
    fn p(&self, p: P, l: usize) -> bool {
        let v = if p.n == 7 {
            true
        } else if p.uniform {
            self.up >> p.n & 1 == 1
        } else {
            self.preds[p.n as usize] >> l & 1 == 1
        };
        v != p.neg
    }
    #[inline]
    fn setp(&mut self, n: u8, uniform: bool, l: usize, v: bool) {
        if n == 7 {
            return;
        }
        if uniform {
            self.up = (self.up & !(1 << n)) | u8::from(v) << n;
        } else {
            let m = &mut self.preds[n as usize];
            *m = (*m & !(1 << l)) | u32::from(v) << l;
        }
    }
}

/// A source operand resolved once per instruction.
#[derive(Clone, Copy)]
enum Rv {
    /// The index of lane 0's value in the warp's registers.
    Reg(usize),
    Same(u32),
}

impl Rv {
    #[inline(always)]
    fn at(self, w: &Warp, l: usize) -> u32 {
        match self {
            Rv::Reg(i) => w.regs[i + l],
            Rv::Same(v) => v,
        }
    }
}

/// The lanes of a mask.
#[inline]
pub(super) fn lanes(mut m: u32) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if m == 0 {
            return None;
        }
        let l = m.trailing_zeros() as usize;
        m &= m - 1;
        Some(l)
    })
}

/// Whether guard `p` holds for lane `l`.
pub(super) fn guard(w: &Warp, p: P, l: usize) -> bool {
    w.p(p, l)
}

/// A destination write that goes to the uniform registers for uniform instructions.
fn put(w: &mut Warp, uniform: bool, d: u8, l: usize, v: u32) {
    if uniform {
        if d < 63 {
            w.ur[d as usize] = v;
        }
    } else {
        w.set(d, l, v);
    }
}

fn put64(w: &mut Warp, uniform: bool, d: u8, l: usize, v: u64) {
    put(w, uniform, d, l, v as u32);
    if !(uniform && d >= 63 || !uniform && d == 255) {
        put(w, uniform, d + 1, l, (v >> 32) as u32);
    }
}

impl Env<'_> {
    #[inline]
    fn bank(&self, bank: u8, off: u32) -> u32 {
        let b = match bank {
            0 => self.bank0,
            2 => self.bank2,
            _ => return 0,
        };
        let o = off as usize;
        b.get(o..o + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A source resolved for an instruction: a register, or a value every lane sees.
    #[inline]
    fn rv(&self, w: &Warp, s: Src) -> Rv {
        match s {
            Src::R(255) => Rv::Same(0),
            Src::R(r) => Rv::Reg(r as usize * 32),
            s => Rv::Same(self.v(w, s, 0)),
        }
    }

    #[inline]
    fn v(&self, w: &Warp, s: Src, l: usize) -> u32 {
        match s {
            Src::R(r) => w.r(r, l),
            Src::Ur(u) => {
                if u >= 63 {
                    0
                } else {
                    w.ur[u as usize]
                }
            }
            Src::Imm(v) => v,
            Src::C(b, o) => self.bank(b, o),
        }
    }

    /// A 64-bit source: a register pair, a uniform pair, a constant pair, or an immediate
    /// that is the high half (as double immediates are).
    fn v64(&self, w: &Warp, s: Src, l: usize) -> u64 {
        match s {
            Src::R(r) => w.r64(r, l),
            Src::Ur(u) => w.ur64(u),
            Src::Imm(v) => u64::from(v) << 32,
            Src::C(b, o) => u64::from(self.bank(b, o)) | u64::from(self.bank(b, o + 4)) << 32,
        }
    }

    fn address(&self, w: &Warp, a: Addr, l: usize) -> u64 {
        let base = if a.wide { w.r64(a.r, l) } else { u64::from(w.r(a.r, l)) };
        let ur = a.ur.map_or(0, |u| w.ur64(u));
        base.wrapping_add(ur).wrapping_add(a.off as i64 as u64)
    }

    fn sreg(&self, w: &Warp, sr: u8, l: usize) -> Result<u32, String> {
        let lane = l as u32;
        Ok(match sr {
            0x00 => lane,
            0x21 => w.base + lane,
            0x22 | 0x23 | 0x26 | 0x27 => 0,
            0x25 => self.ctaid,
            0x38 => 1 << lane,
            0x39 => (1u32 << lane) - 1,
            0x3a => ((1u64 << (lane + 1)) - 1) as u32,
            0x3b => !(((1u64 << (lane + 1)) - 1) as u32),
            0x3c => !((1u32 << lane) - 1),
            0x50 | 0x52 => self.steps as u32,
            0x51 | 0x53 => (self.steps >> 32) as u32,
            0xff => 0,
            _ => return Err(format!("special register {sr:#x} is not modelled")),
        })
    }

    /// Executes `inst` at instruction index `pc` for the lanes of `mask`.
    pub(super) fn step(&mut self, w: &mut Warp, inst: &super::Inst, pc: u32, mask: u32) -> Result<(), Fault> {
        let lanes = || (0..32usize).filter(move |l| mask >> l & 1 == 1);
        for l in lanes() {
            w.pc[l] = pc + 1;
        }
        if let Op::Voteu { d, p, mode, src } = inst.op {
            // Over the lanes running this instruction.
            if w.p(inst.guard, 0) {
                let mut ballot = 0u32;
                for l in lanes() {
                    if w.p(src, l) {
                        ballot |= 1 << l;
                    }
                }
                let r = match mode {
                    0 => ballot == mask,
                    1 => ballot != 0,
                    _ => ballot == 0 || ballot == mask,
                };
                put(w, true, d, 0, ballot);
                w.setp(p, true, 0, r);
            }
            return Ok(());
        }
        if inst.uniform {
            // Once for the warp, under a uniform guard.
            if w.p(inst.guard, 0) {
                let l = mask.trailing_zeros() as usize;
                self.alu(w, &inst.op, 1 << l, true).map_err(|(l, m)| Fault { lane: l, message: m, pc })?;
            }
            return Ok(());
        }
        let mut on = 0u32;
        for l in lanes() {
            if w.p(inst.guard, l) {
                on |= 1 << l;
            }
        }
        if on == 0 {
            return Ok(());
        }
        let active = move || (0..32usize).filter(move |l| on >> l & 1 == 1);
        let fault = |l: usize| move |m: String| Fault { lane: l, message: m, pc };
        match inst.op {
            Op::Bra { target, cond } => {
                for l in active() {
                    if w.p(cond, l) {
                        w.pc[l] = target / 16;
                    }
                }
            }
            Op::Call { target } => {
                for l in active() {
                    w.pc[l] = target / 16;
                }
            }
            Op::Ret { r, base } => {
                for l in active() {
                    let to = u64::from(base) + u64::from(w.r(r, l));
                    if to % 16 != 0 || to / 16 >= self.k.insts.len() as u64 {
                        return Err(Fault {
                            lane: l,
                            message: format!("returns to {to:#x}, outside the kernel's code"),
                            pc,
                        });
                    }
                    w.pc[l] = (to / 16) as u32;
                }
            }
            Op::Exit { cond } => {
                for l in active() {
                    if w.p(cond, l) {
                        w.st[l] = St::Exit;
                    }
                }
                self.release(w);
            }
            Op::Bssy { b, .. } => w.bmask[b as usize] = on,
            Op::Warpsync { mask } => {
                for l in active() {
                    w.st[l] = St::Warpsync(mask);
                    w.pc[l] = pc;
                }
                self.release(w);
            }
            Op::Bsync { b, cond } => {
                for l in active() {
                    if w.p(cond, l) {
                        w.st[l] = St::Sync(b);
                        w.pc[l] = pc;
                    }
                }
                self.release(w);
            }
            Op::Break { b, cond } => {
                for l in active() {
                    if w.p(cond, l) {
                        w.bmask[b as usize] &= !(1 << l);
                    }
                }
                self.release(w);
            }
            Op::Bar { id } => {
                for l in active() {
                    w.st[l] = St::Bar(id);
                }
            }
            Op::Nop => {}
            Op::Ldg { d, addr, w: wd } => {
                for l in active() {
                    let a = self.address(w, addr, l);
                    let m = self.global(a, wd.bytes()).map_err(fault(l))?;
                    load(w, d, l, wd, m);
                }
            }
            Op::Stg { addr, v, w: wd } => {
                for l in active() {
                    let a = self.address(w, addr, l);
                    let bytes = store_bytes(w, v, l, wd);
                    let m = self.global(a, wd.bytes()).map_err(fault(l))?;
                    m.copy_from_slice(&bytes[..m.len()]);
                }
            }
            Op::Lds { d, r, scale, off, w: wd } => {
                for l in active() {
                    let a = u64::from(w.r(r, l).wrapping_mul(u32::from(scale))).wrapping_add(off as i64 as u64);
                    let a = a & 0xffff_ffff;
                    let tid = w.base + l as u32;
                    let m = self.shared(tid, a, wd.bytes(), false).map_err(fault(l))?;
                    load(w, d, l, wd, m);
                }
            }
            Op::Sts { r, scale, off, v, w: wd } => {
                for l in active() {
                    let a = u64::from(w.r(r, l).wrapping_mul(u32::from(scale))).wrapping_add(off as i64 as u64);
                    let a = a & 0xffff_ffff;
                    let bytes = store_bytes(w, v, l, wd);
                    let tid = w.base + l as u32;
                    let m = self.shared(tid, a, wd.bytes(), true).map_err(fault(l))?;
                    m.copy_from_slice(&bytes[..m.len()]);
                }
            }
            Op::Red { addr, v, op, ty } => {
                for l in active() {
                    let a = self.address(w, addr, l);
                    let wide = matches!(ty, RedTy::U64 | RedTy::S64 | RedTy::F64);
                    let x = if wide { w.r64(v, l) } else { u64::from(w.r(v, l)) };
                    let m = self.global(a, if wide { 8 } else { 4 }).map_err(fault(l))?;
                    let old = if wide {
                        u64::from_le_bytes(m[..8].try_into().unwrap_or([0; 8]))
                    } else {
                        u64::from(u32::from_le_bytes(m[..4].try_into().unwrap_or([0; 4])))
                    };
                    let new = red(op, ty, old, x);
                    if wide {
                        m.copy_from_slice(&new.to_le_bytes());
                    } else {
                        m.copy_from_slice(&(new as u32).to_le_bytes());
                    }
                }
            }
            Op::Cas { d, addr, cmp, new, wide } => {
                for l in active() {
                    let a = w.r64(addr, l);
                    let (c, n) = if wide {
                        (w.r64(cmp, l), w.r64(new, l))
                    } else {
                        (u64::from(w.r(cmp, l)), u64::from(w.r(new, l)))
                    };
                    let m = self.global(a, if wide { 8 } else { 4 }).map_err(fault(l))?;
                    let old = if wide {
                        u64::from_le_bytes(m[..8].try_into().unwrap_or([0; 8]))
                    } else {
                        u64::from(u32::from_le_bytes(m[..4].try_into().unwrap_or([0; 4])))
                    };
                    if old == c {
                        if wide {
                            m.copy_from_slice(&n.to_le_bytes());
                        } else {
                            m.copy_from_slice(&(n as u32).to_le_bytes());
                        }
                    }
                    if wide {
                        w.set64(d, l, old);
                    } else {
                        w.set(d, l, old as u32);
                    }
                }
            }
            Op::R2ur { d, a } => {
                // The value of the first active lane (ptxas uses it on values uniform across
                // the warp).
                let l = on.trailing_zeros() as usize;
                let v = w.r(a, l);
                if d < 63 {
                    w.ur[d as usize] = v;
                }
            }
            ref op => self.alu(w, op, on, false).map_err(|(l, m)| Fault { lane: l, message: m, pc })?,
        }
        Ok(())
    }

    /// Releases the lanes waiting at a convergence barrier once every lane it waits for has
    /// arrived, left it (BREAK) or exited.
    fn release(&mut self, w: &mut Warp) {
        // One pass over the lanes: who waits where, and who has exited.
        let (mut exited, mut sync, mut warpsync) = (0u32, [0u32; 16], 0u32);
        let mut any_sync = 0u16;
        for l in 0..32 {
            match w.st[l] {
                St::Exit => exited |= 1 << l,
                St::Sync(b) => {
                    sync[b as usize] |= 1 << l;
                    any_sync |= 1 << b;
                }
                St::Warpsync(_) => warpsync |= 1 << l,
                _ => {}
            }
        }
        while any_sync != 0 {
            let b = any_sync.trailing_zeros() as usize;
            any_sync &= any_sync - 1;
            // Every lane the barrier waits for has arrived, left it or exited.
            if w.bmask[b] & !(sync[b] | exited) == 0 {
                for l in lanes(sync[b]) {
                    w.st[l] = St::Run;
                    w.pc[l] += 1;
                }
            }
        }
        // WARPSYNC: every lane of the mask has arrived or exited.
        for l in lanes(warpsync) {
            if let St::Warpsync(m) = w.st[l]
                && m & !(warpsync | exited) == 0
            {
                for o in lanes(m & warpsync) {
                    if matches!(w.st[o], St::Warpsync(_)) {
                        w.st[o] = St::Run;
                        w.pc[o] += 1;
                    }
                }
            }
        }
    }

    /// One lane of an ALU operation (for a uniform one, the warp's uniform registers).
    fn alu(&mut self, w: &mut Warp, op: &Op, on: u32, u: bool) -> Result<(), (usize, String)> {
        match *op {
            Op::Imad { d, a, b, c, neg_c, x, cin, signed, kind, cout } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    let (a, b) = (a_r.at(w, l), b_r.at(w, l));
                    let carry = u64::from(x && w.p(cin, l));
                    let prod = if signed {
                        (i64::from(a as i32) * i64::from(b as i32)) as u64
                    } else {
                        u64::from(a) * u64::from(b)
                    };
                    if kind == 0 {
                        let c = c_r.at(w, l);
                        let c = if !neg_c {
                            u64::from(c)
                        } else if x {
                            u64::from(!c)
                        } else {
                            u64::from(c.wrapping_neg())
                        };
                        let s = (prod & 0xffff_ffff) + c + carry;
                        put(w, u, d, l, s as u32);
                    } else {
                        // `.WIDE`: the 64-bit product plus the 64-bit C; `.HI`: the high half of
                        // the same sum. The carry out is bit 64.
                        let c = self.v64(w, c, l);
                        let c = if !neg_c {
                            u128::from(c)
                        } else if x {
                            u128::from(!c)
                        } else {
                            u128::from(c.wrapping_neg())
                        };
                        let prod = if signed && (prod as i64) < 0 {
                            u128::from(prod) | (u128::MAX << 64)
                        } else {
                            u128::from(prod)
                        };
                        let s = prod.wrapping_add(c).wrapping_add(u128::from(carry));
                        if kind == 1 {
                            put64(w, u, d, l, s as u64);
                        } else {
                            put(w, u, d, l, (s >> 32) as u32);
                        }
                        w.setp(cout, u, l, (s >> 64) & 1 == 1);
                    }
                }
            }
            Op::Iadd3 { d, a, b, c, neg, x, cin, cout } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    // Two additions, each with its carry out: (A + B [+ carry 0]), then that plus
                    // C [+ carry 1]. A negated operand is its complement plus one, except in `.X`,
                    // where it is the complement (the carries complete the subtraction).
                    let vals = [a_r.at(w, l), b_r.at(w, l), c_r.at(w, l)];
                    let term = |i: usize| match (neg[i], x) {
                        (false, _) => u64::from(vals[i]),
                        (true, true) => u64::from(!vals[i]),
                        (true, false) => u64::from(!vals[i]) + 1,
                    };
                    let (c0, c1) = if x { (u64::from(w.p(cin[0], l)), u64::from(w.p(cin[1], l))) } else { (0, 0) };
                    let s1 = term(0) + term(1) + c0;
                    let s2 = (s1 & 0xffff_ffff) + term(2) + c1;
                    put(w, u, d, l, s2 as u32);
                    w.setp(cout[0], u, l, s1 >> 32 != 0);
                    w.setp(cout[1], u, l, s2 >> 32 != 0);
                }
            }
            Op::Isetp { p, q, cmp, signed, setop: so, a, b, pin, ex } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let (a, b) = (a_r.at(w, l), b_r.at(w, l));
                    let r = match ex {
                        Some(low) if a == b => w.p(low, l),
                        Some(_) => icmp(
                            match cmp {
                                3 => 1,
                                6 => 4,
                                c => c,
                            },
                            a,
                            b,
                            signed,
                        ),
                        None => icmp(cmp, a, b, signed),
                    };
                    let acc = w.p(pin, l);
                    w.setp(p, u, l, setop(so, r, acc));
                    w.setp(q, u, l, setop(so, !r, acc));
                }
            }
            Op::Sel { d, a, b, p } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v = if w.p(p, l) { a_r.at(w, l) } else { b_r.at(w, l) };
                    put(w, u, d, l, v);
                }
            }
            Op::Fsel { d, a, am, b, bm, p } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v = if w.p(p, l) { f32m(a_r.at(w, l), am) } else { f32m(b_r.at(w, l), bm) };
                    w.set(d, l, v.to_bits());
                }
            }
            Op::Mov { d, b } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v = b_r.at(w, l);
                    put(w, u, d, l, v);
                }
            }
            Op::Lop3 { d, p, a, b, c, lut } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    let v = lop3(lut, a_r.at(w, l), b_r.at(w, l), c_r.at(w, l));
                    put(w, u, d, l, v);
                    w.setp(p, u, l, v != 0);
                }
            }
            Op::Shf { d, lo, shift, hi, right, wrap, ty, high } => {
                let lo_r = self.rv(w, lo);
                let shift_r = self.rv(w, shift);
                let hi_r = self.rv(w, hi);
                for l in lanes(on) {
                    let (lo, s, hi) = (lo_r.at(w, l), shift_r.at(w, l), hi_r.at(w, l));
                    let bits = if ty >= 2 { 32 } else { 64 };
                    let signed = ty == 0 || ty == 2;
                    let s = if wrap { s & (bits - 1) } else { s.min(bits) };
                    let x = u64::from(hi) << 32 | u64::from(lo);
                    let r = if right {
                        if signed { ((x as i64) >> s.min(63)) as u64 } else { x.checked_shr(s).unwrap_or(0) }
                    } else {
                        x.checked_shl(s).unwrap_or(0)
                    };
                    put(w, u, d, l, if high { (r >> 32) as u32 } else { r as u32 });
                }
            }
            Op::Lea { d, cout, a, neg_a, b, sx, c, shift, hi, x, cin } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    let (av, bv, cv) = (a_r.at(w, l), b_r.at(w, l), c_r.at(w, l));
                    let av = match (neg_a, x) {
                        (false, _) => av,
                        (true, true) => !av,
                        (true, false) => av.wrapping_neg(),
                    };
                    let cv = if sx { ((av as i32) >> 31) as u32 } else { cv };
                    let sh = if hi {
                        ((u64::from(cv) << 32 | u64::from(av)) << shift >> 32) as u32
                    } else {
                        av.wrapping_shl(u32::from(shift))
                    };
                    let s = u64::from(sh) + u64::from(bv) + u64::from(x && w.p(cin, l));
                    put(w, u, d, l, s as u32);
                    w.setp(cout, u, l, s >> 32 & 1 == 1);
                }
            }
            Op::Plop3 { p, q, srcs, lut, lut2 } => {
                for l in lanes(on) {
                    let v = [w.p(srcs[0], l), w.p(srcs[1], l), w.p(srcs[2], l)];
                    let i = usize::from(v[0]) << 2 | usize::from(v[1]) << 1 | usize::from(v[2]);
                    w.setp(p, false, l, lut >> i & 1 == 1);
                    w.setp(q, false, l, lut2 >> i & 1 == 1);
                }
            }
            Op::P2r { d, a, mask, byte } => {
                let mask_r = self.rv(w, mask);
                let a_r = self.rv(w, a);
                for l in lanes(on) {
                    let mut pr = 0u32;
                    for n in 0..7 {
                        pr |= if u { u32::from(w.up >> n & 1) } else { w.preds[n] >> l & 1 } << n;
                    }
                    let sh = 8 * u32::from(byte);
                    let m = (mask_r.at(w, l) & 0x7f) << sh;
                    let v = (a_r.at(w, l) & !m) | (pr << sh & m);
                    put(w, u, d, l, v);
                }
            }
            Op::R2p { a, mask, byte } => {
                let a_r = self.rv(w, a);
                let mask_r = self.rv(w, mask);
                for l in lanes(on) {
                    let v = a_r.at(w, l) >> (8 * u32::from(byte));
                    let m = mask_r.at(w, l);
                    for n in 0..7u8 {
                        if m >> n & 1 == 1 {
                            w.setp(n, false, l, v >> n & 1 == 1);
                        }
                    }
                }
            }
            Op::Prmt { d, a, sel, c } => {
                let a_r = self.rv(w, a);
                let sel_r = self.rv(w, sel);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    let (a, s, c) = (a_r.at(w, l), sel_r.at(w, l), c_r.at(w, l));
                    let bytes = (u64::from(c) << 32 | u64::from(a)).to_le_bytes();
                    let mut r = 0u32;
                    for i in 0..4 {
                        let nib = s >> (4 * i) & 0xf;
                        let mut byte = u32::from(bytes[(nib & 7) as usize]);
                        if nib & 8 != 0 {
                            byte = if byte & 0x80 != 0 { 0xff } else { 0 };
                        }
                        r |= byte << (8 * i);
                    }
                    w.set(d, l, r);
                }
            }
            Op::Sgxt { d, a, b, signed, wrap } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let (a, n) = (a_r.at(w, l), b_r.at(w, l));
                    let n = if wrap { n & 31 } else { n.min(32) };
                    let v = if n == 0 {
                        0
                    } else if n >= 32 {
                        a
                    } else if signed {
                        (((a << (32 - n)) as i32) >> (32 - n)) as u32
                    } else {
                        a & ((1 << n) - 1)
                    };
                    put(w, u, d, l, v);
                }
            }
            Op::Imnmx { d, a, b, signed, p } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let (x, y) = (a_r.at(w, l), b_r.at(w, l));
                    let less = if signed { (x as i32) < (y as i32) } else { x < y };
                    let min = w.p(p, l);
                    w.set(d, l, if less == min { x } else { y });
                }
            }
            Op::Iabs { d, b } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v = (b_r.at(w, l) as i32).wrapping_abs() as u32;
                    w.set(d, l, v);
                }
            }
            Op::Ffma { d, a, am, b, bm, c, cm, rnd, ftz, sat: s } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                let c_r = self.rv(w, c);
                for l in lanes(on) {
                    let a = ftz_if(f32m(a_r.at(w, l), am), ftz);
                    let b = ftz_if(f32m(b_r.at(w, l), bm), ftz);
                    let c = ftz_if(f32m(c_r.at(w, l), cm), ftz);
                    let r = sat(ftz_if(fp::fma32(a, b, c, rnd), ftz), s);
                    w.set(d, l, canon32(r));
                }
            }
            Op::Fadd { d, a, am, b, bm, rnd, ftz, sat: s } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let a = ftz_if(f32m(a_r.at(w, l), am), ftz);
                    let b = ftz_if(f32m(b_r.at(w, l), bm), ftz);
                    let r = sat(ftz_if(fp::add32(a, b, rnd), ftz), s);
                    w.set(d, l, canon32(r));
                }
            }
            Op::Fmul { d, a, am, b, bm, rnd, ftz, sat: s } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let a = ftz_if(f32m(a_r.at(w, l), am), ftz);
                    let b = ftz_if(f32m(b_r.at(w, l), bm), ftz);
                    let r = sat(ftz_if(fp::mul32(a, b, rnd), ftz), s);
                    w.set(d, l, canon32(r));
                }
            }
            Op::Fsetp { p, q, cmp, ftz, setop: so, a, am, b, bm, pin } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let a = ftz_if(f32m(a_r.at(w, l), am), ftz);
                    let b = ftz_if(f32m(b_r.at(w, l), bm), ftz);
                    let r = fcmp(cmp, f64::from(a), f64::from(b));
                    let acc = w.p(pin, l);
                    w.setp(p, false, l, setop(so, r, acc));
                    w.setp(q, false, l, setop(so, !r, acc));
                }
            }
            Op::Dsetp { p, q, cmp, setop: so, a, am, b, bm, pin } => {
                for l in lanes(on) {
                    let a = f64m(self.v64(w, a, l), am);
                    let b = f64m(self.v64(w, b, l), bm);
                    let r = fcmp(cmp, a, b);
                    let acc = w.p(pin, l);
                    w.setp(p, false, l, setop(so, r, acc));
                    w.setp(q, false, l, setop(so, !r, acc));
                }
            }
            Op::Dfma { d, a, am, b, bm, c, cm, rnd } => {
                for l in lanes(on) {
                    let (a, b, c) =
                        (f64m(self.v64(w, a, l), am), f64m(self.v64(w, b, l), bm), f64m(self.v64(w, c, l), cm));
                    let r = fp::fma64(a, b, c, rnd);
                    w.set64(d, l, canon64(r));
                }
            }
            Op::Dadd { d, a, am, b, bm, rnd } => {
                for l in lanes(on) {
                    let r = fp::add64(f64m(self.v64(w, a, l), am), f64m(self.v64(w, b, l), bm), rnd);
                    w.set64(d, l, canon64(r));
                }
            }
            Op::Dmul { d, a, am, b, bm, rnd } => {
                for l in lanes(on) {
                    let r = fp::mul64(f64m(self.v64(w, a, l), am), f64m(self.v64(w, b, l), bm), rnd);
                    w.set64(d, l, canon64(r));
                }
            }
            Op::Mufu { d, op, b, bm } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v = b_r.at(w, l);
                    let v = f32m(v, bm).to_bits();
                    w.set(d, l, mufu(op, v));
                }
            }
            Op::Fchk { p, a, am, b, bm } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let r = fchk(f32m(a_r.at(w, l), am), f32m(b_r.at(w, l), bm));
                    w.setp(p, false, l, r);
                }
            }
            Op::Hadd2F32 { d, a, am, b, bm, b_hi, ftz } => {
                let b_r = self.rv(w, b);
                let a_r = self.rv(w, a);
                for l in lanes(on) {
                    let h = b_r.at(w, l) >> if b_hi { 16 } else { 0 } & 0xffff;
                    let h = f16::from_bits(h as u16).to_f32();
                    let h = f32m(h.to_bits(), bm);
                    let a = f32m(a_r.at(w, l), am);
                    let r = ftz_if(fp::add32(ftz_if(a, ftz), ftz_if(h, ftz), Rnd::Rn), ftz);
                    w.set(d, l, canon32(r));
                }
            }
            Op::F2f { d, b, bm, from, to, bf, rnd, ftz, b_hi } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let x = match from {
                        1 => {
                            let h = b_r.at(w, l) >> if b_hi { 16 } else { 0 } & 0xffff;
                            f64::from(f32m(f16::from_bits(h as u16).to_f32().to_bits(), bm))
                        }
                        2 => f64::from(ftz_if(f32m(b_r.at(w, l), bm), ftz)),
                        _ => f64m(self.v64(w, b, l), bm),
                    };
                    match to {
                        1 => {
                            if rnd != Rnd::Rn {
                                return Err((
                                    l,
                                    "F2F to a 16-bit float in a directed rounding mode is not modelled".into(),
                                ));
                            }
                            let x = x as f32;
                            let h = if bf { bf16::from_f32(x).to_bits() } else { f16::from_f32(x).to_bits() };
                            w.set(d, l, u32::from(h));
                        }
                        2 => {
                            let r = ftz_if(fp::round_f32(x, 0.0, rnd), ftz);
                            w.set(d, l, canon32(r));
                        }
                        _ => w.set64(d, l, canon64(x)),
                    }
                }
            }
            Op::F2i { d, b, bm, from, bytes, signed, rnd, ftz } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let x = if from == 3 {
                        f64m(self.v64(w, b, l), bm)
                    } else {
                        f64::from(ftz_if(f32m(b_r.at(w, l), bm), ftz))
                    };
                    let v = fp::float_to_int(x, rnd, signed, u32::from(bytes) * 8);
                    if bytes == 8 {
                        w.set64(d, l, v);
                    } else {
                        let v = if signed && bytes < 4 {
                            let sh = 64 - 8 * u32::from(bytes);
                            ((v << sh) as i64 >> sh) as u64
                        } else {
                            v
                        };
                        w.set(d, l, v as u32);
                    }
                }
            }
            Op::I2f { d, b, bytes, signed, to, rnd } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let v: i128 = match (bytes, signed) {
                        (8, true) => i128::from(self.v64(w, b, l) as i64),
                        (8, false) => i128::from(self.v64(w, b, l)),
                        (_, true) => i128::from(b_r.at(w, l) as i32),
                        _ => i128::from(b_r.at(w, l)),
                    };
                    if to == 3 {
                        w.set64(d, l, fp::int_to_f64(v, rnd).to_bits());
                    } else {
                        w.set(d, l, fp::int_to_f32(v, rnd).to_bits());
                    }
                }
            }
            Op::Frnd { d, b, bm, size, rnd, ftz } => {
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    if size == 3 {
                        let r = fp::rint64(f64m(self.v64(w, b, l), bm), rnd);
                        w.set64(d, l, canon64(r));
                    } else {
                        let x = ftz_if(f32m(b_r.at(w, l), bm), ftz);
                        let r = fp::rint64(f64::from(x), rnd) as f32;
                        w.set(d, l, canon32(r));
                    }
                }
            }
            Op::F2fp { d, a, b, bf } => {
                let a_r = self.rv(w, a);
                let b_r = self.rv(w, b);
                for l in lanes(on) {
                    let cvt = |v: u32| -> u32 {
                        let x = f32::from_bits(v);
                        u32::from(if bf { bf16::from_f32(x).to_bits() } else { f16::from_f32(x).to_bits() })
                    };
                    let v = cvt(a_r.at(w, l)) << 16 | cvt(b_r.at(w, l));
                    w.set(d, l, v);
                }
            }
            Op::Uldc { d, bank, off, w: wd } => {
                for l in lanes(on) {
                    let lo = self.bank(bank, off);
                    match wd {
                        Width::B64 => {
                            let hi = self.bank(bank, off + 4);
                            put64(w, true, d, l, u64::from(hi) << 32 | u64::from(lo));
                        }
                        Width::B32 => put(w, true, d, l, lo),
                        Width::U8 => put(w, true, d, l, lo & 0xff),
                        Width::S8 => put(w, true, d, l, lo as u8 as i8 as i32 as u32),
                        Width::U16 => put(w, true, d, l, lo & 0xffff),
                        Width::S16 => put(w, true, d, l, lo as u16 as i16 as i32 as u32),
                        Width::B128 => return Err((l, "ULDC.128 is not modelled".into())),
                    }
                }
            }
            Op::S2r { d, sr } => {
                for l in lanes(on) {
                    let v = self.sreg(w, sr, l).map_err(|e| (l, e))?;
                    put(w, u, d, l, v);
                }
            }
            Op::Cs2r { d, sr, wide } => {
                for l in lanes(on) {
                    let v = self.sreg(w, sr, l).map_err(|e| (l, e))?;
                    if wide {
                        let hi = if sr == 0x50 { self.sreg(w, 0x51, l).map_err(|e| (l, e))? } else { 0 };
                        w.set64(d, l, u64::from(hi) << 32 | u64::from(v));
                    } else {
                        w.set(d, l, v);
                    }
                }
            }
            Op::Popc { d, a } => {
                let a_r = self.rv(w, a);
                for l in lanes(on) {
                    let v = a_r.at(w, l).count_ones();
                    w.set(d, l, v);
                }
            }
            Op::Uflo { d, a } => {
                let a_r = self.rv(w, a);
                for l in lanes(on) {
                    let v = a_r.at(w, l);
                    let r = if v == 0 { u32::MAX } else { 31 - v.leading_zeros() };
                    put(w, true, d, l, r);
                }
            }
            _ => return Err((on.trailing_zeros() as usize, format!("{op:?} is not an ALU operation"))),
        }
        Ok(())
    }
}

/// Loads `m` into registers from `d` (sign- or zero-extending sub-word loads).
fn load(w: &mut Warp, d: u8, l: usize, wd: Width, m: &[u8]) {
    let word = |i: usize| u32::from_le_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    match wd {
        Width::U8 => w.set(d, l, u32::from(m[0])),
        Width::S8 => w.set(d, l, m[0] as i8 as i32 as u32),
        Width::U16 => w.set(d, l, u32::from(u16::from_le_bytes([m[0], m[1]]))),
        Width::S16 => w.set(d, l, i16::from_le_bytes([m[0], m[1]]) as i32 as u32),
        Width::B32 => w.set(d, l, word(0)),
        Width::B64 | Width::B128 => {
            for i in 0..usize::from(wd.regs()) {
                if d != 255 {
                    w.set(d.saturating_add(i as u8), l, word(4 * i));
                }
            }
        }
    }
}

/// The bytes a store of `wd` from register `v` writes.
fn store_bytes(w: &Warp, v: u8, l: usize, wd: Width) -> [u8; 16] {
    let mut out = [0u8; 16];
    for i in 0..usize::from(wd.regs()) {
        let r = if v == 255 { 0 } else { w.r(v.saturating_add(i as u8), l) };
        out[4 * i..4 * i + 4].copy_from_slice(&r.to_le_bytes());
    }
    out
}

/// A reduction's new value.
fn red(op: RedOp, ty: RedTy, old: u64, x: u64) -> u64 {
    match ty {
        RedTy::F32 => {
            let r = fp::add32(f32::from_bits(old as u32), f32::from_bits(x as u32), Rnd::Rn);
            u64::from(canon32(r))
        }
        RedTy::F64 => canon64(f64::from_bits(old) + f64::from_bits(x)),
        _ => {
            let wide = matches!(ty, RedTy::U64 | RedTy::S64);
            let signed = matches!(ty, RedTy::S32 | RedTy::S64);
            let (o, v) = if wide { (old, x) } else { (old & 0xffff_ffff, x & 0xffff_ffff) };
            let so = if wide { o as i64 } else { i64::from(o as u32 as i32) };
            let sv = if wide { v as i64 } else { i64::from(v as u32 as i32) };
            let r = match op {
                RedOp::Add => o.wrapping_add(v),
                RedOp::And => o & v,
                RedOp::Or => o | v,
                RedOp::Xor => o ^ v,
                RedOp::Min if signed => so.min(sv) as u64,
                RedOp::Max if signed => so.max(sv) as u64,
                RedOp::Min => o.min(v),
                RedOp::Max => o.max(v),
            };
            if wide { r } else { r & 0xffff_ffff }
        }
    }
}
