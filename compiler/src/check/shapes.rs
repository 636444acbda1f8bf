//! Shapes: broadcasting and the shape rule of matrix multiplication.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn broadcast(&mut self, a: &R, b: &R, span: Span) -> Res<Vec<Dim>> {
        self.broadcast_shapes(a.shape_of(), b.shape_of(), span, Some((a, b)))
    }

    pub(super) fn broadcast_shapes(
        &mut self,
        sa: &[Dim],
        sb: &[Dim],
        span: Span,
        ops: Option<(&R, &R)>,
    ) -> Res<Vec<Dim>> {
        let n = sa.len().max(sb.len());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let x = if i + sa.len() >= n { Some(&sa[i + sa.len() - n]) } else { None };
            let y = if i + sb.len() >= n { Some(&sb[i + sb.len() - n]) } else { None };
            let d = match (x, y) {
                (Some(x), None) => x.clone(),
                (None, Some(y)) => y.clone(),
                (Some(x), Some(y)) if x == y => x.clone(),
                (Some(x), Some(y)) if x.is_one() => y.clone(),
                (Some(x), Some(y)) if y.is_one() => x.clone(),
                (Some(x), Some(y)) => {
                    let mut d = self
                        .diag(
                            Code::Broadcast,
                            span,
                            format!("shapes {} and {} cannot be broadcast", shape_str(sa), shape_str(sb)),
                        )
                        .label(format!("dimension `{x}` meets dimension `{y}`"));
                    if let Some((a, b)) = ops {
                        d = d.secondary(a.file, a.span, format!("shape {}", shape_str(sa))).secondary(
                            b.file,
                            b.span,
                            format!("shape {}", shape_str(sb)),
                        );
                    }
                    d = if x.as_const().is_none() && y.as_const().is_none() {
                        d.help("dimensions with different names are different sizes; if they are the same size, use one name in both parameters")
                    } else {
                        d.help("to line up other axes, insert size-1 axes with `new`, e.g. `b[:, new]`")
                    };
                    d = d.note("broadcasting aligns shapes from the right; a dimension of 1 stretches");
                    return Err(self.err(d));
                }
                (None, None) => Dim::constant(1),
            };
            out.push(d);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- expressions

    pub(super) fn matmul(&mut self, a: R, b: R, span: Span) -> Res<R> {
        let (a, b, e) = self.unify(a, b, span)?;
        if e.is_bool() {
            return Err(self.err(
                self.diag(Code::OpNotSupported, span, "`@` is not defined for bool")
                    .label("bool operands")
                    .help("cast to a number type first"),
            ));
        }
        let (sa, sb) = (a.shape_of().to_vec(), b.shape_of().to_vec());
        for (r, s) in [(&a, &sa), (&b, &sb)] {
            if s.is_empty() {
                return Err(self.err(
                    self.diag(Code::MatmulScalar, r.span, "`@` needs arrays of rank 1 or more")
                        .label("this is a scalar")
                        .help("use `*` to scale by a scalar"),
                ));
            }
        }
        let ka = sa[sa.len() - 1].clone();
        let kb = if sb.len() == 1 { sb[0].clone() } else { sb[sb.len() - 2].clone() };
        if ka != kb {
            return Err(self.err(
                self.diag(
                    Code::MatmulInner,
                    span,
                    format!("matrix product of {} and {}", shape_str(&sa), shape_str(&sb)),
                )
                .label(format!("inner dimensions `{ka}` and `{kb}` differ"))
                .secondary(a.file, a.span, format!("shape {}", shape_str(&sa)))
                .secondary(b.file, b.span, format!("shape {}", shape_str(&sb)))
                .help("the last dimension of the left operand must equal the first matrix dimension of the right one"),
            ));
        }
        let batch_a = if sa.len() > 2 { &sa[..sa.len() - 2] } else { &[] };
        let batch_b = if sb.len() > 2 { &sb[..sb.len() - 2] } else { &[] };
        let mut shape = self.broadcast_shapes(batch_a, batch_b, span, Some((&a, &b)))?;
        if sa.len() >= 2 {
            shape.push(sa[sa.len() - 2].clone());
        }
        if sb.len() >= 2 {
            shape.push(sb[sb.len() - 1].clone());
        }
        Ok(self.mk(TKind::Binary(BinOp::MatMul, a, b), Ty::Arr(e, shape), span))
    }

    // ---------------------------------------------------------------- blocks, lets, loops
}
