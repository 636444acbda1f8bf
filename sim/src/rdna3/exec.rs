//! Executing RDNA3 waves: the scalar and vector register files, EXEC/VCC/SCC, scalar and global
//! memory, LDS, barriers and `s_waitcnt` checking.

use super::isa::{Cond, Enc, Ext, Inst, Pk, PkF, Sem, T};
use half::f16;
use std::collections::VecDeque;

/// Work-items per wave (tk's kernels are wave32).
pub const LANES: usize = 32;

/// One region of the emulated address space.
pub struct Region<'a> {
    pub base: u64,
    pub data: &'a mut [u8],
    pub name: String,
    pub writable: bool,
}

/// What the emulated waves read and write through global and scalar memory. An error is the
/// fault's description.
pub trait Memory {
    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), String>;
    fn write(&mut self, addr: u64, src: &[u8]) -> Result<(), String>;
}

/// An address space made of host regions: the regions a kernel may touch; anything else faults.
pub struct Regions<'a> {
    pub regions: Vec<Region<'a>>,
}

impl Memory for Regions<'_> {
    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), String> {
        self.read_at(addr, out)
    }
    fn write(&mut self, addr: u64, src: &[u8]) -> Result<(), String> {
        self.write_at(addr, src)
    }
}

impl<'a> Regions<'a> {
    fn find(&self, addr: u64, len: usize) -> Result<(usize, usize), String> {
        for (i, r) in self.regions.iter().enumerate() {
            if addr >= r.base && addr < r.base + r.data.len() as u64 {
                let off = (addr - r.base) as usize;
                if off + len > r.data.len() {
                    return Err(format!(
                        "{len} bytes at {addr:#x} run past the end of {} ({} bytes at {:#x})",
                        r.name,
                        r.data.len(),
                        r.base
                    ));
                }
                return Ok((i, off));
            }
        }
        let near = self
            .regions
            .iter()
            .filter(|r| addr >= r.base)
            .min_by_key(|r| addr - r.base)
            .map(|r| {
                format!(
                    " ({} bytes past the end of {}, which has {} bytes)",
                    addr - r.base - r.data.len() as u64,
                    r.name,
                    r.data.len()
                )
            })
            .unwrap_or_default();
        Err(format!("{len} bytes at {addr:#x} are outside every buffer{near}"))
    }

    pub fn read_at(&self, addr: u64, out: &mut [u8]) -> Result<(), String> {
        let (i, off) = self.find(addr, out.len())?;
        out.copy_from_slice(&self.regions[i].data[off..off + out.len()]);
        Ok(())
    }

    pub fn write_at(&mut self, addr: u64, src: &[u8]) -> Result<(), String> {
        let (i, off) = self.find(addr, src.len())?;
        let r = &mut self.regions[i];
        if !r.writable {
            return Err(format!("a store of {} bytes at {addr:#x} into the read-only {}", src.len(), r.name));
        }
        r.data[off..off + src.len()].copy_from_slice(src);
        Ok(())
    }
}

/// A load whose result has not been waited for.
#[derive(Clone, Copy, Debug)]
struct Pend {
    lgkm: bool,
    start: u16,
    n: u16,
    pc: u32,
}

/// One wave's registers and progress.
pub struct Wave {
    pub s: [u32; 128],
    pub v: Vec<[u32; LANES]>,
    pub scc: bool,
    pub pc: usize,
    pub done: bool,
    pub at_barrier: bool,
    pub id: u32,
    pending: VecDeque<Pend>,
}

impl Wave {
    pub fn new(id: u32, vgprs: usize) -> Wave {
        Wave {
            s: [0; 128],
            v: vec![[0; LANES]; vgprs.max(1)],
            scc: false,
            pc: 0,
            done: false,
            at_barrier: false,
            id,
            pending: VecDeque::new(),
        }
    }
    pub fn exec(&self) -> u32 {
        self.s[126]
    }
}

/// What a launch's waves share: the workgroup's LDS and the race checker's state.
pub struct Group {
    pub lds: Vec<u8>,
    /// Per LDS byte: the wave that last wrote it and in which barrier phase.
    pub lds_writer: Vec<(u32, u32)>,
    /// Per LDS byte: the wave that last read it and in which barrier phase.
    pub lds_reader: Vec<(u32, u32)>,
    pub phase: u32,
}

/// Runs instructions of one wave until it ends or waits at a barrier.
pub struct Exec<'p, 'm> {
    pub prog: &'p [Inst],
    pub index: &'p [u32],
    pub uses: &'p [Vec<(u16, u16)>],
    /// Where decoding stopped on an unknown word, and why.
    pub undecoded: Option<&'p (u32, String)>,
    pub mem: &'m mut dyn Memory,
    pub budget: &'m mut u64,
}

const NONE: u32 = u32::MAX;

/// `s_cls_i32`/`v_cls_i32`: the leading bits equal to the sign bit; -1 when all are.
fn cls(x: u32) -> u32 {
    match x as i32 {
        0 | -1 => u32::MAX,
        v if v < 0 => (!x).leading_zeros(),
        _ => x.leading_zeros(),
    }
}

fn f32b(x: f32) -> u64 {
    u64::from(x.to_bits())
}
fn bf32(x: u64) -> f32 {
    f32::from_bits(x as u32)
}
fn bf64(x: u64) -> f64 {
    f64::from_bits(x)
}
fn h(x: u64) -> f64 {
    f64::from(f16::from_bits(x as u16))
}
fn hb(x: f64) -> u64 {
    u64::from(f16::from_f64(x).to_bits())
}

/// The value of a float operand of type `t` as f64 (exact).
fn fval(t: T, x: u64) -> f64 {
    match t {
        T::F16 | T::B16 => h(x),
        T::F64 | T::B64 => bf64(x),
        _ => f64::from(bf32(x)),
    }
}

/// Rounds `x` to type `t` (one rounding: exact for the results of +, -, *, /, sqrt in f64).
fn fbits(t: T, x: f64) -> u64 {
    match t {
        T::F16 | T::B16 => hb(x),
        T::F64 | T::B64 => x.to_bits(),
        _ => f32b(x as f32),
    }
}

fn sign_bit(t: T) -> u64 {
    match t {
        T::F16 | T::B16 => 1 << 15,
        T::F64 | T::B64 => 1 << 63,
        _ => 1 << 31,
    }
}

fn maxnum(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        if b.is_nan() { f64::NAN } else { b }
    } else if b.is_nan() || a > b || (a == b && b.is_sign_negative()) {
        a
    } else {
        b
    }
}

fn minnum(a: f64, b: f64) -> f64 {
    if a.is_nan() {
        if b.is_nan() { f64::NAN } else { b }
    } else if b.is_nan() || a < b || (a == b && a.is_sign_negative()) {
        a
    } else {
        b
    }
}

/// The biased exponent field of a value of type `t`.
fn exponent(t: T, x: u64) -> i32 {
    match t {
        T::F64 => ((x >> 52) & 0x7ff) as i32,
        T::F16 => ((x >> 10) & 0x1f) as i32,
        _ => ((x >> 23) & 0xff) as i32,
    }
}

/// `x * 2^n` exactly rounded once, for f64.
pub fn ldexp(x: f64, n: i32) -> f64 {
    if x == 0.0 || !x.is_finite() || n == 0 {
        return x;
    }
    let bits = x.to_bits();
    let sign = bits & (1 << 63);
    let mut e = ((bits >> 52) & 0x7ff) as i64;
    let mut m = bits & ((1 << 52) - 1);
    if e == 0 {
        // Normalise a denormal.
        let shift = m.leading_zeros() as i64 - 11;
        m = (m << shift) & ((1 << 52) - 1);
        e = 1 - shift;
    }
    let e2 = e + i64::from(n);
    if e2 >= 0x7ff {
        return f64::from_bits(sign | 0x7ff0_0000_0000_0000);
    }
    if e2 >= 1 {
        return f64::from_bits(sign | ((e2 as u64) << 52) | m);
    }
    // A denormal result: shift the full significand right with round-to-nearest-even.
    let full = m | (1 << 52);
    let shift = (1 - e2) as u32;
    if shift > 54 {
        return f64::from_bits(sign);
    }
    let q = full >> shift;
    let rem = full & ((1u64 << shift) - 1);
    let half = 1u64 << (shift - 1);
    let r = if rem > half || (rem == half && q & 1 == 1) { q + 1 } else { q };
    f64::from_bits(sign | r)
}

/// A deterministic choice per input, for the approximate instructions' error.
fn wobble(x: u64) -> bool {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) & 1 == 1
}

/// The f32 result of an instruction the ISA documents to 1 ULP: the correctly rounded value of
/// `exact`, or for some inputs its neighbour on the other side of `exact`, so code that needs
/// more than 1 ULP is caught.
fn one_ulp(exact: f64, input: u64) -> f32 {
    let r = exact as f32;
    if !r.is_finite() || f64::from(r) == exact || !wobble(input) {
        return r;
    }
    let b = r.to_bits();
    let towards_up = f64::from(r) < exact;
    let up = if r >= 0.0 { towards_up } else { !towards_up };
    let n = if up {
        b + 1
    } else if b & 0x7fff_ffff == 0 {
        b
    } else {
        b - 1
    };
    let c = f32::from_bits(n);
    if c.is_finite() { c } else { r }
}

/// The f64 result of an instruction the ISA documents to 2^29 ULP: the low 29 bits are dropped.
fn coarse64(x: f64) -> f64 {
    if !x.is_finite() || x == 0.0 {
        return x;
    }
    f64::from_bits(x.to_bits() & !((1u64 << 29) - 1))
}

fn class_bits(t: T, x: u64) -> u32 {
    let v = fval(t, x);
    let neg = x & sign_bit(t) != 0;
    let quiet = match t {
        T::F16 => x & (1 << 9) != 0,
        T::F64 => x & (1 << 51) != 0,
        _ => x & (1 << 22) != 0,
    };
    let subnormal = exponent(t, x) == 0 && v != 0.0;
    let bit = if v.is_nan() {
        if quiet { 1 } else { 0 }
    } else if v.is_infinite() {
        if neg { 2 } else { 9 }
    } else if v == 0.0 {
        if neg { 5 } else { 6 }
    } else if subnormal {
        if neg { 4 } else { 7 }
    } else if neg {
        3
    } else {
        8
    };
    1 << bit
}

fn fcmp(c: Cond, a: f64, b: f64) -> bool {
    let un = a.is_nan() || b.is_nan();
    match c {
        Cond::F => false,
        Cond::Lt => a < b,
        Cond::Eq => a == b,
        Cond::Le => a <= b,
        Cond::Gt => a > b,
        Cond::Lg => !un && a != b,
        Cond::Ge => a >= b,
        Cond::O => !un,
        Cond::U => un,
        Cond::Nge => un || a < b,
        Cond::Nlg => un || a == b,
        Cond::Ngt => un || a <= b,
        Cond::Nle => un || a > b,
        Cond::Neq => !(a == b),
        Cond::Nlt => un || a >= b,
        Cond::Tru => true,
        Cond::Ne => a != b,
    }
}

fn icmp(c: Cond, a: i128, b: i128) -> bool {
    match c {
        Cond::F => false,
        Cond::Lt => a < b,
        Cond::Eq => a == b,
        Cond::Le => a <= b,
        Cond::Gt => a > b,
        Cond::Ne | Cond::Lg => a != b,
        Cond::Ge => a >= b,
        _ => true,
    }
}

fn div_scale(t: T, s0: u64, s1: u64, s2: u64) -> (u64, bool) {
    let (big, scale, tiny) = if t == T::F64 { (768, 128, 53) } else { (96, 64, 23) };
    let (v0, v1, v2) = (fval(t, s0), fval(t, s1), fval(t, s2));
    let denorm = |x: f64| {
        if t == T::F64 {
            x != 0.0 && x.abs() < f64::MIN_POSITIVE
        } else {
            x != 0.0 && x.abs() < f64::from(f32::MIN_POSITIVE)
        }
    };
    let sc = |x: f64, n: i32| fbits(t, ldexp(x, n));
    if v2 == 0.0 || v1 == 0.0 {
        return (fbits(t, f64::NAN), false);
    }
    if exponent(t, s2) - exponent(t, s1) >= big {
        return (if v0 == v1 { sc(v0, scale) } else { s0 }, true);
    }
    if denorm(v1) {
        return (sc(v0, scale), false);
    }
    let r = fval(t, fbits(t, 1.0 / v1));
    let q = fval(t, fbits(t, v2 / v1));
    if (r == 0.0 || denorm(r)) && (q == 0.0 || denorm(q)) {
        return (if v0 == v1 { sc(v0, scale) } else { s0 }, true);
    }
    if denorm(r) {
        return (sc(v0, -scale), false);
    }
    if denorm(q) {
        return (if v0 == v2 { sc(v0, scale) } else { s0 }, true);
    }
    if exponent(t, s2) <= tiny {
        return (sc(v0, scale), false);
    }
    (s0, false)
}

fn div_fixup(t: T, s0: u64, s1: u64, s2: u64) -> u64 {
    let (q, d, n) = (fval(t, s0), fval(t, s1), fval(t, s2));
    let neg = (s1 ^ s2) & sign_bit(t) != 0;
    let signed = |x: f64| fbits(t, if neg { -x } else { x });
    let limit = match t {
        T::F64 => -1075,
        T::F16 => -25,
        _ => -150,
    };
    let max_e = match t {
        T::F64 => 2047,
        T::F16 => 31,
        _ => 255,
    };
    if n.is_nan() {
        return fbits(t, n);
    }
    if d.is_nan() {
        return fbits(t, d);
    }
    if (d == 0.0 && n == 0.0) || (d.is_infinite() && n.is_infinite()) {
        return fbits(t, f64::NAN);
    }
    if d == 0.0 || n.is_infinite() {
        return signed(f64::INFINITY);
    }
    if d.is_infinite() || n == 0.0 {
        return signed(0.0);
    }
    if exponent(t, s2) - exponent(t, s1) < limit {
        return signed(0.0);
    }
    if exponent(t, s1) == max_e || q.is_nan() {
        return signed(f64::INFINITY);
    }
    signed(q.abs())
}

fn mix_src(v: u64, f16_src: bool, hi: bool, neg: bool, abs: bool) -> f64 {
    let mut x = if f16_src { h(if hi { v >> 16 } else { v }) } else { f64::from(bf32(v)) };
    if abs {
        x = x.abs();
    }
    if neg {
        x = -x;
    }
    x
}

impl<'p, 'm> Exec<'p, 'm> {
    /// Reads source operand `code` of type `t` for `lane`.
    #[inline]
    fn rd(&self, w: &Wave, code: u16, t: T, lit: Option<u32>, lane: usize) -> u64 {
        let wide = t.is64();
        match code {
            256.. => {
                let r = (code - 256) as usize;
                let lo = u64::from(w.v.get(r).map_or(0, |x| x[lane]));
                if wide { lo | u64::from(w.v.get(r + 1).map_or(0, |x| x[lane])) << 32 } else { lo }
            }
            124 => 0,
            0..=127 => {
                let lo = u64::from(w.s[code as usize]);
                if wide { lo | u64::from(w.s[(code as usize + 1) & 127]) << 32 } else { lo }
            }
            128..=208 => {
                let v: i64 = if code <= 192 { i64::from(code - 128) } else { -i64::from(code - 192) };
                match t {
                    T::F16 | T::B16 => (v as u64) & 0xffff,
                    _ if wide => v as u64,
                    _ => (v as u64) & 0xffff_ffff,
                }
            }
            240..=248 => {
                let f = [0.5, -0.5, 1.0, -1.0, 2.0, -2.0, 4.0, -4.0, 0.159_154_943_091_895_35][(code - 240) as usize];
                match t {
                    T::F16 | T::B16 => {
                        if code == 248 {
                            0x3118
                        } else {
                            hb(f)
                        }
                    }
                    _ if wide => {
                        if code == 248 {
                            0x3fc4_5f30_6dc9_c882
                        } else {
                            f.to_bits()
                        }
                    }
                    _ => {
                        if code == 248 {
                            0x3e22_f983
                        } else {
                            f32b(f as f32)
                        }
                    }
                }
            }
            253 => u64::from(w.scc),
            255 => {
                let l = u64::from(lit.unwrap_or(0));
                match t {
                    T::F64 => l << 32,
                    _ => l,
                }
            }
            _ => 0,
        }
    }

    /// A scalar operand (lane-independent).
    fn sv(&self, w: &Wave, code: u16, t: T, lit: Option<u32>) -> u64 {
        self.rd(w, code, t, lit, 0)
    }

    fn ws(w: &mut Wave, r: u16, t: T, v: u64) {
        if r == 124 || r >= 128 {
            return;
        }
        w.s[r as usize] = v as u32;
        if t.is64() {
            w.s[(r as usize + 1) & 127] = (v >> 32) as u32;
        }
    }

    fn wv(w: &mut Wave, r: u16, lane: usize, t: T, v: u64) -> Result<(), String> {
        let i = r.checked_sub(256).ok_or_else(|| format!("writes a vector result to scalar operand {r}"))? as usize;
        let n = t.regs() as usize;
        if i + n > w.v.len() {
            return Err(format!(
                "writes v{} beyond the {} VGPRs the kernel descriptor allocates",
                i + n - 1,
                w.v.len()
            ));
        }
        w.v[i][lane] = v as u32;
        if n == 2 {
            w.v[i + 1][lane] = (v >> 32) as u32;
        }
        Ok(())
    }

    fn check_pending(&self, w: &Wave, idx: usize, inst: &Inst) -> Result<(), String> {
        for p in &w.pending {
            for &(s, n) in &self.uses[idx] {
                if s < p.start + p.n && p.start < s + n {
                    // A later load may overwrite the same registers: loads of one counter return in order.
                    let own_load = matches!(inst.op.sem, Sem::GLoad(_) | Sem::GLoadD16(..) | Sem::SLoad | Sem::DsLoad);
                    if own_load && !p.lgkm {
                        continue;
                    }
                    let r = super::isa::reg(p.start, p.n);
                    return Err(format!(
                        "uses {r}, which the load at {:#x} has not written yet: it needs an s_waitcnt {}",
                        p.pc,
                        if p.lgkm { "lgkmcnt" } else { "vmcnt" }
                    ));
                }
            }
        }
        Ok(())
    }

    fn waitcnt(w: &mut Wave, vm: u32, lgkm: u32) {
        let count = |w: &Wave, l: bool| w.pending.iter().filter(|p| p.lgkm == l).count() as u32;
        while count(w, false) > vm {
            if let Some(i) = w.pending.iter().position(|p| !p.lgkm) {
                w.pending.remove(i);
            }
        }
        while count(w, true) > lgkm {
            if let Some(i) = w.pending.iter().position(|p| p.lgkm) {
                w.pending.remove(i);
            }
        }
    }

    /// `why`, with the word decoding stopped at when `target` lies at or beyond it.
    fn past_the_code(&self, why: &str, target: u32) -> String {
        match self.undecoded {
            Some((pc, e)) if target >= *pc => format!("{why}: decoding stopped {e}"),
            _ => why.to_string(),
        }
    }

    /// Runs `w` until it ends, reaches a barrier, or faults. Errors carry the instruction.
    pub fn run(&mut self, w: &mut Wave, g: &mut Group) -> Result<(), (usize, String)> {
        loop {
            let idx = w.pc;
            let Some(inst) = self.prog.get(idx) else {
                return Err((idx.saturating_sub(1), self.past_the_code("runs past the end of the code", u32::MAX)));
            };
            if *self.budget == 0 {
                return Err((
                    idx,
                    "the launch ran more instructions than the emulator allows (an endless loop?)".into(),
                ));
            }
            *self.budget -= 1;
            if !w.pending.is_empty() {
                self.check_pending(w, idx, inst).map_err(|m| (idx, m))?;
            }
            w.pc += 1;
            let stop = self.step(w, g, inst).map_err(|m| (idx, m))?;
            if stop {
                return Ok(());
            }
        }
    }

    fn branch(&self, w: &mut Wave, inst: &Inst) -> Result<(), String> {
        let target = i64::from(inst.pc) + 4 + i64::from(inst.imm) * 4;
        let t = usize::try_from(target / 4).ok().and_then(|t| self.index.get(t)).copied().unwrap_or(NONE);
        if t == NONE {
            let why = format!("branches to {target:#x}, which is not an instruction");
            return Err(self.past_the_code(&why, u32::try_from(target).unwrap_or(0)));
        }
        w.pc = t as usize;
        Ok(())
    }

    /// Executes one instruction; true when the wave stops (end or barrier).
    fn step(&mut self, w: &mut Wave, g: &mut Group, i: &Inst) -> Result<bool, String> {
        match i.enc {
            Enc::Sop1 | Enc::Sop2 | Enc::Sopc | Enc::Sopk => {
                self.salu(w, i)?;
                Ok(false)
            }
            Enc::Sopp => self.sopp(w, i),
            Enc::Smem => {
                let base = self.sv(w, i.addr, T::B64, None);
                let soff = if i.saddr == 124 { 0 } else { self.sv(w, i.saddr, T::B32, None) };
                let addr = (base.wrapping_add(i.imm as i64 as u64).wrapping_add(soff)) & !3;
                let n = i.op.d.regs() as usize;
                let mut buf = vec![0u8; n * 4];
                self.mem.read(addr, &mut buf).map_err(|e| format!("scalar load: {e}"))?;
                for k in 0..n {
                    let v = u32::from_le_bytes([buf[4 * k], buf[4 * k + 1], buf[4 * k + 2], buf[4 * k + 3]]);
                    if (i.data as usize + k) < 106 {
                        w.s[i.data as usize + k] = v;
                    }
                }
                w.pending.push_back(Pend { lgkm: true, start: i.data, n: n as u16, pc: i.pc });
                Ok(false)
            }
            Enc::Global => {
                self.global(w, i)?;
                Ok(false)
            }
            Enc::Ds => {
                self.ds(w, g, i)?;
                Ok(false)
            }
            Enc::Vopd => {
                let y = i.y.as_deref().ok_or("a VOPD without its second half")?;
                let (dx, rx) = self.valu_values(w, i)?;
                let (dy, ry) = self.valu_values(w, y)?;
                for (d, r, t) in [(dx, rx, i.op.d), (dy, ry, y.op.d)] {
                    for (lane, v) in r.iter().enumerate() {
                        if w.exec() >> lane & 1 == 1 {
                            Self::wv(w, d, lane, t, *v)?;
                        }
                    }
                }
                Ok(false)
            }
            _ => {
                self.valu(w, i)?;
                Ok(false)
            }
        }
    }

    fn sopp(&mut self, w: &mut Wave, i: &Inst) -> Result<bool, String> {
        let vcc = w.s[106];
        let exec = w.exec();
        let take = match i.op.sem {
            Sem::SNop => return Ok(false),
            Sem::SEndpgm => {
                w.done = true;
                return Ok(true);
            }
            Sem::SBarrier => {
                if !w.pending.is_empty() {
                    // The hardware does not wait for loads at a barrier; tk's code always does.
                }
                w.at_barrier = true;
                return Ok(true);
            }
            Sem::SWaitcnt => {
                let (vm, _, lgkm) = super::isa::waitcnt_fields(i.imm as u16);
                Self::waitcnt(w, vm, lgkm);
                return Ok(false);
            }
            Sem::SBranch => true,
            Sem::SCbranchScc0 => !w.scc,
            Sem::SCbranchScc1 => w.scc,
            Sem::SCbranchVccz => vcc == 0,
            Sem::SCbranchVccnz => vcc != 0,
            Sem::SCbranchExecz => exec == 0,
            Sem::SCbranchExecnz => exec != 0,
            _ => return Err(format!("{} is not a program-control instruction", i.op.name)),
        };
        if take {
            self.branch(w, i)?;
        }
        Ok(false)
    }

    fn salu(&mut self, w: &mut Wave, i: &Inst) -> Result<(), String> {
        let t = i.op.d;
        let a = if i.op.n >= 1 { self.sv(w, i.src[0], i.op.s[0], i.lit) } else { 0 };
        let b = if i.op.n >= 2 { self.sv(w, i.src[1], i.op.s[1], i.lit) } else { 0 };
        let wide = t.is64();
        let mask = if wide { u64::MAX } else { 0xffff_ffff };
        let (a32, b32) = (a as u32, b as u32);
        let mut scc = w.scc;
        let d: Option<u64> = match i.op.sem {
            Sem::SAddU32 => {
                let (r, c) = a32.overflowing_add(b32);
                scc = c;
                Some(r.into())
            }
            Sem::SSubU32 => {
                let (r, c) = a32.overflowing_sub(b32);
                scc = c;
                Some(r.into())
            }
            Sem::SAddI32 => {
                let (r, o) = (a32 as i32).overflowing_add(b32 as i32);
                scc = o;
                Some(u64::from(r as u32))
            }
            Sem::SSubI32 => {
                let (r, o) = (a32 as i32).overflowing_sub(b32 as i32);
                scc = o;
                Some(u64::from(r as u32))
            }
            Sem::SAddcU32 => {
                let r = u64::from(a32) + u64::from(b32) + u64::from(w.scc);
                scc = r >> 32 != 0;
                Some(r & 0xffff_ffff)
            }
            Sem::SSubbU32 => {
                let r = i64::from(a32) - i64::from(b32) - i64::from(w.scc);
                scc = r < 0;
                Some((r as u64) & 0xffff_ffff)
            }
            Sem::SLshl32 | Sem::SLshl64 | Sem::SLshr32 | Sem::SLshr64 | Sem::SAshr32 | Sem::SAshr64 => {
                let sh = if wide { b32 & 63 } else { b32 & 31 };
                let r = match i.op.sem {
                    Sem::SLshl32 => u64::from(a32 << sh),
                    Sem::SLshl64 => a << sh,
                    Sem::SLshr32 => u64::from(a32 >> sh),
                    Sem::SLshr64 => a >> sh,
                    Sem::SAshr32 => u64::from(((a32 as i32) >> sh) as u32),
                    _ => ((a as i64) >> sh) as u64,
                };
                scc = r != 0;
                Some(r)
            }
            Sem::SMinI32 | Sem::SMaxI32 | Sem::SMinU32 | Sem::SMaxU32 => {
                let (x, y) = match i.op.sem {
                    Sem::SMinI32 | Sem::SMaxI32 => (i64::from(a32 as i32), i64::from(b32 as i32)),
                    _ => (i64::from(a32), i64::from(b32)),
                };
                let min = matches!(i.op.sem, Sem::SMinI32 | Sem::SMinU32);
                scc = if min { x < y } else { x > y };
                Some(if scc { a } else { b } & 0xffff_ffff)
            }
            Sem::SAnd | Sem::SOr | Sem::SXor | Sem::SAndNot1 | Sem::SOrNot1 => {
                let r = match i.op.sem {
                    Sem::SAnd => a & b,
                    Sem::SOr => a | b,
                    Sem::SXor => a ^ b,
                    Sem::SAndNot1 => a & !b,
                    _ => a | !b,
                } & mask;
                scc = r != 0;
                Some(r)
            }
            Sem::SBfeU32 | Sem::SBfeI32 => {
                let off = b32 & 31;
                let width = (b32 >> 16) & 0x7f;
                let r = if width == 0 {
                    0
                } else if i.op.sem == Sem::SBfeU32 {
                    let v = u64::from(a32) >> off;
                    if width >= 32 { v & 0xffff_ffff } else { v & ((1 << width) - 1) }
                } else {
                    let w = width.min(32);
                    let v = ((a32 as i32 as i64) << (64 - off - w).min(63)) >> (64 - w);
                    (v as u64) & 0xffff_ffff
                };
                scc = r != 0;
                Some(r)
            }
            Sem::SMulI32 => Some(u64::from(a32.wrapping_mul(b32))),
            Sem::SMulHiU32 => Some((u64::from(a32) * u64::from(b32)) >> 32),
            Sem::SMulHiI32 => Some((((i64::from(a32 as i32) * i64::from(b32 as i32)) >> 32) as u64) & 0xffff_ffff),
            Sem::SCselect => Some(if w.scc { a } else { b }),
            Sem::SPack(ah, bh) => {
                let half = |x: u32, hi: bool| if hi { x >> 16 } else { x & 0xffff };
                Some(u64::from(half(a32, ah) | half(b32, bh) << 16))
            }
            Sem::SLshlAdd(n) => {
                let r = (u64::from(a32) << n) + u64::from(b32);
                scc = r > 0xffff_ffff;
                Some(r & 0xffff_ffff)
            }
            Sem::SNand | Sem::SNor | Sem::SXnor => {
                let r = match i.op.sem {
                    Sem::SNand => !(a32 & b32),
                    Sem::SNor => !(a32 | b32),
                    _ => !(a32 ^ b32),
                };
                scc = r != 0;
                Some(u64::from(r))
            }
            Sem::SAbsdiff => {
                let r = (i64::from(a32 as i32) - i64::from(b32 as i32)).unsigned_abs() as u32;
                scc = r != 0;
                Some(u64::from(r))
            }
            Sem::SBfm => Some(u64::from(((1u64 << (a32 & 31)) - 1) as u32) << (b32 & 31)),
            Sem::SMov => Some(a),
            Sem::SNot => {
                let r = !a & mask;
                scc = r != 0;
                Some(r)
            }
            Sem::SBrev if wide => Some(a.reverse_bits()),
            Sem::SBrev => Some(u64::from(a32.reverse_bits())),
            Sem::SSext8 => Some(u64::from(a32 as i8 as i32 as u32)),
            Sem::SSext16 => Some(u64::from(a32 as i16 as i32 as u32)),
            Sem::SAbs => {
                let r = (a32 as i32).wrapping_abs() as u32;
                scc = r != 0;
                Some(u64::from(r))
            }
            Sem::SBcnt1 => {
                let r = if i.op.s[0].is64() { a.count_ones() } else { a32.count_ones() };
                scc = r != 0;
                Some(u64::from(r))
            }
            // The 64-bit forms (`s_ctz_i32_b64`, `s_clz_i32_u64`) count in the whole pair.
            Sem::SCtz if i.op.s[0].is64() => Some(u64::from(if a == 0 { u32::MAX } else { a.trailing_zeros() })),
            Sem::SClz if i.op.s[0].is64() => Some(u64::from(if a == 0 { u32::MAX } else { a.leading_zeros() })),
            Sem::SCtz => Some(u64::from(if a32 == 0 { u32::MAX } else { a32.trailing_zeros() })),
            Sem::SClz => Some(u64::from(if a32 == 0 { u32::MAX } else { a32.leading_zeros() })),
            Sem::SCls => Some(u64::from(cls(a32))),
            Sem::SBcnt0 => {
                let r = (!a32).count_ones();
                scc = r != 0;
                Some(u64::from(r))
            }
            Sem::SCmov => w.scc.then_some(a),
            Sem::SBitset1 => {
                let cur = self.sv(w, i.dst, T::B32, None) as u32;
                Some(u64::from(cur | (1 << (a32 & 31))))
            }
            Sem::SBitset0 => {
                let cur = self.sv(w, i.dst, T::B32, None) as u32;
                Some(u64::from(cur & !(1 << (a32 & 31))))
            }
            Sem::SAndSaveexec | Sem::SOrSaveexec | Sem::SAndNot1Saveexec => {
                let old = w.s[126];
                let new = match i.op.sem {
                    Sem::SAndSaveexec => a32 & old,
                    Sem::SOrSaveexec => a32 | old,
                    _ => a32 & !old,
                };
                w.s[126] = new;
                scc = new != 0;
                Some(u64::from(old))
            }
            Sem::SMovk => Some(u64::from(i.imm as u32)),
            Sem::SMulk => {
                let cur = w.s[i.dst as usize & 127] as i32;
                Some(u64::from(cur.wrapping_mul(i.imm) as u32))
            }
            Sem::SCmovk => w.scc.then_some(u64::from(i.imm as u32)),
            Sem::SCmpk(c, signed) => {
                let cur = w.s[i.dst as usize & 127];
                let (x, y) = if signed {
                    (i128::from(cur as i32), i128::from(i.imm))
                } else {
                    (i128::from(cur), i128::from(i.imm as u16))
                };
                scc = icmp(c, x, y);
                None
            }
            Sem::SAddk => {
                let cur = w.s[i.dst as usize & 127] as i32;
                let (r, o) = cur.overflowing_add(i.imm);
                scc = o;
                Some(u64::from(r as u32))
            }
            Sem::SCmp(c, signed) => {
                let (x, y) = if wide {
                    (i128::from(a), i128::from(b))
                } else if signed {
                    (i128::from(a32 as i32), i128::from(b32 as i32))
                } else {
                    (i128::from(a32), i128::from(b32))
                };
                scc = icmp(c, x, y);
                None
            }
            _ => return Err(format!("{} is not a scalar ALU instruction", i.op.name)),
        };
        if let Some(d) = d {
            Self::ws(w, i.dst, t, d);
        }
        w.scc = scc;
        Ok(())
    }

    fn mask_bit(&self, w: &Wave, code: u16, lane: usize) -> bool {
        let m = self.sv(w, code, T::B32, None) as u32;
        m >> lane & 1 == 1
    }

    /// Source `k` of `i` for `lane`, with the float modifiers applied.
    #[inline]
    fn src(&self, w: &Wave, i: &Inst, k: usize, lane: usize) -> u64 {
        let t = i.op.s[k];
        let mut v = self.rd(w, i.src[k], t, i.lit, lane);
        if i.enc == Enc::Vop3 && (t.is_float() || i.op.sem == Sem::VCndmask) {
            let sb = if i.op.sem == Sem::VCndmask { 1 << 31 } else { sign_bit(t) };
            if i.abs >> k & 1 == 1 {
                v &= !sb;
            }
            if i.neg >> k & 1 == 1 {
                v ^= sb;
            }
        }
        v
    }

    fn valu(&mut self, w: &mut Wave, i: &Inst) -> Result<(), String> {
        let exec = w.exec();
        match i.op.sem {
            Sem::VCmp(..) | Sem::VCmpx(..) | Sem::VCmpClass | Sem::VCmpxClass => {
                let mut m = 0u32;
                for lane in 0..LANES {
                    if exec >> lane & 1 == 0 {
                        continue;
                    }
                    let (a, b) = (self.src(w, i, 0, lane), self.src(w, i, 1, lane));
                    let t = i.op.s[0];
                    let r = match i.op.sem {
                        Sem::VCmp(c, s) | Sem::VCmpx(c, s) => {
                            if t.is_float() {
                                fcmp(c, fval(t, a), fval(t, b))
                            } else {
                                let (x, y) = match (t, s) {
                                    (T::B16, true) => (i128::from(a as i16), i128::from(b as i16)),
                                    (T::B16, false) => (i128::from(a as u16), i128::from(b as u16)),
                                    (_, true) if t.is64() => (i128::from(a as i64), i128::from(b as i64)),
                                    (_, true) => (i128::from(a as u32 as i32), i128::from(b as u32 as i32)),
                                    _ => (i128::from(a), i128::from(b)),
                                };
                                icmp(c, x, y)
                            }
                        }
                        _ => class_bits(t, a) & (b as u32) != 0,
                    };
                    if r {
                        m |= 1 << lane;
                    }
                }
                if matches!(i.op.sem, Sem::VCmpx(..) | Sem::VCmpxClass) {
                    w.s[126] = m;
                } else {
                    Self::ws(w, i.sdst, T::B32, u64::from(m));
                }
                Ok(())
            }
            Sem::VReadlane => {
                let lane = (self.sv(w, i.src[1], T::B32, i.lit) & 31) as usize;
                let v = self.rd(w, i.src[0], T::B32, i.lit, lane);
                Self::ws(w, i.dst, T::B32, v);
                Ok(())
            }
            Sem::VReadfirstlane => {
                let lane = if exec == 0 { 0 } else { exec.trailing_zeros() as usize };
                let v = self.rd(w, i.src[0], T::B32, i.lit, lane);
                Self::ws(w, i.dst, T::B32, v);
                Ok(())
            }
            Sem::VWritelane => {
                let lane = (self.sv(w, i.src[1], T::B32, i.lit) & 31) as usize;
                let v = self.sv(w, i.src[0], T::B32, i.lit);
                Self::wv(w, i.dst, lane, T::B32, v)
            }
            _ => {
                let carry_out = i.op.sem.writes_sdst();
                let mut m = 0u32;
                for lane in 0..LANES {
                    if exec >> lane & 1 == 0 {
                        continue;
                    }
                    let (r, c) = self.lane(w, i, lane)?;
                    if c {
                        m |= 1 << lane;
                    }
                    Self::wv(w, i.dst, lane, i.op.d, r)?;
                }
                if carry_out {
                    Self::ws(w, i.sdst, T::B32, u64::from(m));
                }
                Ok(())
            }
        }
    }

    /// The results of a VOPD half for every active lane (written after both halves read).
    fn valu_values(&self, w: &Wave, i: &Inst) -> Result<(u16, [u64; LANES]), String> {
        let mut out = [0u64; LANES];
        for (lane, o) in out.iter_mut().enumerate() {
            if w.exec() >> lane & 1 == 1 {
                *o = self.lane(w, i, lane)?.0;
            }
        }
        Ok((i.dst, out))
    }

    /// The 32-bit sources of a packed (VOP3P) operation in one lane; with `f16`, inline float
    /// constants are f16 values. Whether the high half of an inline constant is the constant
    /// again or the top of its 32-bit value is not something tk has verified; the two agree for
    /// 0 and -1, and LLVM selects the low half (op_sel_hi 0) for the others, so anything else is
    /// refused rather than guessed.
    fn packed_sources(&self, w: &Wave, i: &Inst, lane: usize, f16: bool) -> Result<Vec<u32>, String> {
        let mut raw = Vec::with_capacity(i.op.n as usize);
        for k in 0..i.op.n as usize {
            let float_inline = matches!(i.src[k], 240..=248);
            let t = if f16 && float_inline { T::F16 } else { T::B32 };
            let r = self.rd(w, i.src[k], t, i.lit, lane) as u32;
            let inline = float_inline || matches!(i.src[k], 128..=208);
            let ambiguous = r >> 16 != r & 0xffff;
            if inline && ambiguous && (i.opsel >> k & 1 == 1 || i.opsel_hi >> k & 1 == 1) {
                return Err(format!(
                    "{} reads the high half of an inline constant, which the emulator does not implement",
                    i.op.name
                ));
            }
            raw.push(r);
        }
        Ok(raw)
    }

    /// One lane of a vector ALU instruction: the result and the carry/VCC bit.
    fn lane(&self, w: &Wave, i: &Inst, lane: usize) -> Result<(u64, bool), String> {
        use Sem::*;
        let n = i.op.n as usize;
        let a = if n >= 1 { self.src(w, i, 0, lane) } else { 0 };
        let b = if n >= 2 { self.src(w, i, 1, lane) } else { 0 };
        let c = if n >= 3 { self.src(w, i, 2, lane) } else { 0 };
        let (a32, b32, c32) = (a as u32, b as u32, c as u32);
        let t = i.op.d;
        let ft = i.op.s[0];
        let k = u64::from(i.lit.unwrap_or(0));
        let fl = |x: u64| fval(ft, x);
        let out = |x: f64| fbits(t, x);
        let cin = |code: u16| self.mask_bit(w, code, lane);
        let r: u64 = match i.op.sem {
            VMov => a,
            VCvtI32F64 | VCvtI32F32 => u64::from((fl(a) as i32) as u32),
            VCvtU32F32 | VCvtU32F64 => u64::from(fl(a) as u32),
            VCvtF64I32 => f64::from(a32 as i32).to_bits(),
            VCvtF64U32 => f64::from(a32).to_bits(),
            VCvtF32I32 => f32b(a32 as i32 as f32),
            VCvtF32U32 => f32b(a32 as f32),
            VCvtF16F32 => u64::from(f16::from_f32(bf32(a)).to_bits()),
            VCvtF32F16 => f32b(f16::from_bits(a as u16).to_f32()),
            VCvtF32F64 => f32b(bf64(a) as f32),
            VCvtF64F32 => f64::from(bf32(a)).to_bits(),
            VCvtF32Ubyte0 => f32b(f32::from(a32 as u8)),
            VCvtF32Ubyte(k) => f32b(f32::from((a32 >> (8 * k)) as u8)),
            VTrunc => out(fl(a).trunc()),
            VCeil => out(fl(a).ceil()),
            VFloor => out(fl(a).floor()),
            VRndne => out(fl(a).round_ties_even()),
            VRcp | VRcpIflag => {
                if t == T::F64 {
                    coarse64(1.0 / bf64(a)).to_bits()
                } else {
                    f32b(one_ulp(1.0 / fl(a), a))
                }
            }
            VRsq => {
                if t == T::F64 {
                    coarse64(1.0 / bf64(a).sqrt()).to_bits()
                } else {
                    f32b(one_ulp(1.0 / fl(a).sqrt(), a))
                }
            }
            VSqrt => {
                if t == T::F64 {
                    coarse64(bf64(a).sqrt()).to_bits()
                } else {
                    f32b(one_ulp(fl(a).sqrt(), a))
                }
            }
            VExp => f32b(one_ulp(fl(a).exp2(), a)),
            VLog => f32b(one_ulp(fl(a).log2(), a)),
            VBfrev => u64::from(a32.reverse_bits()),
            VNot => u64::from(!a32),
            VCndmask => {
                if cin(i.src[2]) {
                    b
                } else {
                    a
                }
            }
            VAddF => {
                if t == T::F32 {
                    f32b(bf32(a) + bf32(b))
                } else {
                    out(fl(a) + fl(b))
                }
            }
            VSubF => {
                if t == T::F32 {
                    f32b(bf32(a) - bf32(b))
                } else {
                    out(fl(a) - fl(b))
                }
            }
            VSubrevF => out(fl(b) - fl(a)),
            VMulF => {
                if t == T::F32 {
                    f32b(bf32(a) * bf32(b))
                } else {
                    out(fl(a) * fl(b))
                }
            }
            VMinF => out(minnum(fl(a), fl(b))),
            VMaxF => out(maxnum(fl(a), fl(b))),
            VMulU32U24 => u64::from((a32 & 0xff_ffff).wrapping_mul(b32 & 0xff_ffff)),
            VMadI32I24 => {
                let s24 = |x: u32| ((x << 8) as i32) >> 8;
                u64::from((s24(a32).wrapping_mul(s24(b32))).wrapping_add(c32 as i32) as u32)
            }
            VMinI32 => u64::from((a32 as i32).min(b32 as i32) as u32),
            VMaxI32 => u64::from((a32 as i32).max(b32 as i32) as u32),
            VMinU32 => u64::from(a32.min(b32)),
            VMaxU32 => u64::from(a32.max(b32)),
            VLshlrev => {
                if t.is64() {
                    b << (a32 & 63)
                } else {
                    u64::from(b32 << (a32 & 31))
                }
            }
            VLshrrev => {
                if t.is64() {
                    b >> (a32 & 63)
                } else {
                    u64::from(b32 >> (a32 & 31))
                }
            }
            VAshrrev => {
                if t.is64() {
                    ((b as i64) >> (a32 & 63)) as u64
                } else {
                    u64::from(((b32 as i32) >> (a32 & 31)) as u32)
                }
            }
            VAnd => u64::from(a32 & b32),
            VOr => u64::from(a32 | b32),
            VXor => u64::from(a32 ^ b32),
            VXnor => u64::from(!(a32 ^ b32)),
            VAddCoCi => {
                let r = u64::from(a32) + u64::from(b32) + u64::from(cin(i.src[2]));
                return Ok((r & 0xffff_ffff, r >> 32 != 0));
            }
            VSubCoCi | VSubrevCoCi => {
                let (x, y) = if i.op.sem == VSubCoCi { (a32, b32) } else { (b32, a32) };
                let r = i64::from(x) - i64::from(y) - i64::from(cin(i.src[2]));
                return Ok(((r as u64) & 0xffff_ffff, r < 0));
            }
            VAddCo => {
                let (r, c) = a32.overflowing_add(b32);
                return Ok((r.into(), c));
            }
            VSubCo => {
                let (r, c) = a32.overflowing_sub(b32);
                return Ok((r.into(), c));
            }
            VSubrevCo => {
                let (r, c) = b32.overflowing_sub(a32);
                return Ok((r.into(), c));
            }
            VAddNc => u64::from(a32.wrapping_add(b32)),
            VSubNc => u64::from(a32.wrapping_sub(b32)),
            VSubrevNc => u64::from(b32.wrapping_sub(a32)),
            VFmac => {
                let d = self.rd(w, i.dst, T::F32, None, lane);
                f32b(bf32(a).mul_add(bf32(b), bf32(d)))
            }
            VFmamk => f32b(bf32(a).mul_add(bf32(k), bf32(b))),
            VFmaak => f32b(bf32(a).mul_add(bf32(b), bf32(k))),
            VFma => match t {
                T::F64 => bf64(a).mul_add(bf64(b), bf64(c)).to_bits(),
                T::F32 => f32b(bf32(a).mul_add(bf32(b), bf32(c))),
                _ => out(fl(a).mul_add(fl(b), fl(c))),
            },
            VBfeU32 | VBfeI32 => {
                let (off, width) = (b32 & 31, c32 & 31);
                if width == 0 {
                    0
                } else if i.op.sem == VBfeU32 {
                    u64::from((a32 >> off) & ((1u32 << width) - 1).max(if width == 32 { u32::MAX } else { 0 }))
                } else {
                    let v = ((a32 as i32 as i64) << (64 - off - width)) >> (64 - width);
                    (v as u64) & 0xffff_ffff
                }
            }
            VBfi => u64::from((a32 & b32) | (!a32 & c32)),
            VAlignbit => u64::from((((u64::from(a32) << 32) | u64::from(b32)) >> (c32 & 31)) as u32),
            VDivFixup => div_fixup(t, a, b, c),
            VDivFmas => {
                let r = if t == T::F64 {
                    bf64(a).mul_add(bf64(b), bf64(c))
                } else {
                    f64::from(bf32(a).mul_add(bf32(b), bf32(c)))
                };
                let vcc = w.s[106] >> lane & 1 == 1;
                if vcc {
                    let big = exponent(t, c) > if t == T::F64 { 1023 } else { 127 };
                    let n = if t == T::F64 { 128 } else { 64 };
                    // VCC says div_scale scaled one operand by 2^n: a large quotient means the
                    // denominator was scaled (undo with 2^n), a small one the numerator.
                    out(ldexp(r, if big { n } else { -n }))
                } else {
                    out(r)
                }
            }
            VDivScale => {
                let (r, v) = div_scale(t, a, b, c);
                return Ok((r, v));
            }
            VLshlAdd => u64::from((a32 << (b32 & 31)).wrapping_add(c32)),
            VAdd3 => u64::from(a32.wrapping_add(b32).wrapping_add(c32)),
            VMin3(sg) | VMax3(sg) | VMed3(sg) | VMinMax(sg) | VMaxMin(sg) => {
                let w16 = t == T::B16;
                let v = |x: u32| match (sg, w16) {
                    (true, true) => i64::from(x as u16 as i16),
                    (true, false) => i64::from(x as i32),
                    (false, true) => i64::from(x as u16),
                    (false, false) => i64::from(x),
                };
                let (x, y, z) = (v(a32), v(b32), v(c32));
                let r = match i.op.sem {
                    VMin3(_) => x.min(y).min(z),
                    VMax3(_) => x.max(y).max(z),
                    VMed3(_) => x.max(y).min(x.min(y).max(z)),
                    VMinMax(_) => x.min(y).max(z),
                    _ => x.max(y).min(z),
                };
                if w16 { u64::from(r as u16) } else { u64::from(r as u32) }
            }
            VXad => u64::from((a32 ^ b32).wrapping_add(c32)),
            VAddLshl => u64::from(a32.wrapping_add(b32) << (c32 & 31)),
            VAlignbyte => ((u64::from(a32) << 32 | u64::from(b32)) >> (8 * (c32 & 3))) & 0xffff_ffff,
            VPerm => {
                let data = u64::from(a32) << 32 | u64::from(b32);
                let byte = |sel: u32| -> u32 {
                    let fill = |bit: u32| if data >> bit & 1 == 1 { 0xff } else { 0 };
                    match sel {
                        0..=7 => (data >> (8 * sel)) as u32 & 0xff,
                        8 => fill(15),
                        9 => fill(31),
                        10 => fill(47),
                        11 => fill(63),
                        12 => 0,
                        _ => 0xff,
                    }
                };
                u64::from((0..4).fold(0u32, |r, k| r | byte((c32 >> (8 * k)) & 0xff) << (8 * k)))
            }
            VMad16(sg) => {
                let v = |x: u64| if sg { i64::from(x as u16 as i16) } else { i64::from(x as u16) };
                let acc = if t == T::B16 {
                    v(c)
                } else if sg {
                    i64::from(c32 as i32)
                } else {
                    i64::from(c32)
                };
                let r = v(a).wrapping_mul(v(b)).wrapping_add(acc);
                if t == T::B16 { u64::from(r as u16) } else { u64::from(r as u32) }
            }
            VLshlOr => u64::from((a32 << (b32 & 31)) | c32),
            VAndOr => u64::from((a32 & b32) | c32),
            VXor3 => u64::from(a32 ^ b32 ^ c32),
            VOr3 => u64::from(a32 | b32 | c32),
            VMadU64U32 => {
                let p = u128::from(a32) * u128::from(b32) + u128::from(c);
                return Ok((p as u64, p >> 64 != 0));
            }
            VAddNcU16 => u64::from((a as u16).wrapping_add(b as u16)),
            VSubNcU16 => u64::from((a as u16).wrapping_sub(b as u16)),
            VMulLoU16 => u64::from((a as u16).wrapping_mul(b as u16)),
            VMaxU16 => u64::from((a as u16).max(b as u16)),
            VMinU16 => u64::from((a as u16).min(b as u16)),
            VMaxI16 => u64::from((a as i16).max(b as i16) as u16),
            VMinI16 => u64::from((a as i16).min(b as i16) as u16),
            VLshlrevB16 => u64::from((b as u16) << (a & 15)),
            VLshrrevB16 => u64::from((b as u16) >> (a & 15)),
            VAshrrevI16 => u64::from(((b as i16) >> (a & 15)) as u16),
            VMadU32U24 => u64::from((a32 & 0xff_ffff).wrapping_mul(b32 & 0xff_ffff).wrapping_add(c32)),
            VMulI32I24 => {
                let s24 = |x: u32| ((x << 8) as i32) >> 8;
                u64::from(s24(a32).wrapping_mul(s24(b32)) as u32)
            }
            VMulHiU32U24 => (u64::from(a32 & 0xff_ffff) * u64::from(b32 & 0xff_ffff)) >> 32,
            VMulHiI32I24 => {
                let s24 = |x: u32| i64::from(((x << 8) as i32) >> 8);
                u64::from(((s24(a32) * s24(b32)) >> 32) as u32)
            }
            VMadI64I32 => {
                let p = i128::from(a32 as i32) * i128::from(b32 as i32) + i128::from(c as i64);
                return Ok((p as u64, p > i128::from(i64::MAX) || p < i128::from(i64::MIN)));
            }
            VCvtF16U16 => hb(f64::from(a as u16)),
            VCvtF16I16 => hb(f64::from(a as i16)),
            VCvtU16F16 => u64::from(h(a) as u16),
            VCvtI16F16 => u64::from(h(a) as i16 as u16),
            VCvtI32I16 => u64::from(a as i16 as i32 as u32),
            VCvtU32U16 => a & 0xffff,
            VClz => u64::from(if a32 == 0 { u32::MAX } else { a32.leading_zeros() }),
            VCls => u64::from(cls(a32)),
            VCtz => u64::from(if a32 == 0 { u32::MAX } else { a32.trailing_zeros() }),
            VPackF16 => {
                let lo = if i.opsel & 1 == 1 { a >> 16 } else { a } & 0xffff;
                let hi = if i.opsel & 2 == 2 { b >> 16 } else { b } & 0xffff;
                lo | hi << 16
            }
            VBcnt => u64::from(a32.count_ones().wrapping_add(b32)),
            // x * 2^n is exact in f64 for every f32 x and every n that keeps it in range, so
            // the one rounding is the cast.
            VLdexp if t == T::F32 => f32b(ldexp(f64::from(bf32(a)), b32 as i32) as f32),
            VLdexp => ldexp(bf64(a), b32 as i32).to_bits(),
            VMulLo => u64::from(a32.wrapping_mul(b32)),
            VMulHiU32 => (u64::from(a32) * u64::from(b32)) >> 32,
            VMulHiI32 => (((i64::from(a32 as i32) * i64::from(b32 as i32)) >> 32) as u64) & 0xffff_ffff,
            VPk(pk) => {
                if i.neg != 0 || i.abs != 0 || i.clamp {
                    return Err(format!(
                        "{} with neg or clamp modifiers is not implemented by the emulator",
                        i.op.name
                    ));
                }
                let raw = self.packed_sources(w, i, lane, false)?;
                let half = |k: usize, sel: u8| -> u16 { (raw[k] >> if sel >> k & 1 == 1 { 16 } else { 0 }) as u16 };
                let one = |sel: u8| -> u16 {
                    let (x, y) = (half(0, sel), half(1, sel));
                    let z = if n > 2 { half(2, sel) } else { 0 };
                    match pk {
                        Pk::MulLo => x.wrapping_mul(y),
                        Pk::Add => x.wrapping_add(y),
                        Pk::Sub => x.wrapping_sub(y),
                        Pk::Lshlrev => y << (x & 15),
                        Pk::Lshrrev => y >> (x & 15),
                        Pk::Ashrrev => ((y as i16) >> (x & 15)) as u16,
                        Pk::MaxI => (x as i16).max(y as i16) as u16,
                        Pk::MinI => (x as i16).min(y as i16) as u16,
                        Pk::MaxU => x.max(y),
                        Pk::MinU => x.min(y),
                        Pk::MadU | Pk::MadI => x.wrapping_mul(y).wrapping_add(z),
                    }
                };
                u64::from(u32::from(one(i.opsel)) | u32::from(one(i.opsel_hi)) << 16)
            }
            VPkF(pk) => {
                if i.clamp {
                    return Err(format!("{} with clamp is not implemented by the emulator", i.op.name));
                }
                let raw = self.packed_sources(w, i, lane, true)?;
                // One result half: each source's selected half, negated by neg_lo (low result)
                // or neg_hi (high result), computed exactly and rounded once to f16.
                let one = |sel: u8, neg: u8| -> u64 {
                    let v = |k: usize| {
                        let x = h(u64::from(raw[k] >> if sel >> k & 1 == 1 { 16 } else { 0 }) & 0xffff);
                        if neg >> k & 1 == 1 { -x } else { x }
                    };
                    match pk {
                        PkF::Add => hb(v(0) + v(1)),
                        PkF::Mul => hb(v(0) * v(1)),
                        PkF::Fma => hb(v(0).mul_add(v(1), v(2))),
                        PkF::Min => hb(minnum(v(0), v(1))),
                        PkF::Max => hb(maxnum(v(0), v(1))),
                    }
                };
                one(i.opsel, i.neg) | one(i.opsel_hi, i.abs) << 16
            }
            VFmaMix | VFmaMixlo | VFmaMixhi => {
                let raw = [self.rd(w, i.src[0], T::B32, i.lit, lane), self.rd(w, i.src[1], T::B32, i.lit, lane), {
                    self.rd(w, i.src[2], T::B32, i.lit, lane)
                }];
                let x: Vec<f64> = (0..3)
                    .map(|k| {
                        mix_src(raw[k], i.opsel_hi >> k & 1 == 1, i.opsel >> k & 1 == 1, i.neg >> k & 1 == 1, {
                            i.abs >> k & 1 == 1
                        })
                    })
                    .collect();
                match i.op.sem {
                    VFmaMix => f32b((x[0] as f32).mul_add(x[1] as f32, x[2] as f32)),
                    _ => {
                        let r = hb(x[0].mul_add(x[1], x[2]));
                        let cur = self.rd(w, i.dst, T::B32, None, lane);
                        if i.op.sem == VFmaMixlo { (cur & 0xffff_0000) | r } else { (cur & 0xffff) | r << 16 }
                    }
                }
            }
            _ => return Err(format!("{} is not implemented by the emulator", i.op.name)),
        };
        let mut r = r;
        if i.clamp {
            r = match t {
                T::F32 | T::F64 | T::F16 => out(fl(r).clamp(0.0, 1.0)),
                _ => return Err(format!("{} with clamp is not implemented by the emulator", i.op.name)),
            };
        }
        if i.omod != 0 {
            if !t.is_float() {
                return Err(format!("{} with an output modifier is not implemented by the emulator", i.op.name));
            }
            let f = [1.0, 2.0, 4.0, 0.5][i.omod as usize];
            r = out(fval(t, r) * f);
        }
        Ok((r, false))
    }

    fn global(&mut self, w: &mut Wave, i: &Inst) -> Result<(), String> {
        let exec = w.exec();
        // The access width is in the name (the table's types do not tell bytes from halves).
        let n = i.op.name;
        let (bytes, regs) = if ["_u8", "_i8", "_b8"].iter().any(|x| n.ends_with(x)) {
            (1, 1)
        } else if ["_u16", "_i16", "_b16"].iter().any(|x| n.ends_with(x)) {
            (2, 1)
        } else {
            (4 * i.op.d.regs() as usize, i.op.d.regs())
        };
        let sbase = if i.saddr == 124 { None } else { Some(self.sv(w, i.saddr, T::B64, None)) };
        for lane in 0..LANES {
            if exec >> lane & 1 == 0 {
                continue;
            }
            let addr = match sbase {
                None => self.rd(w, i.addr, T::B64, None, lane),
                Some(s) => s.wrapping_add(self.rd(w, i.addr, T::B32, None, lane)),
            }
            .wrapping_add(i.imm as i64 as u64);
            let what = |e: String| format!("lane {lane}: {e}");
            match i.op.sem {
                Sem::GLoad(ext) => {
                    let mut buf = [0u8; 16];
                    self.mem.read(addr, &mut buf[..bytes]).map_err(what)?;
                    if bytes < 4 {
                        let v = if bytes == 1 {
                            if ext == Ext::Sign { buf[0] as i8 as i32 as u32 } else { u32::from(buf[0]) }
                        } else {
                            let x = u16::from_le_bytes([buf[0], buf[1]]);
                            if ext == Ext::Sign { x as i16 as i32 as u32 } else { u32::from(x) }
                        };
                        Self::wv(w, i.dst, lane, T::B32, u64::from(v))?;
                    } else {
                        for k in 0..regs as usize {
                            let v = u32::from_le_bytes([buf[4 * k], buf[4 * k + 1], buf[4 * k + 2], buf[4 * k + 3]]);
                            Self::wv(w, i.dst + k as u16, lane, T::B32, u64::from(v))?;
                        }
                    }
                }
                Sem::GLoadD16(ext, hi) => {
                    let mut buf = [0u8; 2];
                    self.mem.read(addr, &mut buf[..bytes]).map_err(what)?;
                    let v = match (bytes, ext) {
                        (1, Ext::Sign) => buf[0] as i8 as i16 as u16,
                        (1, Ext::Zero) => u16::from(buf[0]),
                        _ => u16::from_le_bytes(buf),
                    };
                    let cur = self.rd(w, i.dst, T::B32, None, lane) as u32;
                    let new = if hi { (cur & 0xffff) | u32::from(v) << 16 } else { (cur & 0xffff_0000) | u32::from(v) };
                    Self::wv(w, i.dst, lane, T::B32, u64::from(new))?;
                }
                Sem::GStore | Sem::GStoreHi => {
                    let mut buf = [0u8; 16];
                    for k in 0..regs as usize {
                        let v = self.rd(w, i.data + k as u16, T::B32, None, lane) as u32;
                        buf[4 * k..4 * k + 4].copy_from_slice(&v.to_le_bytes());
                    }
                    if i.op.sem == Sem::GStoreHi {
                        buf.copy_within(2..4, 0);
                    }
                    self.mem.write(addr, &buf[..bytes]).map_err(what)?;
                }
                Sem::GAtomicCmpswap | Sem::GAtomicAdd => {
                    // Atomics need natural alignment (a misaligned one faults on the GPU).
                    if addr % bytes as u64 != 0 {
                        return Err(what(format!("{} at {addr:#x} is not aligned to {bytes} bytes", i.op.name)));
                    }
                    let t = if bytes == 8 { T::B64 } else { T::B32 };
                    let mask = if bytes == 8 { u64::MAX } else { u64::from(u32::MAX) };
                    let mut buf = [0u8; 8];
                    self.mem.read(addr, &mut buf[..bytes]).map_err(what)?;
                    let old = u64::from_le_bytes(buf);
                    let data = self.rd(w, i.data, t, None, lane);
                    let new = if i.op.sem == Sem::GAtomicAdd {
                        Some(old.wrapping_add(data) & mask)
                    } else {
                        let cmp = self.rd(w, i.data + regs, t, None, lane);
                        (old == cmp).then_some(data)
                    };
                    if let Some(new) = new {
                        self.mem.write(addr, &new.to_le_bytes()[..bytes]).map_err(what)?;
                    }
                    if i.glc {
                        Self::wv(w, i.dst, lane, t, old)?;
                    }
                }
                _ => return Err(format!("{} is not a global memory instruction", i.op.name)),
            }
        }
        let atomic = matches!(i.op.sem, Sem::GAtomicCmpswap | Sem::GAtomicAdd);
        let loads = matches!(i.op.sem, Sem::GLoad(_) | Sem::GLoadD16(..)) || (atomic && i.glc);
        if loads {
            let n = regs;
            w.pending.push_back(Pend { lgkm: false, start: i.dst, n, pc: i.pc });
        }
        Ok(())
    }

    fn ds(&mut self, w: &mut Wave, g: &mut Group, i: &Inst) -> Result<(), String> {
        let exec = w.exec();
        let n = i.op.d.regs() as usize;
        for lane in 0..LANES {
            if exec >> lane & 1 == 0 {
                continue;
            }
            let addr = (self.rd(w, i.addr, T::B32, None, lane) as usize).wrapping_add(i.imm as usize);
            if addr + 4 * n > g.lds.len() {
                return Err(format!(
                    "lane {lane}: {} bytes of LDS at {addr:#x}, but the workgroup has {} bytes",
                    4 * n,
                    g.lds.len()
                ));
            }
            for k in 0..n {
                let a = addr + 4 * k;
                if i.op.sem == Sem::DsLoad {
                    for b in a..a + 4 {
                        let (wave, phase) = g.lds_writer[b];
                        if phase == g.phase && wave != w.id && wave != NONE {
                            return Err(format!(
                                "lane {lane} reads LDS byte {b:#x}, which wave {wave} wrote since the last barrier: a \
                                 missing barrier"
                            ));
                        }
                    }
                    for b in a..a + 4 {
                        g.lds_reader[b] = (w.id, g.phase);
                    }
                    let v = u32::from_le_bytes([g.lds[a], g.lds[a + 1], g.lds[a + 2], g.lds[a + 3]]);
                    Self::wv(w, i.dst + k as u16, lane, T::B32, u64::from(v))?;
                } else {
                    for b in a..a + 4 {
                        let (wave, phase) = g.lds_reader[b];
                        if phase == g.phase && wave != w.id && wave != NONE {
                            return Err(format!(
                                "lane {lane} writes LDS byte {b:#x}, which wave {wave} read since the last barrier: a \
                                 missing barrier"
                            ));
                        }
                    }
                    let v = self.rd(w, i.data + k as u16, T::B32, None, lane) as u32;
                    g.lds[a..a + 4].copy_from_slice(&v.to_le_bytes());
                    for b in a..a + 4 {
                        g.lds_writer[b] = (w.id, g.phase);
                    }
                }
            }
        }
        if i.op.sem == Sem::DsLoad {
            w.pending.push_back(Pend { lgkm: true, start: i.dst, n: n as u16, pc: i.pc });
        }
        Ok(())
    }
}

/// The registers an instruction reads or writes, for the `s_waitcnt` check.
pub fn uses(i: &Inst) -> Vec<(u16, u16)> {
    let mut u = Vec::new();
    let mut add = |r: u16, n: u16| {
        if !(106..256).contains(&r) {
            u.push((r, n));
        }
    };
    match i.enc {
        Enc::Sopp => {}
        Enc::Smem => {
            add(i.addr, 2);
            add(i.data, i.op.d.regs());
        }
        Enc::Global => {
            add(i.addr, if i.saddr == 124 { 2 } else { 1 });
            if i.saddr != 124 {
                add(i.saddr, 2);
            }
            match i.op.sem {
                // A d16 load also keeps (reads) the other half of its register.
                Sem::GLoad(_) | Sem::GLoadD16(..) => add(i.dst, i.op.d.regs()),
                Sem::GAtomicCmpswap | Sem::GAtomicAdd => {
                    let d = i.op.d.regs();
                    add(i.data, if i.op.sem == Sem::GAtomicCmpswap { 2 * d } else { d });
                    if i.glc {
                        add(i.dst, d);
                    }
                }
                _ => add(i.data, i.op.d.regs()),
            }
        }
        Enc::Ds => {
            add(i.addr, 1);
            if i.op.sem == Sem::DsLoad {
                add(i.dst, i.op.d.regs());
            } else {
                add(i.data, i.op.d.regs());
            }
        }
        _ => {
            let one = |x: &Inst, add: &mut dyn FnMut(u16, u16)| {
                for k in 0..x.op.n as usize {
                    add(x.src[k], x.op.s[k].regs());
                }
                let compare = matches!(x.op.sem, Sem::VCmp(..) | Sem::VCmpClass | Sem::VCmpx(..) | Sem::VCmpxClass);
                if !compare && x.enc != Enc::Sopc {
                    add(x.dst, x.op.d.regs());
                }
                if matches!(x.op.sem, Sem::VCndmask | Sem::VAddCoCi | Sem::VSubCoCi | Sem::VSubrevCoCi) {
                    add(x.src[2], 1);
                }
                if x.sdst != 124 {
                    add(x.sdst, 1);
                }
            };
            one(i, &mut add);
            if let Some(y) = &i.y {
                one(y, &mut add);
            }
        }
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldexp_rounds_once() {
        assert_eq!(ldexp(1.5, 3), 12.0);
        assert_eq!(ldexp(1.0, -1074), f64::from_bits(1));
        assert_eq!(ldexp(1.0, -1075), 0.0);
        assert_eq!(ldexp(1.5, -1074), f64::from_bits(2));
        assert_eq!(ldexp(f64::from_bits(3), 1), f64::from_bits(6));
        assert_eq!(ldexp(1.0, 1024), f64::INFINITY);
    }

    #[test]
    fn approximate_instructions_stay_within_one_ulp() {
        for k in 1..2000u32 {
            let x = 1.0 + k as f32 * 0.37;
            let r = one_ulp(1.0 / f64::from(x), u64::from(x.to_bits()));
            let exact = 1.0 / f64::from(x);
            let ulp = f64::from(f32::from_bits(r.to_bits() + 1) - r);
            assert!((f64::from(r) - exact).abs() <= ulp, "{x}: {r} vs {exact}");
        }
        // Some results are not the correctly rounded ones, so code relying on that fails.
        let off = (1..2000u32)
            .filter(|k| {
                let x = 1.0 + *k as f32 * 0.37;
                one_ulp(1.0 / f64::from(x), u64::from(x.to_bits())) != (1.0 / f64::from(x)) as f32
            })
            .count();
        assert!(off > 100, "{off}");
    }

    #[test]
    fn ieee_min_max_and_class() {
        assert_eq!(maxnum(f64::NAN, 1.0), 1.0);
        assert!(maxnum(-0.0, 0.0).is_sign_positive());
        assert!(minnum(0.0, -0.0).is_sign_negative());
        assert_eq!(class_bits(T::F32, f32b(-0.0)), 1 << 5);
        assert_eq!(class_bits(T::F32, f32b(f32::from_bits(1))), 1 << 7);
        assert_eq!(class_bits(T::F32, f32b(f32::NEG_INFINITY)), 1 << 2);
        assert_eq!(class_bits(T::F32, 0x7fc0_0000), 1 << 1);
    }

    #[test]
    fn division_helpers_follow_the_isa() {
        // Ordinary operands: no scaling, no VCC.
        assert_eq!(div_scale(T::F32, f32b(3.0), f32b(3.0), f32b(7.0)), (f32b(3.0), false));
        // A zero denominator gives NaN.
        assert!(bf32(div_scale(T::F32, f32b(1.0), f32b(0.0), f32b(1.0)).0).is_nan());
        // Fixup: x/0 is a signed infinity, 0/0 NaN, otherwise the quotient with the right sign.
        assert_eq!(bf32(div_fixup(T::F32, f32b(5.0), f32b(-0.0), f32b(1.0))), f32::NEG_INFINITY);
        assert!(bf32(div_fixup(T::F32, f32b(5.0), f32b(0.0), f32b(0.0))).is_nan());
        assert_eq!(bf32(div_fixup(T::F32, f32b(2.5), f32b(-2.0), f32b(5.0))), -2.5);
    }
}
