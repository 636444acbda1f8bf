//! Simplification of the kernel IR's index expressions.

use super::*;
use crate::dims::Dim;
use std::collections::HashMap;

/// Simplifies every index expression with the extents of the enclosing ranges.
pub(super) fn simplify_indices(body: &mut [Inst], ranges: &mut HashMap<usize, Dim>) {
    for i in body {
        match i {
            Inst::Range { var, extent, body, .. } => {
                ranges.insert(*var, extent.clone());
                simplify_indices(body, ranges);
                ranges.remove(var);
            }
            Inst::Loop { body, .. } => simplify_indices(body, ranges),
            Inst::Index { expr, .. }
            | Inst::Load { index: expr, .. }
            | Inst::Store { index: expr, .. }
            | Inst::AtomicAdd { index: expr, .. }
            | Inst::LocalLoad { index: expr, .. }
            | Inst::LocalStore { index: expr, .. } => {
                *expr = expr.simplified_in(&|k| ranges.get(&k).cloned());
            }
            _ => {}
        }
    }
}
