//! PM4 type-3 packets: the driver encodes a launch into them, the simulated command processor
//! decodes them. A packet is `3 << 30 | (dwords after the header - 1) << 16 | opcode << 8`.

use super::regs::*;

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet {
    Nop(u32),
    /// Invalidate caches before a dispatch (ACQUIRE_MEM, gfx11 form: 7 dwords).
    AcquireMem,
    /// Consecutive SH registers from `reg` (a byte address).
    SetShReg {
        reg: u32,
        values: Vec<u32>,
    },
    DispatchDirect {
        x: u32,
        y: u32,
        z: u32,
        initiator: u32,
    },
    /// At the end of the pipe, write `value` (64 bits) to `addr`.
    ReleaseMem {
        addr: u64,
        value: u64,
    },
    /// Copy `bytes` from `src` to `dst` (virtual addresses) with the command processor's DMA.
    DmaData {
        src: u64,
        dst: u64,
        bytes: u32,
    },
}

/// The most bytes one DMA_DATA packet copies (its byte count is 26 bits).
pub const DMA_MAX: u32 = (1 << 26) - 1;

pub fn header(op: u32, body: usize) -> u32 {
    3 << 30 | ((body as u32 - 1) & 0x3fff) << 16 | op << 8
}

impl Packet {
    pub fn encode(&self, out: &mut Vec<u32>) {
        match self {
            Packet::Nop(n) => {
                out.push(header(PKT3_NOP, (*n as usize).max(1)));
                out.extend(std::iter::repeat_n(0, (*n as usize).max(1)));
            }
            Packet::AcquireMem => {
                // coher_cntl, size lo/hi (all), base lo/hi, poll interval, gcr_cntl.
                out.extend([header(PKT3_ACQUIRE_MEM, 7), 0, 0xffff_ffff, 0xff_ffff, 0, 0, 10, 0]);
            }
            Packet::SetShReg { reg, values } => {
                out.push(header(PKT3_SET_SH_REG, values.len() + 1));
                out.push(reg.wrapping_sub(SH_REG_BASE) / 4);
                out.extend_from_slice(values);
            }
            Packet::DispatchDirect { x, y, z, initiator } => {
                out.extend([header(PKT3_DISPATCH_DIRECT, 4), *x, *y, *z, *initiator]);
            }
            Packet::DmaData { src, dst, bytes } => {
                // control: CP_SYNC (bit 31), source and destination are addresses (sel 0).
                out.extend([
                    header(PKT3_DMA_DATA, 6),
                    1 << 31,
                    *src as u32,
                    (src >> 32) as u32,
                    *dst as u32,
                    (dst >> 32) as u32,
                    bytes & DMA_MAX,
                ]);
            }
            Packet::ReleaseMem { addr, value } => {
                // event (end-of-pipe timestamp), data_sel = 2 (64-bit value) in bits 29..32,
                // address lo/hi, data lo/hi, interrupt context.
                out.extend([
                    header(PKT3_RELEASE_MEM, 7),
                    0x14 | 5 << 8,
                    2 << 29,
                    *addr as u32,
                    (addr >> 32) as u32,
                    *value as u32,
                    (value >> 32) as u32,
                    0,
                ]);
            }
        }
    }
}

/// Decodes the packets in `words`. Anything else (another packet type, an opcode the simulated
/// GPU does not know, a cut-off packet) is an error naming it.
pub fn decode(words: &[u32]) -> Result<Vec<Packet>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let h = words[i];
        if h >> 30 != 3 {
            return Err(format!("dword {i}: {h:#010x} is a type-{} packet; only type-3 packets are accepted", h >> 30));
        }
        let op = (h >> 8) & 0xff;
        let n = ((h >> 16) & 0x3fff) as usize + 1;
        let body = words.get(i + 1..i + 1 + n).ok_or(format!("dword {i}: packet {op:#x} is cut off"))?;
        let w64 = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        out.push(match op {
            PKT3_NOP => Packet::Nop(n as u32),
            PKT3_ACQUIRE_MEM if n == 7 => Packet::AcquireMem,
            PKT3_SET_SH_REG if n >= 2 => {
                Packet::SetShReg { reg: SH_REG_BASE.wrapping_add(body[0].wrapping_mul(4)), values: body[1..].to_vec() }
            }
            PKT3_DISPATCH_DIRECT if n == 4 => {
                Packet::DispatchDirect { x: body[0], y: body[1], z: body[2], initiator: body[3] }
            }
            PKT3_DMA_DATA if n == 6 => {
                if body[0] & (3 << 29 | 3 << 20) != 0 {
                    return Err(format!("dword {i}: DMA_DATA with a source or destination that is not an address"));
                }
                Packet::DmaData { src: w64(body[1], body[2]), dst: w64(body[3], body[4]), bytes: body[5] & DMA_MAX }
            }
            PKT3_RELEASE_MEM if n == 7 => {
                if body[1] >> 29 != 2 {
                    return Err(format!(
                        "dword {i}: RELEASE_MEM with data_sel {} (tk's driver writes 64 bits)",
                        body[1] >> 29
                    ));
                }
                Packet::ReleaseMem { addr: w64(body[2], body[3]), value: w64(body[4], body[5]) }
            }
            _ => return Err(format!("dword {i}: unknown PM4 packet: opcode {op:#x} with {n} dwords")),
        });
        i += 1 + n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_type3_layout() {
        // SET_SH_REG with a register offset and two values: 3 dwords of body.
        assert_eq!(header(PKT3_SET_SH_REG, 3), 0xC002_7600);
        assert_eq!(header(PKT3_DISPATCH_DIRECT, 4), 0xC003_1500);
    }

    #[test]
    fn packets_round_trip() {
        let p = vec![
            Packet::AcquireMem,
            Packet::SetShReg { reg: COMPUTE_PGM_LO, values: vec![0x1234, 0] },
            Packet::DispatchDirect { x: 7, y: 1, z: 1, initiator: 1 },
            Packet::ReleaseMem { addr: 0x1_2345_6780, value: 42 },
            Packet::DmaData { src: 0x10_0000_0000, dst: 0x20_0000_1000, bytes: 1 << 20 },
            Packet::Nop(3),
        ];
        let mut w = Vec::new();
        for x in &p {
            x.encode(&mut w);
        }
        // COMPUTE_PGM_LO is SH register 0x20c.
        assert_eq!(w[9], 0x20c);
        assert_eq!(decode(&w).expect("decodes"), p);
    }

    #[test]
    fn unknown_and_cut_off_packets_are_named() {
        let e = decode(&[header(0x99, 1), 0]).expect_err("unknown");
        assert!(e.contains("opcode 0x99"), "{e}");
        let e = decode(&[header(PKT3_DISPATCH_DIRECT, 4), 1, 1]).expect_err("cut off");
        assert!(e.contains("cut off"), "{e}");
        let e = decode(&[0x8000_0000]).expect_err("type 2");
        assert!(e.contains("type-2"), "{e}");
    }
}
