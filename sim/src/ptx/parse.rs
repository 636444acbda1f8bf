//! Decoding PTX text into the simulator's compact form. The decoder accepts the subset of PTX
//! that tk's PTX backend emits (see `tk_codegen::ptx`); anything else is an error naming the
//! line, never a crash.

use std::collections::HashMap;

/// A PTX type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Pred,
    B8,
    B16,
    B32,
    B64,
    U8,
    U16,
    U32,
    U64,
    S8,
    S16,
    S32,
    S64,
    F16,
    Bf16,
    F32,
    F64,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        Some(match s {
            "pred" => Ty::Pred,
            "b8" => Ty::B8,
            "b16" => Ty::B16,
            "b32" => Ty::B32,
            "b64" => Ty::B64,
            "u8" => Ty::U8,
            "u16" => Ty::U16,
            "u32" => Ty::U32,
            "u64" => Ty::U64,
            "s8" => Ty::S8,
            "s16" => Ty::S16,
            "s32" => Ty::S32,
            "s64" => Ty::S64,
            "f16" => Ty::F16,
            "bf16" => Ty::Bf16,
            "f32" => Ty::F32,
            "f64" => Ty::F64,
            _ => return None,
        })
    }
    /// Size in bytes.
    pub fn bytes(self) -> u64 {
        match self {
            Ty::Pred | Ty::B8 | Ty::U8 | Ty::S8 => 1,
            Ty::B16 | Ty::U16 | Ty::S16 | Ty::F16 | Ty::Bf16 => 2,
            Ty::B32 | Ty::U32 | Ty::S32 | Ty::F32 => 4,
            Ty::B64 | Ty::U64 | Ty::S64 | Ty::F64 => 8,
        }
    }
    pub fn signed(self) -> bool {
        matches!(self, Ty::S8 | Ty::S16 | Ty::S32 | Ty::S64)
    }
    pub fn float(self) -> bool {
        matches!(self, Ty::F16 | Ty::Bf16 | Ty::F32 | Ty::F64)
    }
}

/// Special registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sreg {
    Tid,
    Ntid,
    Ctaid,
    Nctaid,
}

/// An operand.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Opnd {
    Reg(u32),
    /// A predicate register, negated (`!%p`).
    NotReg(u32),
    Imm(u64),
    Sreg(Sreg),
    /// The address of a shared variable.
    Shared(u64),
    /// `[reg + off]`.
    Mem(u32, i64),
    /// `[param]`: the index of a kernel parameter.
    Param(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Lo,
    Ls,
    Hi,
    Hs,
    Neu,
    Nan,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    None,
    Rn,
    Rz,
    Rm,
    Rp,
    Rni,
    Rzi,
    Rmi,
    Rpi,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    Global,
    Shared,
    Param,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bin {
    Add,
    Sub,
    MulLo,
    MulWide,
    Div,
    Rem,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Min,
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Un {
    Mov,
    Not,
    Neg,
    Abs,
    Sqrt,
    Rcp,
}

/// A decoded instruction.
#[derive(Clone, Debug)]
pub enum Op {
    Un(Un, Ty),
    Bin(Bin, Ty),
    /// `mad.lo`: `a * b + c`.
    Mad(Ty),
    Fma(Ty),
    Selp(Ty),
    Setp(Cmp, Ty),
    Cvt {
        dst: Ty,
        src: Ty,
        rnd: Rnd,
    },
    Cvta,
    Bfe(Ty),
    Ld(Space, Ty),
    St(Space, Ty),
    AtomCas(Ty),
    /// `red.global.add` of an integer type (no result).
    RedAdd(Ty),
    Bra(usize),
    Bar,
    Ret,
}

#[derive(Clone, Debug)]
pub struct Inst {
    pub op: Op,
    /// Guard predicate: (register, negated).
    pub guard: Option<(u32, bool)>,
    pub args: Vec<Opnd>,
    /// The PTX line (1-based).
    pub line: u32,
    /// The `.tk` source of a global access: (file, lo, hi) from a `// @loc FILE LO HI` line
    /// before it.
    pub loc: Option<(u32, u32, u32)>,
}

/// One `.entry`.
#[derive(Clone, Debug)]
pub struct Func {
    pub name: String,
    pub params: Vec<(String, Ty)>,
    pub nregs: usize,
    pub reg_names: Vec<String>,
    pub shared_bytes: u64,
    /// Shared variables: (name, offset, bytes).
    pub shared: Vec<(String, u64, u64)>,
    pub insts: Vec<Inst>,
}

/// A decoded PTX module.
#[derive(Clone, Debug)]
pub struct Module {
    pub funcs: Vec<Func>,
    /// Whether the host runs the launches directly (the `sim:*` devices): then a launch stops at
    /// the host's interrupt ([`tk_abi::interrupt`]) between rounds of warps and reports the
    /// blocks it has run ([`tk_abi::progress`]). Not inside a simulated PCIe GPU: hardware does
    /// neither.
    pub host_driven: bool,
}

/// A decoding error: the PTX line and what is wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("PTX line {line}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub message: String,
}

fn err<T>(line: u32, m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, message: m.into() })
}

struct FuncBuilder {
    name: String,
    params: Vec<(String, Ty)>,
    regs: HashMap<String, u32>,
    reg_names: Vec<String>,
    shared: Vec<(String, u64, u64)>,
    shared_bytes: u64,
    /// Instructions with unresolved branch labels.
    insts: Vec<(Inst, Option<String>)>,
    labels: HashMap<String, usize>,
    /// A source location waiting for the next global access.
    loc: Option<(u32, u32, u32)>,
}

impl Module {
    /// Decodes PTX text.
    pub fn parse(text: &str) -> Result<Module, ParseError> {
        let mut funcs = Vec::new();
        let mut cur: Option<FuncBuilder> = None;
        let mut in_params = false;
        for (i, raw) in text.lines().enumerate() {
            let ln = i as u32 + 1;
            if let Some(rest) = raw.trim_start().strip_prefix("// @loc ") {
                let n: Vec<u32> = rest.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                if let (Some(f), [_, lo, hi]) = (cur.as_mut(), n.as_slice()) {
                    f.loc = Some((n[0], *lo, *hi));
                }
                continue;
            }
            let line = raw.split("//").next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if in_params {
                if line.starts_with(')') {
                    in_params = false;
                    continue;
                }
                let l = line.trim_end_matches(',');
                let parts: Vec<&str> = l.split_whitespace().collect();
                match parts.as_slice() {
                    [".param", t, name] => {
                        let ty = Ty::parse(t.trim_start_matches('.'))
                            .ok_or(ParseError { line: ln, message: format!("unknown parameter type `{t}`") })?;
                        if let Some(f) = cur.as_mut() {
                            f.params.push((name.to_string(), ty));
                        }
                    }
                    _ => return err(ln, format!("expected a parameter, found `{line}`")),
                }
                continue;
            }
            if let Some(rest) = line.strip_prefix(".visible .entry ").or_else(|| line.strip_prefix(".entry ")) {
                let name = rest.trim_end_matches('(').trim().to_string();
                cur = Some(FuncBuilder {
                    name,
                    params: Vec::new(),
                    regs: HashMap::new(),
                    reg_names: Vec::new(),
                    shared: Vec::new(),
                    shared_bytes: 0,
                    insts: Vec::new(),
                    labels: HashMap::new(),
                    loc: None,
                });
                in_params = rest.ends_with('(');
                continue;
            }
            if line.starts_with(".version")
                || line.starts_with(".target")
                || line.starts_with(".address_size")
                || line.starts_with(".maxntid")
                || line == "{"
            {
                continue;
            }
            let Some(f) = cur.as_mut() else { return err(ln, format!("`{line}` outside a function")) };
            if line == "}" {
                let Some(f) = cur.take() else { continue };
                funcs.push(f.finish()?);
                continue;
            }
            if let Some(rest) = line.strip_prefix(".reg ") {
                let rest = rest.trim_end_matches(';');
                let mut it = rest.split_whitespace();
                let (Some(_t), Some(name)) = (it.next(), it.next()) else {
                    return err(ln, "malformed register declaration");
                };
                let n = f.reg_names.len() as u32;
                f.regs.insert(name.to_string(), n);
                f.reg_names.push(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix(".shared ") {
                // `.shared .align A .b8 NAME[BYTES];`
                let rest = rest.trim_end_matches(';');
                let last = rest.split_whitespace().last().unwrap_or("");
                let (name, bytes) = last
                    .split_once('[')
                    .and_then(|(n, b)| b.trim_end_matches(']').parse::<u64>().ok().map(|b| (n.to_string(), b)))
                    .ok_or(ParseError { line: ln, message: format!("malformed shared declaration `{line}`") })?;
                let off = f.shared_bytes.next_multiple_of(8);
                f.shared.push((name, off, bytes));
                f.shared_bytes = off + bytes;
                continue;
            }
            if let Some(l) = line.strip_suffix(':') {
                f.labels.insert(l.to_string(), f.insts.len());
                continue;
            }
            let Some(body) = line.strip_suffix(';') else { return err(ln, format!("expected `;` after `{line}`")) };
            let mut inst = f.decode(body, ln)?;
            if matches!(inst.0.op, Op::Ld(Space::Global, _) | Op::St(Space::Global, _)) {
                inst.0.loc = f.loc.take();
            }
            f.insts.push(inst);
        }
        if cur.is_some() {
            return err(text.lines().count() as u32, "unterminated function");
        }
        Ok(Module { funcs, host_driven: false })
    }
}

impl FuncBuilder {
    fn finish(self) -> Result<Func, ParseError> {
        let mut insts = Vec::with_capacity(self.insts.len());
        for (mut inst, label) in self.insts {
            if let Some(l) = label {
                let Some(&t) = self.labels.get(&l) else { return err(inst.line, format!("unknown label `{l}`")) };
                inst.op = Op::Bra(t);
            }
            insts.push(inst);
        }
        Ok(Func {
            name: self.name,
            params: self.params,
            nregs: self.reg_names.len(),
            reg_names: self.reg_names,
            shared_bytes: self.shared_bytes,
            shared: self.shared,
            insts,
        })
    }

    fn operand(&self, s: &str, ln: u32) -> Result<Opnd, ParseError> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            let (base, off) = match inner.find(['+', '-']) {
                Some(p) if p > 0 => {
                    let off: i64 = inner[p..]
                        .trim_start_matches('+')
                        .parse()
                        .map_err(|_| ParseError { line: ln, message: format!("bad address offset in `{s}`") })?;
                    (&inner[..p], off)
                }
                _ => (inner, 0),
            };
            if let Some(&r) = self.regs.get(base) {
                return Ok(Opnd::Mem(r, off));
            }
            if let Some(p) = self.params.iter().position(|(n, _)| n == base) {
                return Ok(Opnd::Param(p as u32));
            }
            return err(ln, format!("unknown address `{s}`"));
        }
        if let Some(r) = s.strip_prefix('!') {
            return match self.regs.get(r) {
                Some(&r) => Ok(Opnd::NotReg(r)),
                None => err(ln, format!("unknown register `{r}`")),
            };
        }
        if let Some(&r) = self.regs.get(s) {
            return Ok(Opnd::Reg(r));
        }
        let sreg = match s {
            "%tid.x" => Some(Sreg::Tid),
            "%ntid.x" => Some(Sreg::Ntid),
            "%ctaid.x" => Some(Sreg::Ctaid),
            "%nctaid.x" => Some(Sreg::Nctaid),
            _ => None,
        };
        if let Some(r) = sreg {
            return Ok(Opnd::Sreg(r));
        }
        if let Some(h) = s.strip_prefix("0f") {
            return u32::from_str_radix(h, 16)
                .map(|v| Opnd::Imm(u64::from(v)))
                .map_err(|_| ParseError { line: ln, message: format!("bad f32 literal `{s}`") });
        }
        if let Some(h) = s.strip_prefix("0d") {
            return u64::from_str_radix(h, 16)
                .map(Opnd::Imm)
                .map_err(|_| ParseError { line: ln, message: format!("bad f64 literal `{s}`") });
        }
        if let Ok(v) = s.parse::<i64>() {
            return Ok(Opnd::Imm(v as u64));
        }
        if let Some((_, off, _)) = self.shared.iter().find(|(n, _, _)| n == s) {
            return Ok(Opnd::Shared(*off));
        }
        err(ln, format!("unknown operand `{s}`"))
    }

    fn decode(&self, body: &str, ln: u32) -> Result<(Inst, Option<String>), ParseError> {
        let mut body = body.trim();
        let mut guard = None;
        if let Some(rest) = body.strip_prefix('@') {
            let (p, r) = rest
                .split_once(char::is_whitespace)
                .ok_or(ParseError { line: ln, message: "a guard without an instruction".into() })?;
            let (neg, name) = match p.strip_prefix('!') {
                Some(n) => (true, n),
                None => (false, p),
            };
            let &reg =
                self.regs.get(name).ok_or(ParseError { line: ln, message: format!("unknown predicate `{p}`") })?;
            guard = Some((reg, neg));
            body = r.trim();
        }
        let (opcode, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
        let parts: Vec<&str> = opcode.split('.').collect();
        let name = parts[0];
        let mods = &parts[1..];
        let tys: Vec<Ty> = mods.iter().filter_map(|m| Ty::parse(m)).collect();
        let last_ty = tys.last().copied();
        let need_ty = |t: Option<Ty>| t.ok_or(ParseError { line: ln, message: format!("`{opcode}` has no type") });
        let has = |m: &str| mods.contains(&m);
        let mut label = None;
        let args: Vec<Opnd>;
        let op = match name {
            "bra" => {
                label = Some(rest.trim().to_string());
                args = Vec::new();
                Op::Bra(0)
            }
            "ret" | "exit" => {
                args = Vec::new();
                Op::Ret
            }
            "bar" | "barrier" => {
                args = Vec::new();
                Op::Bar
            }
            _ => {
                args = if rest.trim().is_empty() {
                    Vec::new()
                } else {
                    rest.split(',').map(|a| self.operand(a, ln)).collect::<Result<_, _>>()?
                };
                match name {
                    "mov" => Op::Un(Un::Mov, need_ty(last_ty)?),
                    "not" => Op::Un(Un::Not, need_ty(last_ty)?),
                    "neg" => Op::Un(Un::Neg, need_ty(last_ty)?),
                    "abs" => Op::Un(Un::Abs, need_ty(last_ty)?),
                    "sqrt" => Op::Un(Un::Sqrt, need_ty(last_ty)?),
                    "rcp" => Op::Un(Un::Rcp, need_ty(last_ty)?),
                    "add" | "sub" | "div" | "rem" | "and" | "or" | "xor" | "shl" | "shr" | "min" | "max" => {
                        let b = match name {
                            "add" => Bin::Add,
                            "sub" => Bin::Sub,
                            "div" => Bin::Div,
                            "rem" => Bin::Rem,
                            "and" => Bin::And,
                            "or" => Bin::Or,
                            "xor" => Bin::Xor,
                            "shl" => Bin::Shl,
                            "shr" => Bin::Shr,
                            "min" => Bin::Min,
                            _ => Bin::Max,
                        };
                        Op::Bin(b, need_ty(last_ty)?)
                    }
                    "mul" if has("wide") => Op::Bin(Bin::MulWide, need_ty(last_ty)?),
                    "mul" => Op::Bin(Bin::MulLo, need_ty(last_ty)?),
                    "mad" => Op::Mad(need_ty(last_ty)?),
                    "fma" => Op::Fma(need_ty(last_ty)?),
                    "selp" => Op::Selp(need_ty(last_ty)?),
                    "setp" => {
                        let c = match mods.first().copied() {
                            Some("eq") => Cmp::Eq,
                            Some("ne") => Cmp::Ne,
                            Some("lt") => Cmp::Lt,
                            Some("le") => Cmp::Le,
                            Some("gt") => Cmp::Gt,
                            Some("ge") => Cmp::Ge,
                            Some("lo") => Cmp::Lo,
                            Some("ls") => Cmp::Ls,
                            Some("hi") => Cmp::Hi,
                            Some("hs") => Cmp::Hs,
                            Some("neu") => Cmp::Neu,
                            Some("nan") => Cmp::Nan,
                            other => return err(ln, format!("unsupported comparison `{other:?}`")),
                        };
                        Op::Setp(c, need_ty(last_ty)?)
                    }
                    "cvt" => {
                        if tys.len() != 2 {
                            return err(ln, format!("`{opcode}` needs two types"));
                        }
                        let rnd = if has("rn") {
                            Rnd::Rn
                        } else if has("rz") {
                            Rnd::Rz
                        } else if has("rm") {
                            Rnd::Rm
                        } else if has("rp") {
                            Rnd::Rp
                        } else if has("rni") {
                            Rnd::Rni
                        } else if has("rzi") {
                            Rnd::Rzi
                        } else if has("rmi") {
                            Rnd::Rmi
                        } else if has("rpi") {
                            Rnd::Rpi
                        } else {
                            Rnd::None
                        };
                        Op::Cvt { dst: tys[0], src: tys[1], rnd }
                    }
                    "cvta" => Op::Cvta,
                    "bfe" => Op::Bfe(need_ty(last_ty)?),
                    "ld" | "st" => {
                        let space = if has("global") {
                            Space::Global
                        } else if has("shared") {
                            Space::Shared
                        } else if has("param") {
                            Space::Param
                        } else {
                            return err(ln, format!("`{opcode}`: only global, shared and param spaces are supported"));
                        };
                        let t = need_ty(last_ty)?;
                        if name == "ld" { Op::Ld(space, t) } else { Op::St(space, t) }
                    }
                    "atom" if has("cas") && has("global") => Op::AtomCas(need_ty(last_ty)?),
                    "red" if has("add") && has("global") => match need_ty(last_ty)? {
                        // PTX ISA, red: `.add` takes .u32, .s32 and .u64 among the integers.
                        t @ (Ty::U32 | Ty::S32 | Ty::U64) => Op::RedAdd(t),
                        // Float atomics flush subnormals (PTX ISA, atom/red): not modelled, so refused.
                        t => return err(ln, format!("`{opcode}`: only integer atomic adds are supported ({t:?})")),
                    },
                    _ => return err(ln, format!("unsupported instruction `{opcode}`")),
                }
            }
        };
        Ok((Inst { op, guard, args, line: ln, loc: None }, label))
    }
}
