//! Indexing: integer, slice, gather and mask indices and their result shapes.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn index(&mut self, a: R, items: &[ast::IndexItem], span: Span) -> Res<R> {
        let Ty::Arr(e, shape) = a.ty.clone() else {
            return Err(self.err(
                self.diag(Code::TupleAsArray, a.span, "cannot index a tuple")
                    .label(format!("this is {}", a.ty))
                    .help("destructure it first: `let (a, b) = ...;`"),
            ));
        };
        let consumed = items.iter().filter(|i| !matches!(i, ast::IndexItem::New(_))).count();
        if consumed > shape.len() {
            return Err(self.err(
                self.diag(
                    Code::TooManyIndices,
                    span,
                    format!("{consumed} indices for an array of rank {}", shape.len()),
                )
                .label(format!("this array has shape {}", shape_str(&shape)))
                .secondary(a.file, a.span, format!("rank {}", shape.len())),
            ));
        }
        if items.is_empty() {
            return Err(self.err(
                self.diag(Code::TooManyIndices, span, "empty index")
                    .label("nothing between `[` and `]`")
                    .help("write `x[i]`, `x[1:]` or `x[:, new]`"),
            ));
        }
        let mut out_items = Vec::new();
        let mut out_shape = Vec::new();
        let mut axis = 0;
        for it in items {
            match it {
                ast::IndexItem::New(_) => {
                    out_items.push(TIndex::New);
                    out_shape.push(Dim::constant(1));
                }
                ast::IndexItem::Expr(x) => {
                    let size = shape[axis].clone();
                    let v = self.elab(x, None)?;
                    let ve = self.elem(&v)?;
                    if !ve.is_int() {
                        return Err(self.err(
                            self.diag(Code::IndexNotInt, x.span, format!("an index must be an integer, found {ve}"))
                                .label("not an integer")
                                .help(match (ve.is_float(), self.snippet(x.span)) {
                                    (true, Some(t)) if ve == Elem::FloatLit => {
                                        format!("write an integer, e.g. `{}`", t.split('.').next().unwrap_or("0"))
                                    }
                                    (true, Some(t)) => format!("convert it: `{t} as i32`"),
                                    (true, None) => "convert it with `as i32`".to_string(),
                                    _ => "to select elements by a bool mask, use `where(mask, x, 0.0)`".to_string(),
                                }),
                        ));
                    }
                    if !v.shape_of().is_empty() {
                        return Err(self.err(
                            self.diag(
                                Code::IndexNotInt,
                                x.span,
                                format!("an index must be a scalar, found shape {}", shape_str(v.shape_of())),
                            )
                            .label("an array of indices")
                            .help("gather element by element with a comprehension: `[i, j] => table[ids[i], j]`"),
                        ));
                    }
                    let (v, bounds) = self.check_index(v, &size, x.span, &a)?;
                    out_items.push(TIndex::Select(v, bounds));
                    axis += 1;
                }
                ast::IndexItem::Slice { start, stop, step, span: ss } => {
                    let size = shape[axis].clone();
                    let step_v = match step {
                        None => 1,
                        Some(s) => {
                            let v = self.elab(s, None)?;
                            match v.kind {
                                TKind::Lit(Lit::Int(c)) if c != 0 && c.abs() < i64::MAX as i128 => c as i64,
                                TKind::Lit(Lit::Int(_)) => {
                                    return Err(self.err(
                                        self.diag(Code::BadSlice, s.span, "slice step cannot be zero").label("step 0"),
                                    ));
                                }
                                _ => {
                                    return Err(self.err(
                                        self.diag(
                                            Code::NotConstant,
                                            s.span,
                                            "a slice step must be an integer constant",
                                        )
                                        .label(format!("this is {}", v.ty)),
                                    ));
                                }
                            }
                        }
                    };
                    let bound = |s: &mut Self, b: &Option<ast::Expr>, default: Dim| -> Res<Dim> {
                        let Some(b) = b else { return Ok(default) };
                        let v = s.elab(b, None)?;
                        match &v.kind {
                            TKind::Lit(Lit::Int(c)) if *c < 0 => Ok(size.add_const(*c as i64)),
                            _ => match as_dim(&v) {
                                Some(d) => Ok(d),
                                None => Err(s.err(
                                    s.diag(
                                        Code::NotConstant,
                                        b.span,
                                        "slice bounds must be known before the kernel runs",
                                    )
                                    .label(format!("this is a run-time value of type {}", v.ty))
                                    .help(
                                        "a slice's bounds are sizes fixed before the kernel runs; for a window \
                                             that starts at an index, add an index for the offset: \
                                             `[i, r in 0..3] => x[i + r]` instead of `x[i:i+3]`",
                                    ),
                                )),
                            },
                        }
                    };
                    let (start_d, stop_d) = if step_v > 0 {
                        (bound(self, start, Dim::constant(0))?, bound(self, stop, size.clone())?)
                    } else {
                        (bound(self, start, size.add_const(-1))?, bound(self, stop, Dim::constant(-1))?)
                    };
                    let len = if step_v > 0 {
                        stop_d.sub(&start_d).add_const(step_v - 1).floor_div(step_v)
                    } else {
                        start_d.sub(&stop_d).add_const(-step_v - 1).floor_div(-step_v)
                    };
                    let Some(len) = len else {
                        return Err(self
                            .err(self.diag(Code::BadSlice, *ss, "invalid slice").label("cannot compute its length")));
                    };
                    if let Some(c) = len.as_const()
                        && c < 0
                    {
                        return Err(self.err(
                            self.diag(Code::BadSlice, *ss, format!("this slice has negative length {c}"))
                                .label("start is past stop"),
                        ));
                    }
                    // With constant sizes, a slice outside the axis is caught now; with symbolic
                    // sizes it is checked when the dimensions are bound.
                    if let (Some(n), Some(st), Some(l)) = (size.as_const(), start_d.as_const(), len.as_const()) {
                        let last = st + (l - 1).max(0) * step_v;
                        if l > 0 && (st < 0 || st >= n || last < 0 || last >= n) {
                            return Err(self.err(
                                self.diag(
                                    Code::BadSlice,
                                    *ss,
                                    format!("this slice reaches outside an axis of size {n}"),
                                )
                                .label(format!("elements {st} to {last} with step {step_v}"))
                                .help("slice bounds are not clamped: keep them within the axis"),
                            ));
                        }
                    }
                    out_items.push(TIndex::Slice { start: start_d, step: step_v, len: len.clone() });
                    out_shape.push(len);
                    axis += 1;
                }
            }
        }
        out_shape.extend(shape[axis..].iter().cloned());
        Ok(self.mk(TKind::Index(a, out_items), Ty::Arr(e, out_shape), span))
    }

    /// Classifies an index and proves it in bounds when it depends on index variables.
    pub(super) fn check_index(&mut self, v: R, size: &Dim, span: Span, arr: &R) -> Res<(R, Bounds)> {
        // Constant negative indices count from the end (numpy).
        if let TKind::Lit(Lit::Int(c)) = v.kind {
            let v2 = if c < 0 {
                self.mk(TKind::Dim(size.add_const(c as i64)), Ty::scalar(Elem::D(DType::I64)), v.span)
            } else {
                v.clone()
            };
            return Ok((v2, Bounds::AtBind));
        }
        if matches!(v.kind, TKind::Dim(_)) {
            return Ok((v, Bounds::AtBind));
        }
        // Try the plain intervals and the ones refined by `where` facts: each bound may be
        // proven by either.
        let plain = self.interval(&v, false);
        let refined = self.interval(&v, true);
        let with = match (plain, refined) {
            (Interval::Known { lo: l1, hi: h1, vars }, Interval::Known { lo: l2, hi: h2, .. }) => {
                let lo = if l1.provably_nonneg() { l1 } else { l2 };
                let hi = if size.add_const(-1).sub(&h1).provably_nonneg() { h1 } else { h2 };
                Interval::Known { lo, hi, vars }
            }
            (_, r) => r,
        };
        match with {
            Interval::Data => Ok((v, Bounds::Runtime)),
            Interval::Unknown => Err(self.err(
                self.diag(Code::OutOfBounds, span, "cannot prove this index is in bounds")
                    .label(format!(
                        "the index is not an affine function of the index variables; the axis has size `{size}`"
                    ))
                    .secondary(arr.file, arr.span, format!("shape {}", shape_str(arr.shape_of())))
                    .help("guard it: `where(idx < n, x[idx], 0.0)`, or pad the input with `pad(...)`"),
            )),
            Interval::Known { lo, hi, vars } => {
                if !vars {
                    return Ok((v, Bounds::AtBind));
                }
                let lo_ok = lo.provably_nonneg();
                let hi_ok = size.add_const(-1).sub(&hi).provably_nonneg();
                if lo_ok && hi_ok {
                    return Ok((v, Bounds::Proven));
                }
                let (what, bound) = if !lo_ok {
                    ("below 0", format!("its smallest value is `{lo}`"))
                } else {
                    ("past the end", format!("its largest value is `{hi}` but the axis has size `{size}`"))
                };
                let idx = self.snippet(span).unwrap_or_else(|| "i".to_string());
                let guard = if !lo_ok { format!("{idx} >= 0") } else { format!("{idx} < {size}") };
                Err(self.err(
                    self.diag(Code::OutOfBounds, span, format!("index may be out of bounds ({what})"))
                        .label(bound)
                        .secondary(arr.file, arr.span, format!("shape {}", shape_str(arr.shape_of())))
                        .help(format!("guard the access with `where({guard}, <access>, 0.0)`, shrink the result's extent, or `pad` the input")),
                ))
            }
        }
    }
}
