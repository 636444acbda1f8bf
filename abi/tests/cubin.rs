//! The cubin reader on real cubins of both ELF layouts, and on hostile ones.
//!
//! tests/fixtures/cubin holds `scale.ptx` (two kernels: `scale` with four parameters, 512 bytes
//! of shared memory, a barrier and a global variable; `empty` with nothing) assembled by ptxas
//! 12.9 (ELF ABI version 7) and by ptxas 13.0 (ABI version 8). The expected facts are those
//! `ptxas -v` printed for each (registers, barriers, shared and constant bytes) and those the
//! PTX declares (the parameters).

use proptest::prelude::*;
use std::path::PathBuf;
use tk_abi::cubin::{self, CubinError, Layout, Param};

fn fixture(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cubin").join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// (file, layout, sm, registers of `scale`, shared bytes of `scale`, parameter base, exits of `scale`)
type Case = (&'static str, Layout, u32, u32, u64, u32, [u32; 2]);
const CASES: [Case; 5] = [
    ("scale.sm_86.cuda12.cubin", Layout::V1, 86, 12, 512, 0x160, [0xf0, 0x1f0]),
    ("scale.sm_89.cuda12.cubin", Layout::V1, 89, 12, 512, 0x160, [0xf0, 0x1f0]),
    ("scale.sm_86.cuda13.cubin", Layout::V2, 86, 12, 512, 0x160, [0xf0, 0x1f0]),
    ("scale.sm_89.cuda13.cubin", Layout::V2, 89, 12, 512, 0x160, [0xf0, 0x1f0]),
    // sm_90's section counts 1 KiB of shared memory the hardware reserves beside the kernel's 512.
    ("scale.sm_90.cuda13.cubin", Layout::V2, 90, 14, 1536, 0x210, [0x150, 0x200]),
];

#[test]
fn both_layouts_read_the_same_kernels() {
    for (file, layout, sm, regs, shared, base, exits) in CASES {
        let c = cubin::read(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((c.layout, c.sm), (layout, sm), "{file}");
        let names: Vec<&str> = c.kernels.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["empty", "scale"], "{file}");

        let k = c.kernel("scale").expect("scale");
        assert!(k.entry, "{file}");
        assert_eq!(k.code.len(), 768, "{file}");
        assert_eq!(k.registers, regs, "{file}");
        assert_eq!(k.barriers, 1, "{file}");
        assert_eq!(k.shared_bytes, shared, "{file}");
        assert_eq!((k.param_base, k.param_bytes), (base, 24), "{file}");
        let want = [
            Param { ordinal: 0, offset: 0, size: 8 },
            Param { ordinal: 1, offset: 8, size: 8 },
            Param { ordinal: 2, offset: 16, size: 4 },
            Param { ordinal: 3, offset: 20, size: 4 },
        ];
        assert_eq!(k.params, want, "{file}");
        assert_eq!(k.exit_offsets, exits, "{file}");
        assert!(k.constant0.len() as u32 >= base + 24, "{file}");
        if sm < 90 {
            // ptxas -v: "376 bytes cmem[0]".
            assert_eq!(k.constant0.len(), 376, "{file}");
        }
        // Every exit offset is an EXIT instruction: the same opcode field (bits 0-11).
        let op = |o: u32| u16::from_le_bytes([k.code[o as usize], k.code[o as usize + 1]]) & 0xfff;
        assert_eq!(op(exits[0]), op(exits[1]), "{file}");

        let e = c.kernel("empty").expect("empty");
        assert!(e.entry && e.params.is_empty() && e.param_bytes == 0, "{file}");
        assert_eq!((e.registers, e.barriers, e.shared_bytes), (4, 0, 0), "{file}");
        assert_eq!(e.exit_offsets, [0x10], "{file}");
        assert_eq!(op(exits[0]), u16::from_le_bytes([e.code[0x10], e.code[0x11]]) & 0xfff, "{file}");

        // The global variable's address reaches the code through constant bank 4.
        assert!(
            c.relocations.iter().any(|(s, r)| s == ".nv.constant4" && r.symbol == "launches"),
            "{file}: {:?}",
            c.relocations
        );
        // The header text names what the launch needs.
        let shown = k.to_string();
        assert!(shown.contains(&format!("{regs} registers, 1 barriers, {shared} bytes of shared memory")), "{shown}");
        assert!(shown.contains(&format!("parameters: 24 bytes at c[0x0][0x{base:x}]")), "{shown}");
    }
}

#[test]
fn what_is_not_a_cubin_says_so() {
    assert!(matches!(cubin::read(b"hello"), Err(CubinError::NotElf(_))));
    assert!(matches!(cubin::read(&[]), Err(CubinError::NotElf(_))));
    // Another machine: patch e_machine (offset 18) of a real cubin.
    let mut b = fixture("scale.sm_86.cuda12.cubin");
    b[18] = 62;
    b[19] = 0;
    let e = cubin::read(&b).expect_err("x86-64");
    assert!(e.to_string().contains("not 190"), "{e}");
    // An ABI version that is neither layout.
    let mut b = fixture("scale.sm_86.cuda12.cubin");
    b[8] = 9;
    let e = cubin::read(&b).expect_err("ABI 9");
    assert!(e.to_string().contains("unknown ELF ABI version 9"), "{e}");
}

#[test]
fn attribute_records_are_checked() {
    // Format 4 claiming more bytes than the section has.
    let e = cubin::parse_info(".nv.info.k", &[4, 0x1c, 8, 0, 0x10, 0, 0, 0]).expect_err("short");
    assert!(e.to_string().contains(".nv.info.k: attribute 0x1c at byte 0 claims 8 bytes"), "{e}");
    let e = cubin::parse_info(".nv.info.k", &[7, 0x1c, 0, 0]).expect_err("format 7");
    assert!(e.to_string().contains("unknown record format 7"), "{e}");
    let e = cubin::parse_info(".nv.info.k", &[3, 0x1b]).expect_err("truncated");
    assert!(e.to_string().contains("truncated"), "{e}");
    let a = cubin::parse_info("x", &[3, 0x1b, 0xff, 0, 1, 0x35, 0, 0, 2, 0x4c, 1, 0]).expect("valid");
    let shown: Vec<String> = a.iter().map(ToString::to_string).collect();
    assert_eq!(shown, ["MAXREG_COUNT 0xff", "0x35", "0x4c 1"]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Truncated cubins and cubins with bytes overwritten are read or refused, never a panic.
    #[test]
    fn damaged_cubins_never_panic(which in 0usize..5, cut in 0usize..7000, edits in prop::collection::vec((0usize..7000, any::<u8>()), 0..12)) {
        let mut b = fixture(CASES[which].0);
        for (at, v) in edits {
            let n = b.len();
            b[at % n] = v;
        }
        b.truncate(cut.min(b.len()));
        let _ = cubin::read(&b);
    }
}
