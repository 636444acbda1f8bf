//! The text form of the kernel IR: printing and parsing back.

use super::*;
use crate::dims::Dim;
use crate::dtype::DType;
use std::fmt::Write;

/// The text form of a kernel (`tk emit --stage kernel`).
pub fn print(k: &Kernel) -> String {
    let mut out = String::new();
    let bufs: Vec<String> = k
        .bufs
        .iter()
        .map(|b| {
            let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
            format!("b{}: {}[{}]{}", b.id, b.dtype, dims.join(", "), if b.write { " out" } else { "" })
        })
        .collect();
    let _ = writeln!(out, "kernel {}({}) knobs {} {{", k.name, bufs.join(", "), k.knobs);
    print_block(&k.body, 1, &mut out);
    out.push_str("}\n");
    out
}

/// An index expression with range variables as `iN` and registers as `rN`.
fn ix(e: &IExpr) -> String {
    match e {
        IExpr::Coord(k) => format!("i{k}"),
        IExpr::Data(k) => format!("r{k}"),
        IExpr::Dim(d) if d.as_const().is_some() => d.to_string(),
        IExpr::Dim(d) => format!("<{d}>"),
        IExpr::Add(a, b) => format!("({} + {})", ix(a), ix(b)),
        IExpr::Mul(a, b) => format!("({} * {})", ix(a), ix(b)),
        IExpr::Div(a, b) => format!("({} / {})", ix(a), ix(b)),
        IExpr::Mod(a, b) => format!("({} % {})", ix(a), ix(b)),
    }
}

fn print_block(body: &[Inst], ind: usize, out: &mut String) {
    let pad = "  ".repeat(ind);
    for i in body {
        let _ = match i {
            Inst::Range { var, extent, kind, body } => {
                let _ = writeln!(out, "{pad}range i{var} in 0..<{extent}> {} {{", format!("{kind:?}").to_lowercase());
                print_block(body, ind + 1, out);
                writeln!(out, "{pad}}}")
            }
            Inst::Const { dst, value, dtype } => writeln!(out, "{pad}r{dst} = const {value} : {dtype}"),
            Inst::Index { dst, expr } => writeln!(out, "{pad}r{dst} = index {} : i64", ix(expr)),
            Inst::Load { dst, buf, index, pred, fill, dtype, .. } => match pred {
                Some(p) => writeln!(out, "{pad}r{dst} = load a{buf}[{}] if r{p} else {fill} : {dtype}", ix(index)),
                None => writeln!(out, "{pad}r{dst} = load a{buf}[{}] : {dtype}", ix(index)),
            },
            Inst::Store { buf, index, value, pred, .. } => match pred {
                Some(p) => writeln!(out, "{pad}store a{buf}[{}] = r{value} if r{p}", ix(index)),
                None => writeln!(out, "{pad}store a{buf}[{}] = r{value}", ix(index)),
            },
            Inst::AtomicAdd { buf, index, value, pred, .. } => match pred {
                Some(p) => writeln!(out, "{pad}atomic a{buf}[{}] += r{value} if r{p}", ix(index)),
                None => writeln!(out, "{pad}atomic a{buf}[{}] += r{value}", ix(index)),
            },
            Inst::Alu { dst, op, args, dtype } => {
                let name = match op {
                    Op::Unary(u) => format!("{u:?}").to_lowercase(),
                    Op::Binary(b) => format!("{b:?}").to_lowercase(),
                    Op::Where => "where".into(),
                    Op::Cast => "cast".into(),
                    Op::Bitcast => "bitcast".into(),
                    Op::Fma => "fma".into(),
                    _ => "?".into(),
                };
                let a: Vec<String> = args.iter().map(|r| format!("r{r}")).collect();
                writeln!(out, "{pad}r{dst} = {name} {} : {dtype}", a.join(", "))
            }
            Inst::AccNew { acc, op, src, dtype } => {
                writeln!(out, "{pad}r{acc} = acc {} {src} -> {dtype}", format!("{op:?}").to_lowercase())
            }
            Inst::AccPush { acc, value, by, pred } => {
                let by = by.map(|b| format!(" * r{b}")).unwrap_or_default();
                match pred {
                    Some(p) => writeln!(out, "{pad}accumulate r{acc} += r{value}{by} if r{p}"),
                    None => writeln!(out, "{pad}accumulate r{acc} += r{value}{by}"),
                }
            }
            Inst::LocalAlloc { buf, dtype, size } => writeln!(out, "{pad}local l{buf}: {dtype}[<{size}>]"),
            Inst::LocalLoad { dst, buf, index, dtype } => {
                writeln!(out, "{pad}r{dst} = load l{buf}[{}] : {dtype}", ix(index))
            }
            Inst::LocalStore { buf, index, value } => writeln!(out, "{pad}store l{buf}[{}] = r{value}", ix(index)),
            Inst::Barrier => writeln!(out, "{pad}barrier"),
            Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                let l = |v: &[usize]| v.iter().map(|r| format!("r{r}")).collect::<Vec<_>>().join(", ");
                writeln!(out, "{pad}mma {m}x{n}x{k} ({}) = ({}) + ({}) @ ({}) : {dtype}", l(d), l(c), l(a), l(b))
            }
            Inst::AccGet { dst, acc } => writeln!(out, "{pad}r{dst} = result r{acc}"),
            Inst::Check { value, lo, hi, pred, loc } => {
                let p = pred.map(|p| format!(" if r{p}")).unwrap_or_default();
                writeln!(out, "{pad}check r{value} in <{lo}>..<{hi}>{p} @{}:{}..{}", loc.file, loc.lo, loc.hi)
            }
            Inst::Copy { dst, src } => writeln!(out, "{pad}r{dst} = r{src}"),
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let c: Vec<String> = carried.iter().map(|r| format!("r{r}")).collect();
                let _ = writeln!(out, "{pad}loop r{iter} from <{lo}> trips <{trip}> carry ({}) {{", c.join(", "));
                print_block(body, ind + 1, out);
                let nx: Vec<String> = next.iter().map(|r| format!("r{r}")).collect();
                if let Some(e) = exit {
                    let _ = writeln!(out, "{pad}  exit if r{e}");
                }
                let _ = writeln!(out, "{pad}  next ({})", nx.join(", "));
                writeln!(out, "{pad}}}")
            }
        };
    }
}

/// Parses the text form of a kernel (as [`print`] writes it).
pub fn parse(text: &str) -> Result<Kernel, crate::graph::text::ParseError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let perr = |line: usize, m: &str| crate::graph::text::ParseError { line, message: m.to_string() };
    let Some(&(ln, head)) = lines.first() else { return Err(perr(0, "empty kernel")) };
    let rest = head.strip_prefix("kernel ").ok_or_else(|| perr(ln, "expected `kernel NAME(...)`"))?;
    let (name, rest) = rest.split_once('(').ok_or_else(|| perr(ln, "expected `(`"))?;
    let (args, rest) = rest.rsplit_once(") knobs ").ok_or_else(|| perr(ln, "expected `) knobs ...`"))?;
    let knobs: Knobs = rest.trim_end_matches('{').trim().parse().map_err(|e: String| perr(ln, &e))?;
    let mut bufs = Vec::new();
    for a in crate::graph::text::split_top(args, ',') {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        let (id, ty) = a.split_once(": ").ok_or_else(|| perr(ln, "expected `bN: TYPE`"))?;
        let write = ty.ends_with(" out");
        let ty = ty.trim_end_matches(" out");
        let id: usize = id.trim_start_matches('b').parse().map_err(|_| perr(ln, "bad buffer id"))?;
        let (d, rest) = ty.split_once('[').ok_or_else(|| perr(ln, "bad type"))?;
        let dtype = DType::parse(d).ok_or_else(|| perr(ln, "unknown dtype"))?;
        let mut shape = Vec::new();
        for part in crate::graph::text::split_top(rest.trim_end_matches(']'), ',') {
            if !part.trim().is_empty() {
                shape.push(crate::graph::text::parse_dim(part.trim(), ln)?);
            }
        }
        bufs.push(KBuf { id, dtype, shape, write });
    }
    let mut pos = 1;
    let mut maxreg = 0usize;
    let body = parse_block(&lines, &mut pos, &mut maxreg)?;
    if pos != lines.len() {
        return Err(perr(lines.get(pos).map(|l| l.0).unwrap_or(0), "text after the kernel"));
    }
    Ok(Kernel { name: name.trim().to_string(), bufs, body, regs: maxreg + 1, knobs, loc: Loc::default() })
}

fn reg(w: &str, ln: usize, maxreg: &mut usize) -> Result<usize, crate::graph::text::ParseError> {
    let r: usize = w
        .trim()
        .trim_end_matches(',')
        .strip_prefix('r')
        .and_then(|x| x.parse().ok())
        .ok_or(crate::graph::text::ParseError { line: ln, message: format!("expected a register, found `{w}`") })?;
    *maxreg = (*maxreg).max(r);
    Ok(r)
}

fn kdim(w: &str, ln: usize) -> Result<Dim, crate::graph::text::ParseError> {
    let inner = w
        .trim()
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .ok_or(crate::graph::text::ParseError { line: ln, message: format!("expected `<DIM>`, found `{w}`") })?;
    crate::graph::text::parse_dim(inner, ln)
}

fn kix(s: &str, ln: usize, maxreg: &mut usize) -> Result<IExpr, crate::graph::text::ParseError> {
    crate::graph::text::parse_iexpr_with(s, ln, 'i', 'r', &mut |r| *maxreg = (*maxreg).max(r))
}

fn alu_op(name: &str) -> Option<Op> {
    match name {
        "where" => Some(Op::Where),
        "cast" => Some(Op::Cast),
        "bitcast" => Some(Op::Bitcast),
        "fma" => Some(Op::Fma),
        n => crate::graph::text::UNARY
            .iter()
            .find(|u| format!("{u:?}").to_lowercase() == n)
            .map(|u| Op::Unary(*u))
            .or_else(|| {
                crate::graph::text::BINARY.iter().find(|b| format!("{b:?}").to_lowercase() == n).map(|b| Op::Binary(*b))
            }),
    }
}

fn red_op(name: &str) -> Option<ReduceOp> {
    crate::graph::text::REDUCE.iter().copied().find(|o| format!("{o:?}").to_lowercase() == name)
}

fn scalar(w: &str, ln: usize) -> Result<Scalar, crate::graph::text::ParseError> {
    let e = || crate::graph::text::ParseError { line: ln, message: format!("bad constant `{w}`") };
    Ok(match w {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        "nan" => Scalar::Float(f64::NAN),
        "inf" => Scalar::Float(f64::INFINITY),
        "-inf" => Scalar::Float(f64::NEG_INFINITY),
        w if w.contains(['.', 'e', 'E']) => Scalar::Float(w.parse().map_err(|_| e())?),
        w => Scalar::Int(w.parse().map_err(|_| e())?),
    })
}

fn parse_block(
    lines: &[(usize, &str)],
    pos: &mut usize,
    maxreg: &mut usize,
) -> Result<Vec<Inst>, crate::graph::text::ParseError> {
    let mut out = Vec::new();
    loop {
        let Some(&(ln, l)) = lines.get(*pos) else {
            return Err(crate::graph::text::ParseError { line: 0, message: "missing `}`".into() });
        };
        *pos += 1;
        let perr = |m: &str| crate::graph::text::ParseError { line: ln, message: m.to_string() };
        if l == "}" {
            return Ok(out);
        }
        let words: Vec<&str> = crate::graph::text::split_top(l, ' ').into_iter().filter(|w| !w.is_empty()).collect();
        if let Some(rest) = l.strip_prefix("range ") {
            let w: Vec<&str> = crate::graph::text::split_top(rest, ' ').into_iter().filter(|x| !x.is_empty()).collect();
            let var: usize = w[0].trim_start_matches('i').parse().map_err(|_| perr("bad range variable"))?;
            let extent =
                kdim(w.get(2).and_then(|x| x.strip_prefix("0..")).ok_or_else(|| perr("expected `in 0..<DIM>`"))?, ln)?;
            let kind = match w.get(3).copied().unwrap_or("") {
                "global" => RangeKind::Global,
                "local" => RangeKind::Local,
                "sequential" => RangeKind::Sequential,
                "reduce" => RangeKind::Reduce,
                k if k.starts_with("unrolled(") => {
                    RangeKind::Unrolled(k[9..k.len() - 1].parse().map_err(|_| perr("bad factor"))?)
                }
                k if k.starts_with("vectorized(") => {
                    RangeKind::Vectorized(k[11..k.len() - 1].parse().map_err(|_| perr("bad width"))?)
                }
                _ => return Err(perr("unknown range kind")),
            };
            let body = parse_block(lines, pos, maxreg)?;
            out.push(Inst::Range { var, extent, kind, body });
        } else if let Some(rest) = l.strip_prefix("store ")
            && !l.starts_with("store l")
        {
            let (target, val) = rest.split_once(" = ").ok_or_else(|| perr("expected `store aN[...] = rM`"))?;
            let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            let buf: usize = buf.trim_start_matches('a').parse().map_err(|_| perr("bad buffer"))?;
            let index = kix(idx.trim_end_matches(']'), ln, maxreg)?;
            let (v, pred) = match val.split_once(" if ") {
                Some((v, p)) => (reg(v, ln, maxreg)?, Some(reg(p, ln, maxreg)?)),
                None => (reg(val, ln, maxreg)?, None),
            };
            out.push(Inst::Store { buf, index, value: v, pred, loc: Loc::default() });
        } else if let Some(rest) = l.strip_prefix("atomic a") {
            let (target, val) = rest.split_once(" += ").ok_or_else(|| perr("expected `atomic aN[...] += rM`"))?;
            let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            let buf: usize = buf.parse().map_err(|_| perr("bad buffer"))?;
            let index = kix(idx.trim_end_matches(']'), ln, maxreg)?;
            let (v, pred) = match val.split_once(" if ") {
                Some((v, p)) => (reg(v, ln, maxreg)?, Some(reg(p, ln, maxreg)?)),
                None => (reg(val, ln, maxreg)?, None),
            };
            out.push(Inst::AtomicAdd { buf, index, value: v, pred, loc: Loc::default() });
        } else if let Some(rest) = l.strip_prefix("accumulate ") {
            let (a, v) = rest.split_once(" += ").ok_or_else(|| perr("expected `+=`"))?;
            let (v, pred) = match v.split_once(" if ") {
                Some((v, p)) => (v, Some(reg(p, ln, maxreg)?)),
                None => (v, None),
            };
            let (v, by) = match v.split_once(" * ") {
                Some((v, b)) => (v, Some(reg(b, ln, maxreg)?)),
                None => (v, None),
            };
            out.push(Inst::AccPush { acc: reg(a, ln, maxreg)?, value: reg(v, ln, maxreg)?, by, pred });
        } else if l == "barrier" {
            out.push(Inst::Barrier);
        } else if let Some(rest) = l.strip_prefix("local l") {
            let (b, ty) = rest.split_once(": ").ok_or_else(|| perr("expected `local lN: TYPE`"))?;
            let (d, sz) = ty.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            out.push(Inst::LocalAlloc {
                buf: b.parse().map_err(|_| perr("bad local buffer"))?,
                dtype: DType::parse(d).ok_or_else(|| perr("bad dtype"))?,
                size: kdim(sz.trim_end_matches(']'), ln)?,
            });
        } else if let Some(rest) = l.strip_prefix("store l") {
            let (target, val) = rest.split_once(" = ").ok_or_else(|| perr("expected `store lN[...] = rM`"))?;
            let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            out.push(Inst::LocalStore {
                buf: buf.parse().map_err(|_| perr("bad local buffer"))?,
                index: kix(idx.trim_end_matches(']'), ln, maxreg)?,
                value: reg(val, ln, maxreg)?,
            });
        } else if let Some(rest) = l.strip_prefix("mma ") {
            let (body, t) = rest.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
            let (dims, rest) = body.split_once(' ').ok_or_else(|| perr("expected dimensions"))?;
            let ds: Vec<usize> =
                dims.split('x').map(|x| x.parse().map_err(|_| perr("bad mma shape"))).collect::<Result<_, _>>()?;
            if ds.len() != 3 {
                return Err(perr("expected MxNxK"));
            }
            let lists: Vec<Vec<usize>> = rest
                .split(['(', ')'])
                .map(str::trim)
                .filter(|x| x.starts_with('r'))
                .map(|x| x.split(',').map(|r| reg(r, ln, maxreg)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<_, _>>()?;
            if lists.len() != 4 {
                return Err(perr("expected (d) = (c) + (a) @ (b)"));
            }
            out.push(Inst::Mma {
                d: lists[0].clone(),
                c: lists[1].clone(),
                a: lists[2].clone(),
                b: lists[3].clone(),
                m: ds[0],
                n: ds[1],
                k: ds[2],
                dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
            });
        } else if let Some(rest) = l.strip_prefix("check ") {
            let (body, loc) = rest.rsplit_once(" @").ok_or_else(|| perr("missing location"))?;
            let w: Vec<&str> = crate::graph::text::split_top(body, ' ').into_iter().filter(|x| !x.is_empty()).collect();
            let value = reg(w[0], ln, maxreg)?;
            let (lo, hi) = w.get(2).and_then(|r| r.split_once("..")).ok_or_else(|| perr("expected `in <LO>..<HI>`"))?;
            let pred = match w.get(4) {
                Some(p) => Some(reg(p, ln, maxreg)?),
                None => None,
            };
            let (f, r) = loc.split_once(':').ok_or_else(|| perr("bad location"))?;
            let (a, b) = r.split_once("..").ok_or_else(|| perr("bad location"))?;
            let num = |x: &str| x.parse::<u32>().map_err(|_| perr("bad location"));
            out.push(Inst::Check {
                value,
                lo: kdim(lo, ln)?,
                hi: kdim(hi, ln)?,
                pred,
                loc: Loc { file: num(f)?, lo: num(a)?, hi: num(b)? },
            });
        } else if let Some(rest) = l.strip_prefix("loop ") {
            // loop rI from <LO> trips <N> carry (rA, rB) {
            let w: Vec<&str> = crate::graph::text::split_top(rest.trim_end_matches('{').trim(), ' ')
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect();
            let iter = reg(w[0], ln, maxreg)?;
            let lo = kdim(w.get(2).copied().unwrap_or(""), ln)?;
            let trip = kdim(w.get(4).copied().unwrap_or(""), ln)?;
            let carried = w.get(6).map(|c| c.trim_start_matches('(').trim_end_matches(')')).unwrap_or("");
            let carried: Vec<usize> = carried
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| reg(x, ln, maxreg))
                .collect::<Result<_, _>>()?;
            // The body ends with optional `exit if rE`, then `next (...)`, then `}`.
            let mut body = Vec::new();
            let mut exit = None;
            let next;
            loop {
                let Some(&(l2, t)) = lines.get(*pos) else { return Err(perr("unterminated loop")) };
                if let Some(e) = t.strip_prefix("exit if ") {
                    exit = Some(reg(e, l2, maxreg)?);
                    *pos += 1;
                } else if let Some(n) = t.strip_prefix("next ") {
                    next = n
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(|x| reg(x, l2, maxreg))
                        .collect::<Result<Vec<_>, _>>()?;
                    *pos += 1;
                    match lines.get(*pos) {
                        Some((_, "}")) => *pos += 1,
                        _ => return Err(perr("expected `}` after `next`")),
                    }
                    break;
                } else {
                    // One instruction of the body.
                    let mut sub_pos = *pos;
                    let mut one = parse_one(lines, &mut sub_pos, maxreg)?;
                    *pos = sub_pos;
                    body.append(&mut one);
                }
            }
            out.push(Inst::Loop { lo, trip, iter, carried, body, next, exit });
        } else if words.len() >= 3 && words[1] == "=" {
            let dst = reg(words[0], ln, maxreg)?;
            let rhs = l.split_once(" = ").map(|x| x.1).unwrap_or("");
            let inst = if let Some(r) = rhs.strip_prefix("const ") {
                let (v, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                Inst::Const {
                    dst,
                    value: scalar(v.trim(), ln)?,
                    dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
                }
            } else if let Some(r) = rhs.strip_prefix("index ") {
                let (e, _) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                Inst::Index { dst, expr: kix(e, ln, maxreg)? }
            } else if let Some(r) = rhs.strip_prefix("load l") {
                let (body, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let (buf, idx) = body.split_once('[').ok_or_else(|| perr("expected `[`"))?;
                Inst::LocalLoad {
                    dst,
                    buf: buf.parse().map_err(|_| perr("bad local buffer"))?,
                    index: kix(idx.trim_end_matches(']'), ln, maxreg)?,
                    dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
                }
            } else if let Some(r) = rhs.strip_prefix("load ") {
                let (body, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let dtype = DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?;
                let (target, cond) = match body.split_once(" if ") {
                    Some((a, c)) => (a, Some(c)),
                    None => (body, None),
                };
                let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
                let buf: usize = buf.trim_start_matches('a').parse().map_err(|_| perr("bad buffer"))?;
                let index = kix(idx.trim_end_matches(']'), ln, maxreg)?;
                let (pred, fill) = match cond {
                    Some(c) => {
                        let (p, f) = c.split_once(" else ").ok_or_else(|| perr("expected `else FILL`"))?;
                        (Some(reg(p, ln, maxreg)?), scalar(f.trim(), ln)?)
                    }
                    None => (None, Scalar::zero(dtype)),
                };
                Inst::Load { dst, buf, index, pred, fill, dtype, loc: Loc::default() }
            } else if let Some(r) = rhs.strip_prefix("acc ") {
                let w: Vec<&str> = r.split_whitespace().collect();
                let op = red_op(w.first().copied().unwrap_or("")).ok_or_else(|| perr("bad reduction"))?;
                let src = DType::parse(w.get(1).copied().unwrap_or("")).ok_or_else(|| perr("bad dtype"))?;
                let dtype = DType::parse(w.get(3).copied().unwrap_or("")).ok_or_else(|| perr("bad dtype"))?;
                Inst::AccNew { acc: dst, op, src, dtype }
            } else if let Some(r) = rhs.strip_prefix("result ") {
                Inst::AccGet { dst, acc: reg(r, ln, maxreg)? }
            } else if rhs.starts_with('r') && !rhs.contains(' ') {
                Inst::Copy { dst, src: reg(rhs, ln, maxreg)? }
            } else {
                let (body, t) = rhs.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let (name, args) = body.split_once(' ').ok_or_else(|| perr("expected `OP rA, rB`"))?;
                let op = alu_op(name).ok_or_else(|| perr(&format!("unknown operation `{name}`")))?;
                let args: Vec<usize> = args.split(',').map(|a| reg(a, ln, maxreg)).collect::<Result<_, _>>()?;
                Inst::Alu { dst, op, args, dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))? }
            };
            out.push(inst);
        } else {
            return Err(perr(&format!("unexpected line `{l}`")));
        }
    }
}

/// Parses one instruction (a range or a loop with its nested body counts as one).
fn parse_one(
    lines: &[(usize, &str)],
    pos: &mut usize,
    maxreg: &mut usize,
) -> Result<Vec<Inst>, crate::graph::text::ParseError> {
    // Reuse the block parser on a slice that ends right after the instruction: find its extent.
    let start = *pos;
    let opens = lines[start].1.ends_with('{');
    let mut end = start + 1;
    if opens {
        let mut depth = 1;
        while end < lines.len() && depth > 0 {
            if lines[end].1.ends_with('{') {
                depth += 1;
            }
            if lines[end].1 == "}" {
                depth -= 1;
            }
            end += 1;
        }
    }
    let mut slice: Vec<(usize, &str)> = lines[start..end].to_vec();
    slice.push((0, "}"));
    let mut p = 0;
    let insts = parse_block(&slice, &mut p, maxreg)?;
    *pos = end;
    Ok(insts)
}
