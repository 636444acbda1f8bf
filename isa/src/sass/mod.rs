//! SASS, NVIDIA's machine code (Volta and later: one 128-bit word per instruction), for Ampere
//! and Ada (sm_80, sm_86, sm_89): the control bits of every word, and the text of each
//! instruction in nvdisasm's syntax for the instructions tk's tables know ([`alu`]: integer,
//! float, double, half and conversion ops; [`ctrl`]: memory, uniform, special-register and
//! control-flow ops).
//!
//! The facts (bit positions, field values, printing rules) come from Mesa's NAK compiler
//! (`src/nouveau/compiler/nak/sm70_encode.rs`) and from nvdisasm itself, which judged them on
//! ptxas's output and on hand-made words; the tests compare tk's text with nvdisasm's on every
//! instruction ptxas emits for tk's examples. A word tk's tables do not know prints as `None`,
//! never as a guess.

mod alu;
mod ctrl;
mod enc;
mod fmt;

pub use enc::{EncodeError, Field, Inst, Kind, opcodes};

/// Bits `at..at + n` of `w`.
pub fn bits(w: u128, at: u32, n: u32) -> u32 {
    ((w >> at) & ((1u128 << n) - 1)) as u32
}

/// Bit `at` of `w`.
pub fn bit(w: u128, at: u32) -> bool {
    (w >> at) & 1 == 1
}

/// The scheduling bits every instruction carries (bits 105-125): how many cycles to stall
/// before the next instruction, whether the warp may yield, the scoreboards this instruction
/// sets when its result is written or its sources are read (7: none), the scoreboards it waits
/// for, and the operand reuse flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub stall: u8,
    /// Bit 109 as it is (ptxas sets it on most instructions).
    pub yield_: bool,
    pub write_sb: u8,
    pub read_sb: u8,
    pub wait: u8,
    pub reuse: u8,
}

impl Control {
    /// The control bits of `w`.
    pub fn of(w: u128) -> Control {
        Control {
            stall: bits(w, 105, 4) as u8,
            yield_: bit(w, 109),
            write_sb: bits(w, 110, 3) as u8,
            read_sb: bits(w, 113, 3) as u8,
            wait: bits(w, 116, 6) as u8,
            reuse: bits(w, 122, 4) as u8,
        }
    }

    /// `w` with its control bits replaced by these.
    pub fn put(&self, w: u128) -> u128 {
        let field = |v: u8, at: u32, n: u32| (u128::from(v) & ((1 << n) - 1)) << at;
        (w & !(((1u128 << 21) - 1) << 105))
            | field(self.stall, 105, 4)
            | field(u8::from(self.yield_), 109, 1)
            | field(self.write_sb, 110, 3)
            | field(self.read_sb, 113, 3)
            | field(self.wait, 116, 6)
            | field(self.reuse, 122, 4)
    }
}

/// A 128-bit instruction word from 16 little-endian bytes (the low 64-bit half first, as in a
/// cubin's `.text`).
pub fn word(b: &[u8; 16]) -> u128 {
    u128::from_le_bytes(*b)
}

/// An instruction's text: its guard predicate (`@P0`, `@!UP1`; empty when it has none) and
/// the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text {
    pub guard: String,
    pub body: String,
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.guard.is_empty() { write!(f, "{}", self.body) } else { write!(f, "{} {}", self.guard, self.body) }
    }
}

/// The architectures tk's tables cover.
pub const SMS: [u32; 3] = [80, 86, 89];

/// The text of the instruction `w` at byte offset `at` of a kernel for `sm` (80, 86 or 89), as
/// `nvdisasm -c` prints it between the offset comment and the `;`, or None when tk's tables do
/// not know it. `label` names a branch target (`.L_x_N`, or a function) by its offset.
pub fn print(w: u128, sm: u32, at: u64, label: &dyn Fn(u64) -> Option<String>) -> Option<Text> {
    if !SMS.contains(&sm) {
        return None;
    }
    let (body, uniform) = match alu::print(w, sm) {
        Some(t) => (t, false),
        None => ctrl::print(w, at, label)?,
    };
    Some(Text { guard: fmt::guard(w, uniform).trim_end().to_string(), body })
}

/// Whether the control bits are the ones nvdisasm ends a line with a bare `;` for (no stall,
/// yield bit clear, no scoreboards, no waits: the padding NOPs and the closing self-branch).
pub fn bare_terminator(w: u128) -> bool {
    let c = Control::of(w);
    c.stall == 0 && !c.yield_ && c.write_sb == 7 && c.read_sb == 7 && c.wait == 0
}

/// The branch target of `w` at `at`, if it is a branch, call or BSSY with a relative target
/// (nvdisasm gives each such target a label).
pub fn target(w: u128, at: u64) -> Option<u64> {
    ctrl::target(w, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bits_read_back_and_replace() {
        // S2R R2, SR_TID.X from ptxas: stall 1, yield bit set, write scoreboard 0, no wait, no
        // reuse.
        let w = 0x000e_2200_0000_2100_0000_0000_0002_7919u128;
        let c = Control::of(w);
        assert_eq!((c.stall, c.yield_), (1, true));
        assert_eq!((c.write_sb, c.read_sb, c.wait, c.reuse), (0, 7, 0, 0));
        assert_eq!(c.put(w), w);
        let other = Control { stall: 15, yield_: true, write_sb: 5, read_sb: 2, wait: 0x3f, reuse: 0xf };
        let moved = other.put(w);
        assert_eq!(Control::of(moved), other);
        assert_eq!(moved & ((1u128 << 105) - 1), w & ((1u128 << 105) - 1));
    }

    #[test]
    fn ptxas_words_print_as_nvdisasm_prints_them() {
        let label = |at: u64| Some(format!("L{at:x}"));
        for (w, sm, text) in [
            (0x000e_2200_0000_2100_0000_0000_0002_7919u128, 86, "S2R R2, SR_TID.X"),
            (0x000f_e200_078e_00ff_0000_0a00_ff01_7624, 86, "IMAD.MOV.U32 R1, RZ, RZ, c[0x0][0x28]"),
            (0x000f_e200_0000_01ff_0000_0004_ff09_7435, 80, "HFMA2.MMA R9, -RZ, RZ, 0, 2.384185791015625e-07"),
            (0x000f_e200_0000_00ff_0000_0044_ff44_723e, 89, "F2FP.F16.F32.PACK_AB R68, RZ, R68"),
            (0x000f_e200_0000_00ff_0000_0044_ff44_723e, 86, "F2FP.PACK_AB R68, RZ, R68"),
            (0x000f_ea00_0380_0000_0000_7140_0000_8947, 86, "@!P0 BRA `(L7150)"),
            (0x000f_e200_0800_0200_0000_0008_0404_789a, 86, "USGXT UR4, UR4, 0x8"),
            (0x000f_e200_0f8e_c03f_0000_00ff_0404_7892, 86, "ULOP3.LUT UR4, UR4, 0xff, URZ, 0xc0, !UPT"),
            (0x000f_e200_0f8f_103f_0000_0007_0c07_7291, 86, "ULEA.HI UR7, UR12, UR7, URZ, 0x2"),
            (0x000f_e400_0380_0000_ffff_ffff_0000_7948, 86, "WARPSYNC 0xffffffff"),
            (0x000f_e400_0800_0000_0000_0001_3f20_7883, 80, "UP2UR UR32, UPR, URZ, 0x1"),
            // Hand-made, as nvdisasm reads them: LDG's complemented predicate operand and L2
            // prefetch size, ATOMG.CAS with an offset.
            (0x000e_a800_0c1e_191b_0000_0008_080a_7981, 86, "LDG.E.LTC64B R10, [R8.64], !P4"),
            (0x000e_a800_0c0e_1910_0000_0008_080a_7981, 86, "LDG.E.EF.LTC64B R10, [R8.64]"),
            (0x000e_a400_001e_e50a_0000_1008_0402_73a9, 86, "ATOMG.E.CAS.64.STRONG.GPU PT, R2, [R4+0x10], R8, R10"),
        ] {
            assert_eq!(print(w, sm, 0, &label).map(|t| t.to_string()).as_deref(), Some(text));
        }
        // Not an architecture of the tables, nor a word they know.
        assert_eq!(print(0x000e_2200_0000_2100_0000_0000_0002_7919, 90, 0, &label), None);
        assert_eq!(print(0, 86, 0, &label), None);
    }

    proptest::proptest! {
        /// Any word prints or is None; nothing panics, and its control bits read back.
        #[test]
        fn any_word_prints_or_is_unknown(lo in proptest::num::u64::ANY, hi in proptest::num::u64::ANY, sm in proptest::sample::select(vec![80u32, 86, 89])) {
            let w = u128::from(hi) << 64 | u128::from(lo);
            let _ = print(w, sm, 0x100, &|at| Some(format!(".L_x_{at}")));
            let _ = print(w, sm, 0, &|_| None);
            proptest::prop_assert_eq!(Control::of(w).put(w), w);
        }
    }
}
