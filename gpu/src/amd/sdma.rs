//! SDMA 6 packets: the copy engine's command stream, as the driver writes it and the simulated
//! GPU decodes it. Every packet starts with a header dword (OP in bits 0..7, SUB_OP in bits
//! 8..15). Facts from Linux's drivers/gpu/drm/amd/amdgpu/sdma_v6_0_0_pkt_open.h (packet layouts)
//! and sdma_v6_0.c (the 4 MiB copies Linux issues, 64-bit fences as two packets).

/// Packet opcodes (SDMA_OP_*).
pub const OP_NOP: u32 = 0;
pub const OP_COPY: u32 = 1;
pub const OP_WRITE: u32 = 2;
pub const OP_FENCE: u32 = 5;
pub const OP_TRAP: u32 = 6;
/// SDMA_SUBOP_COPY_LINEAR.
pub const SUBOP_COPY_LINEAR: u32 = 0;
/// COPY_LINEAR's COUNT field: bytes - 1 in 30 bits.
pub const COPY_COUNT_MASK: u32 = 0x3fff_ffff;
/// The largest copy one packet makes here (Linux's copy_max_bytes for SDMA 6 is 4 MiB).
pub const COPY_MAX: u32 = 4 << 20;
/// FENCE's MTYPE field (bits 16..18): 3 is uncached, what Linux uses.
pub const FENCE_MTYPE_UC: u32 = 3 << 16;

/// An SDMA packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    /// `count` dwords of NOP (a zero dword is a one-dword NOP).
    Nop(u32),
    /// Copies `bytes` (1..=2^30) from `src` to `dst`, both GPU virtual addresses.
    CopyLinear { src: u64, dst: u64, bytes: u32 },
    /// Writes the 32-bit `value` at `addr` (4-byte aligned) once everything before it is done.
    Fence { addr: u64, value: u32 },
    /// Raises an interrupt with `context` (the simulated GPU ignores it: tk polls).
    Trap { context: u32 },
}

impl Packet {
    /// Appends the packet's dwords to `out`.
    pub fn encode(&self, out: &mut Vec<u32>) {
        match self {
            Packet::Nop(n) => out.extend(std::iter::repeat_n(0, *n as usize)),
            Packet::CopyLinear { src, dst, bytes } => out.extend([
                OP_COPY | SUBOP_COPY_LINEAR << 8,
                bytes.saturating_sub(1) & COPY_COUNT_MASK,
                0,
                *src as u32,
                (src >> 32) as u32,
                *dst as u32,
                (dst >> 32) as u32,
            ]),
            Packet::Fence { addr, value } => {
                out.extend([OP_FENCE | FENCE_MTYPE_UC, *addr as u32, (addr >> 32) as u32, *value])
            }
            Packet::Trap { context } => out.extend([OP_TRAP, context & 0x0fff_ffff]),
        }
    }
}

/// Decodes a packet stream; an unknown or truncated packet is an error naming its dword.
pub fn decode(words: &[u32]) -> Result<Vec<Packet>, String> {
    let mut out = Vec::new();
    let mut k = 0;
    while k < words.len() {
        let h = words[k];
        let (op, sub) = (h & 0xff, (h >> 8) & 0xff);
        let need = match (op, sub) {
            (OP_NOP, _) => 1,
            (OP_COPY, SUBOP_COPY_LINEAR) => 7,
            (OP_FENCE, 0) => 4,
            (OP_TRAP, 0) => 2,
            _ => {
                return Err(format!(
                    "dword {k}: SDMA packet op {op} sub-op {sub} (header {h:#010x}) is not one tk's driver sends"
                ));
            }
        };
        let Some(p) = words.get(k..k + need) else {
            return Err(format!("dword {k}: the SDMA packet (op {op}) needs {need} dwords; the ring ends first"));
        };
        let a = |lo: usize| u64::from(p[lo]) | u64::from(p[lo + 1]) << 32;
        out.push(match op {
            OP_NOP => {
                // A burst NOP carries its extra dwords in COUNT (bits 16..29).
                let extra = (h >> 16) & 0x3fff;
                let skip = (extra as usize).min(words.len() - k - 1);
                k += skip;
                Packet::Nop(1 + skip as u32)
            }
            OP_COPY => Packet::CopyLinear { src: a(3), dst: a(5), bytes: (p[1] & COPY_COUNT_MASK) + 1 },
            OP_FENCE => {
                if p[1] & 3 != 0 {
                    return Err(format!("dword {k}: an SDMA fence at {:#x} is not 4-byte aligned", a(1)));
                }
                Packet::Fence { addr: a(1), value: p[3] }
            }
            _ => Packet::Trap { context: p[1] & 0x0fff_ffff },
        });
        k += need;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_round_trip_and_bad_streams_are_named() {
        let ps = vec![
            Packet::CopyLinear { src: 0x2000_0000_1000, dst: 0x1000_0000_0000, bytes: 4 << 20 },
            Packet::Nop(2),
            Packet::Fence { addr: 0x2000_0000_4000, value: 7 },
            Packet::Trap { context: 1 },
        ];
        let mut w = Vec::new();
        for p in &ps {
            p.encode(&mut w);
        }
        // COPY_LINEAR's count is bytes - 1 (pkt_open.h).
        assert_eq!(w[0], 1);
        assert_eq!(w[1], (4 << 20) - 1);
        let back = decode(&w).expect("decodes");
        assert_eq!(back[0], ps[0]);
        assert_eq!(back[3], ps[2]);
        assert!(decode(&[0x0000_0301]).expect_err("unknown").contains("sub-op 3"));
        assert!(decode(&w[..5]).expect_err("truncated").contains("needs 7"));
        assert!(decode(&[5 | 3 << 16, 0x1002, 0, 1]).expect_err("unaligned").contains("4-byte"));
    }
}
