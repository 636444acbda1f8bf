//! The text form of the graph IR: a printer and a parser, so that graphs can be dumped
//! (`tk emit --stage graph`), read back, and used in file tests.
//!
//! ```text
//! graph saxpy
//!   input a: f32[]
//!   input x: f32[n]
//!   %0 = input 0 : f32[] @0:10..11
//!   %1 = index [] %0 : f32[n] @0:3..8
//!   output out = %1
//! end
//! ```
//! Nodes are numbered in topological order. Dimensions print as polynomials (`2 * n + 1`,
//! `(w + 1) / 2`); index-map expressions print fully parenthesized (`(c0 + 1)`, `(c1 * (n))`).

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;
use std::collections::HashMap;
use std::fmt::Write;

/// Prints a graph.
pub fn print(g: &Graph, name: &str) -> String {
    let mut out = String::new();
    print_into(g, name, 0, &mut out);
    out
}

fn dims_str(s: &[Dim]) -> String {
    s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
}

fn iexpr_str(e: &IExpr) -> String {
    match e {
        IExpr::Coord(a) => format!("c{a}"),
        IExpr::Dim(d) => match d.as_const() {
            Some(c) => c.to_string(),
            None => format!("<{d}>"),
        },
        IExpr::Add(a, b) => format!("({} + {})", iexpr_str(a), iexpr_str(b)),
        IExpr::Mul(a, b) => format!("({} * {})", iexpr_str(a), iexpr_str(b)),
        IExpr::Div(a, b) => format!("({} / {})", iexpr_str(a), iexpr_str(b)),
        IExpr::Mod(a, b) => format!("({} % {})", iexpr_str(a), iexpr_str(b)),
        IExpr::Data(k) => format!("d{k}"),
    }
}

fn print_into(g: &Graph, name: &str, indent: usize, out: &mut String) {
    let pad = "  ".repeat(indent);
    let _ = writeln!(out, "{pad}graph {name}");
    if !g.dims.is_empty() {
        let _ = writeln!(out, "{pad}  dims {}", g.dims.join(", "));
    }
    for (n, d, s) in &g.inputs {
        let _ = writeln!(out, "{pad}  input {n}: {d}[{}]", dims_str(s));
    }
    let order = g.topo();
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (i, id) in order.iter().enumerate() {
        let n = g.node(*id);
        let args: Vec<String> = n.args.iter().map(|a| format!("%{}", num[a])).collect();
        let op = match &n.op {
            Op::Input(k) => format!("input {k}"),
            Op::Const(s) => format!("const {s}"),
            Op::Size(d) => format!("size <{d}>"),
            Op::Iota { axis, offset } => format!("iota {axis} <{offset}>"),
            Op::Unary(u) => format!("unary {}", format!("{u:?}").to_lowercase()),
            Op::Binary(b) => format!("binary {}", format!("{b:?}").to_lowercase()),
            Op::Where => "where".to_string(),
            Op::Cast => "cast".to_string(),
            Op::Bitcast => "bitcast".to_string(),
            Op::Fma => "fma".to_string(),
            Op::Reduce { op, axes } => {
                format!(
                    "reduce {} [{}]",
                    format!("{op:?}").to_lowercase(),
                    axes.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
                )
            }
            Op::Scan { op, axis } => format!("scan {} {axis}", format!("{op:?}").to_lowercase()),
            Op::ScatterAdd { batch } => format!("scatter_add {batch}"),
            Op::Proj(k) => format!("proj {k}"),
            Op::Index { map, guards, fill } => {
                let m: Vec<String> = map.iter().map(iexpr_str).collect();
                let mut s = format!("index [{}]", m.join(", "));
                for gd in guards {
                    let kind = if gd.on_invalid == OnInvalid::Fill { "fill" } else { "error" };
                    let _ = write!(s, " guard {} in <{}>..<{}> {kind}", iexpr_str(&gd.expr), gd.lo, gd.hi);
                }
                let _ = write!(s, " fill {fill}");
                s
            }
            Op::Loop { lo, trip, carried, has_exit, .. } => {
                format!("loop <{lo}> <{trip}> carried {carried} exit {has_exit}")
            }
        };
        let args = if args.is_empty() { String::new() } else { format!(" {}", args.join(" ")) };
        let _ = write!(
            out,
            "{pad}  %{i} = {op}{args} : {}[{}] @{}:{}..{}",
            n.dtype,
            dims_str(&n.shape),
            n.loc.file,
            n.loc.lo,
            n.loc.hi
        );
        if let Op::Loop { body, .. } = &n.op {
            let _ = writeln!(out, " {{");
            print_into(body, "body", indent + 2, out);
            let _ = writeln!(out, "{pad}  }}");
        } else {
            out.push('\n');
        }
    }
    for (n, id) in &g.outputs {
        let _ = writeln!(out, "{pad}  output {n} = %{}", num[id]);
    }
    let _ = writeln!(out, "{pad}end");
}

/// A parse error with its 1-based line.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

/// Parses the text form back into a graph; returns the graph and its name.
pub fn parse(text: &str) -> Result<(Graph, String), ParseError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let mut pos = 0;
    let r = parse_graph(&lines, &mut pos)?;
    if pos != lines.len() {
        return Err(ParseError { line: lines[pos].0, message: "text after the end of the graph".into() });
    }
    Ok(r)
}

fn perr<T>(line: usize, m: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError { line, message: m.into() })
}

fn parse_graph(lines: &[(usize, &str)], pos: &mut usize) -> Result<(Graph, String), ParseError> {
    let Some(&(ln, first)) = lines.get(*pos) else { return perr(0, "empty input") };
    let Some(name) = first.strip_prefix("graph ") else { return perr(ln, "expected `graph NAME`") };
    *pos += 1;
    let mut g = Graph::default();
    let mut ids: Vec<NodeId> = Vec::new();
    loop {
        let Some(&(ln, line)) = lines.get(*pos) else { return perr(ln_last(lines), "missing `end`") };
        *pos += 1;
        if line == "end" {
            break;
        }
        if let Some(rest) = line.strip_prefix("dims ") {
            g.dims = rest.split(',').map(|s| s.trim().to_string()).collect();
        } else if let Some(rest) = line.strip_prefix("input ") {
            let (n, t) =
                rest.split_once(':').ok_or(ParseError { line: ln, message: "expected `input NAME: TYPE`".into() })?;
            let (d, s) = parse_type(t.trim(), ln)?;
            g.inputs.push((n.trim().to_string(), d, s));
        } else if let Some(rest) = line.strip_prefix("output ") {
            let (n, v) =
                rest.split_once('=').ok_or(ParseError { line: ln, message: "expected `output NAME = %N`".into() })?;
            let id = node_ref(v.trim(), &ids, ln)?;
            g.outputs.push((n.trim().to_string(), id));
        } else if line.starts_with('%') {
            let id = parse_node(line, ln, &mut g, &ids, lines, pos)?;
            ids.push(id);
        } else {
            return perr(ln, format!("unexpected line `{line}`"));
        }
    }
    Ok((g, name.trim().to_string()))
}

fn ln_last(lines: &[(usize, &str)]) -> usize {
    lines.last().map(|l| l.0).unwrap_or(0)
}

fn node_ref(s: &str, ids: &[NodeId], ln: usize) -> Result<NodeId, ParseError> {
    let k: usize = s
        .strip_prefix('%')
        .and_then(|x| x.parse().ok())
        .ok_or(ParseError { line: ln, message: format!("bad node reference `{s}`") })?;
    ids.get(k).copied().ok_or(ParseError { line: ln, message: format!("`%{k}` is used before it is defined") })
}

fn parse_type(t: &str, ln: usize) -> Result<(DType, Vec<Dim>), ParseError> {
    let (d, rest) = t.split_once('[').ok_or(ParseError { line: ln, message: format!("bad type `{t}`") })?;
    let dtype = DType::parse(d.trim()).ok_or(ParseError { line: ln, message: format!("unknown dtype `{d}`") })?;
    let inner = rest.strip_suffix(']').ok_or(ParseError { line: ln, message: format!("bad type `{t}`") })?;
    let mut dims = Vec::new();
    for part in split_top(inner, ',') {
        if !part.trim().is_empty() {
            dims.push(parse_dim(part.trim(), ln)?);
        }
    }
    Ok((dtype, dims))
}

/// Splits at `sep` outside parentheses, brackets and angle brackets.
pub fn split_top(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' | '<' => depth += 1,
            ')' | ']' | '>' => depth -= 1,
            c if c == sep && depth == 0 => {
                out.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// A small recursive-descent parser for dimension polynomials.
pub fn parse_dim(s: &str, ln: usize) -> Result<Dim, ParseError> {
    let toks = tokenize(s);
    let mut p = 0;
    let d = dim_sum(&toks, &mut p, ln)?;
    if p != toks.len() {
        return perr(ln, format!("bad dimension `{s}`"));
    }
    Ok(d)
}

fn tokenize(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let st = i;
            while i < cs.len() && (cs[i].is_alphanumeric() || cs[i] == '_') {
                i += 1;
            }
            out.push(cs[st..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

fn dim_sum(t: &[String], p: &mut usize, ln: usize) -> Result<Dim, ParseError> {
    let neg = t.get(*p).is_some_and(|x| x == "-");
    if neg {
        *p += 1;
    }
    let mut acc = dim_prod(t, p, ln)?;
    if neg {
        acc = acc.neg();
    }
    while let Some(op) = t.get(*p).filter(|x| *x == "+" || *x == "-").cloned() {
        *p += 1;
        let r = dim_prod(t, p, ln)?;
        acc = if op == "+" { acc.add(&r) } else { acc.sub(&r) };
    }
    Ok(acc)
}

fn dim_prod(t: &[String], p: &mut usize, ln: usize) -> Result<Dim, ParseError> {
    let mut acc = dim_atom(t, p, ln)?;
    while let Some(op) = t.get(*p).filter(|x| *x == "*" || *x == "/").cloned() {
        *p += 1;
        let r = dim_atom(t, p, ln)?;
        acc = if op == "*" {
            acc.mul(&r)
        } else {
            match r.as_const().and_then(|c| acc.floor_div(c)) {
                Some(d) => d,
                None => return perr(ln, "a dimension divides only by a positive constant"),
            }
        };
    }
    Ok(acc)
}

fn dim_atom(t: &[String], p: &mut usize, ln: usize) -> Result<Dim, ParseError> {
    let Some(tok) = t.get(*p).cloned() else { return perr(ln, "unexpected end of dimension") };
    *p += 1;
    if tok == "(" {
        let d = dim_sum(t, p, ln)?;
        if t.get(*p).map(|s| s.as_str()) != Some(")") {
            return perr(ln, "missing `)` in dimension");
        }
        *p += 1;
        return Ok(d);
    }
    if let Ok(v) = tok.parse::<i64>() {
        return Ok(Dim::constant(v));
    }
    if tok.chars().next().is_some_and(|c| c.is_alphabetic() || c == '_') {
        return Ok(Dim::sym(&tok));
    }
    perr(ln, format!("unexpected `{tok}` in dimension"))
}

fn parse_scalar(s: &str, ln: usize) -> Result<Scalar, ParseError> {
    Ok(match s {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        "nan" => Scalar::Float(f64::NAN),
        "inf" => Scalar::Float(f64::INFINITY),
        "-inf" => Scalar::Float(f64::NEG_INFINITY),
        s if s.contains(['.', 'e', 'E']) => {
            Scalar::Float(s.parse().map_err(|_| ParseError { line: ln, message: format!("bad constant `{s}`") })?)
        }
        s => Scalar::Int(s.parse().map_err(|_| ParseError { line: ln, message: format!("bad constant `{s}`") })?),
    })
}

fn parse_iexpr(s: &str, ln: usize) -> Result<IExpr, ParseError> {
    parse_iexpr_with(s, ln, 'c', 'd', &mut |_| {})
}

/// Parses a fully parenthesised index expression whose coordinates are written `{coord}N` and
/// data references `{data}N` (the graph text uses `c`/`d`, the kernel text `i`/`r`); `on_data`
/// sees every data reference.
pub(crate) fn parse_iexpr_with(
    s: &str,
    ln: usize,
    coord: char,
    data: char,
    on_data: &mut dyn FnMut(usize),
) -> Result<IExpr, ParseError> {
    let s = s.trim();
    if let Some(inner) = s.strip_prefix('<').and_then(|x| x.strip_suffix('>')) {
        return Ok(IExpr::Dim(parse_dim(inner, ln)?));
    }
    if let Some(k) = s.strip_prefix(coord).and_then(|x| x.parse().ok()) {
        return Ok(IExpr::Coord(k));
    }
    if let Some(k) = s.strip_prefix(data).and_then(|x| x.parse().ok()) {
        on_data(k);
        return Ok(IExpr::Data(k));
    }
    if let Ok(v) = s.parse::<i64>() {
        return Ok(IExpr::c(v));
    }
    if let Some(inner) = s.strip_prefix('(').and_then(|x| x.strip_suffix(')')) {
        for op in ['+', '*', '/', '%'] {
            let parts = split_top(inner, op);
            if parts.len() == 2 {
                let a = Box::new(parse_iexpr_with(parts[0], ln, coord, data, on_data)?);
                let b = Box::new(parse_iexpr_with(parts[1], ln, coord, data, on_data)?);
                return Ok(match op {
                    '+' => IExpr::Add(a, b),
                    '*' => IExpr::Mul(a, b),
                    '/' => IExpr::Div(a, b),
                    _ => IExpr::Mod(a, b),
                });
            }
        }
    }
    perr(ln, format!("bad index expression `{s}`"))
}

fn parse_name<T: Copy + std::fmt::Debug>(s: &str, all: &[T], ln: usize) -> Result<T, ParseError> {
    all.iter()
        .copied()
        .find(|x| format!("{x:?}").to_lowercase() == s)
        .ok_or(ParseError { line: ln, message: format!("unknown operation `{s}`") })
}

/// Every unary operation, for parsing names.
pub(crate) const UNARY: &[UnaryOp] = &[
    UnaryOp::Neg,
    UnaryOp::Not,
    UnaryOp::Abs,
    UnaryOp::Sqrt,
    UnaryOp::Floor,
    UnaryOp::Ceil,
    UnaryOp::Round,
    UnaryOp::Exp,
    UnaryOp::Exp2,
    UnaryOp::Log,
    UnaryOp::Log2,
    UnaryOp::Sin,
    UnaryOp::Cos,
    UnaryOp::Tanh,
    UnaryOp::Erf,
    UnaryOp::Rsqrt,
];
/// Every binary operation, for parsing names.
pub(crate) const BINARY: &[BinaryOp] = &[
    BinaryOp::Add,
    BinaryOp::Sub,
    BinaryOp::Mul,
    BinaryOp::Div,
    BinaryOp::Rem,
    BinaryOp::Pow,
    BinaryOp::Min,
    BinaryOp::Max,
    BinaryOp::And,
    BinaryOp::Or,
    BinaryOp::Xor,
    BinaryOp::Shl,
    BinaryOp::Shr,
    BinaryOp::Eq,
    BinaryOp::Ne,
    BinaryOp::Lt,
    BinaryOp::Le,
    BinaryOp::Gt,
    BinaryOp::Ge,
    BinaryOp::DivTrunc,
    BinaryOp::RemTrunc,
];
/// Every reduction, for parsing names.
pub(crate) const REDUCE: &[ReduceOp] =
    &[ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min, ReduceOp::ArgMax, ReduceOp::ArgMin, ReduceOp::Dot];

fn parse_node(
    line: &str,
    ln: usize,
    g: &mut Graph,
    ids: &[NodeId],
    lines: &[(usize, &str)],
    pos: &mut usize,
) -> Result<NodeId, ParseError> {
    let (_, rhs) = line.split_once('=').ok_or(ParseError { line: ln, message: "expected `%N = ...`".into() })?;
    let opens_body = rhs.trim_end().ends_with('{');
    let rhs = rhs.trim().trim_end_matches('{').trim_end();
    let (rest, locs) =
        rhs.rsplit_once(" @").ok_or(ParseError { line: ln, message: "missing `@FILE:LO..HI`".into() })?;
    let loc = {
        let (f, r) = locs.split_once(':').ok_or(ParseError { line: ln, message: "bad location".into() })?;
        let (lo, hi) = r.split_once("..").ok_or(ParseError { line: ln, message: "bad location".into() })?;
        let num = |x: &str| x.parse::<u32>().map_err(|_| ParseError { line: ln, message: "bad location".into() });
        Loc { file: num(f)?, lo: num(lo)?, hi: num(hi)? }
    };
    let (opargs, ty) = rest.rsplit_once(" : ").ok_or(ParseError { line: ln, message: "missing ` : TYPE`".into() })?;
    let (dtype, shape) = parse_type(ty.trim(), ln)?;
    // Arguments are the trailing `%N` words.
    let words: Vec<&str> = split_top(opargs.trim(), ' ').into_iter().filter(|w| !w.is_empty()).collect();
    let nargs = words.iter().rev().take_while(|w| w.starts_with('%')).count();
    let (opw, argw) = words.split_at(words.len() - nargs);
    let args: Vec<NodeId> = argw.iter().map(|w| node_ref(w, ids, ln)).collect::<Result<_, _>>()?;
    let word = |k: usize| opw.get(k).copied().ok_or(ParseError { line: ln, message: "missing operand".into() });
    let usize_at =
        |k: usize| word(k)?.parse::<usize>().map_err(|_| ParseError { line: ln, message: "expected a number".into() });
    let dim_at = |k: usize| -> Result<Dim, ParseError> {
        let w = word(k)?;
        let inner = w
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .ok_or(ParseError { line: ln, message: format!("expected `<DIM>`, found `{w}`") })?;
        parse_dim(inner, ln)
    };
    let list = |w: &str| -> Vec<String> {
        w.trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let op = match word(0)? {
        "input" => Op::Input(usize_at(1)?),
        "const" => Op::Const(parse_scalar(word(1)?, ln)?),
        "size" => Op::Size(dim_at(1)?),
        "iota" => Op::Iota { axis: usize_at(1)?, offset: dim_at(2)? },
        "unary" => Op::Unary(parse_name(word(1)?, UNARY, ln)?),
        "binary" => Op::Binary(parse_name(word(1)?, BINARY, ln)?),
        "where" => Op::Where,
        "bitcast" => Op::Bitcast,
        "fma" => Op::Fma,
        "cast" => Op::Cast,
        "proj" => Op::Proj(usize_at(1)?),
        "reduce" => Op::Reduce {
            op: parse_name(word(1)?, REDUCE, ln)?,
            axes: list(word(2)?)
                .iter()
                .map(|a| a.parse().map_err(|_| ParseError { line: ln, message: "bad axis".into() }))
                .collect::<Result<_, _>>()?,
        },
        "scan" => Op::Scan { op: parse_name(word(1)?, REDUCE, ln)?, axis: usize_at(2)? },
        "scatter_add" => Op::ScatterAdd { batch: usize_at(1)? },
        "index" => {
            let map = split_top(word(1)?.trim_start_matches('[').trim_end_matches(']'), ',')
                .into_iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_iexpr(s, ln))
                .collect::<Result<Vec<_>, _>>()?;
            let mut guards = Vec::new();
            let mut k = 2;
            let mut fill = Scalar::Int(0);
            while k < opw.len() {
                match opw[k] {
                    "guard" => {
                        let expr = parse_iexpr(word(k + 1)?, ln)?;
                        let range = word(k + 3)?;
                        let (lo, hi) =
                            range.split_once("..").ok_or(ParseError { line: ln, message: "bad guard range".into() })?;
                        let strip = |x: &str| x.trim_start_matches('<').trim_end_matches('>').to_string();
                        let on_invalid = if word(k + 4)? == "fill" { OnInvalid::Fill } else { OnInvalid::Error };
                        guards.push(Guard {
                            expr,
                            lo: parse_dim(&strip(lo), ln)?,
                            hi: parse_dim(&strip(hi), ln)?,
                            on_invalid,
                        });
                        k += 5;
                    }
                    "fill" => {
                        fill = parse_scalar(word(k + 1)?, ln)?;
                        k += 2;
                    }
                    w => return perr(ln, format!("unexpected `{w}` in index")),
                }
            }
            Op::Index { map, guards, fill }
        }
        "loop" => {
            if !opens_body {
                return perr(ln, "a loop needs a `{` body");
            }
            let (body, _) = parse_graph(lines, pos)?;
            match lines.get(*pos) {
                Some((_, "}")) => *pos += 1,
                _ => return perr(ln, "missing `}` after the loop body"),
            }
            Op::Loop {
                lo: dim_at(1)?,
                trip: dim_at(2)?,
                carried: usize_at(4)?,
                has_exit: word(6)? == "true",
                body: Box::new(body),
            }
        }
        w => return perr(ln, format!("unknown operation `{w}`")),
    };
    match &op {
        Op::Reduce { op: r, .. } if args.len() != r.arity() => {
            let name = format!("{r:?}").to_lowercase();
            return perr(ln, format!("`reduce {name}` takes {} argument(s), not {}", r.arity(), args.len()));
        }
        Op::Scan { op: ReduceOp::Dot, .. } => return perr(ln, "a scan cannot be a contraction (`dot`)"),
        _ => {}
    }
    Ok(g.add(op, dtype, shape, args, loc))
}
