//! tk's loader of relocatable objects: maps an object's sections into executable memory,
//! applies its relocations and returns the addresses of its symbols. It handles what Cranelift
//! emits for tk's kernels and what LLVM emits in the large code model without PIC (the CPU's
//! LLVM tier): absolute 64-bit relocations (calls to helpers and libcalls, constant pools, on
//! x86_64 and aarch64), PC-relative 32- and 64-bit data and x86_64 displacements, and on
//! aarch64 the MOVZ/MOVK address groups (`R_AARCH64_MOVW_UABS_G*`) and B/BL branches
//! (`R_AARCH64_CALL26`, `JUMP26`, Mach-O `BRANCH26`), which reach a libcall through a veneer the
//! loader writes after the code. Anything else is an error, never a guess: the kernel cache then
//! compiles afresh, and the LLVM tier keeps Cranelift's code.
use memmap2::{Mmap, MmapMut};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget, SectionKind};
use std::collections::HashMap;

#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot load object: {0}")]
pub struct LoadError(pub String);

/// Loaded code: executable memory and the addresses of the object's defined symbols.
pub struct LoadedCode {
    _mem: Mmap,
    symbols: HashMap<String, usize>,
    sizes: HashMap<String, u64>,
}

impl LoadedCode {
    /// The address of a defined symbol (without the Mach-O leading underscore).
    pub fn symbol(&self, name: &str) -> Option<*const u8> {
        self.symbols.get(name).map(|a| *a as *const u8)
    }

    /// Names a loaded function `label` for Linux `perf` (with `TK_PERF_MAP=1`; see [`perf_map`]).
    pub fn name_for_profilers(&self, symbol: &str, label: &str) {
        if let (Some(a), Some(n)) = (self.symbols.get(symbol), self.sizes.get(symbol)) {
            perf_map(*a, *n, label);
        }
    }
}

fn err<T>(m: impl Into<String>) -> Result<T, LoadError> {
    Err(LoadError(m.into()))
}

/// C library functions Cranelift may call for float operations the target lacks, and the memory
/// functions LLVM calls for loops that fill or copy memory (the LLVM tier).
mod libcalls {
    unsafe extern "C" {
        pub fn memset(d: *mut u8, c: i32, n: usize) -> *mut u8;
        pub fn memcpy(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        pub fn memmove(d: *mut u8, s: *const u8, n: usize) -> *mut u8;
        pub fn fmaf(a: f32, b: f32, c: f32) -> f32;
        pub fn fma(a: f64, b: f64, c: f64) -> f64;
        pub fn floorf(a: f32) -> f32;
        pub fn floor(a: f64) -> f64;
        pub fn ceilf(a: f32) -> f32;
        pub fn ceil(a: f64) -> f64;
        pub fn truncf(a: f32) -> f32;
        pub fn trunc(a: f64) -> f64;
        pub fn nearbyintf(a: f32) -> f32;
        pub fn nearbyint(a: f64) -> f64;
    }
}

/// Resolves the undefined symbols of kernel objects: tk's helpers and the C libcalls.
pub fn resolve(name: &str) -> Option<usize> {
    if let Some(p) = tk_abi::helpers::address(name) {
        return Some(p as usize);
    }
    let p = match name {
        "memset" => libcalls::memset as *const u8,
        "memcpy" => libcalls::memcpy as *const u8,
        "memmove" => libcalls::memmove as *const u8,
        "fmaf" => libcalls::fmaf as *const u8,
        "fma" => libcalls::fma as *const u8,
        "floorf" => libcalls::floorf as *const u8,
        "floor" => libcalls::floor as *const u8,
        "ceilf" => libcalls::ceilf as *const u8,
        "ceil" => libcalls::ceil as *const u8,
        "truncf" => libcalls::truncf as *const u8,
        "trunc" => libcalls::trunc as *const u8,
        "nearbyintf" => libcalls::nearbyintf as *const u8,
        "nearbyint" => libcalls::nearbyint as *const u8,
        _ => return None,
    };
    Some(p as usize)
}

/// With `TK_PERF_MAP=1`, appends a loaded function to `/tmp/perf-<pid>.map`, the file Linux
/// `perf` reads to name code outside any ELF file (`perf report` then shows `tk_k7` and so on).
/// Best effort: a profiling aid, so a failed write is ignored.
pub fn perf_map(addr: usize, size: u64, name: &str) {
    if std::env::var_os("TK_PERF_MAP").is_none_or(|v| v != "1") || size == 0 {
        return;
    }
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("perf-{}.map", std::process::id()));
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{addr:x} {size:x} {name}");
    }
}

/// Loads an object built for this machine.
pub fn load(bytes: &[u8], resolve: &dyn Fn(&str) -> Option<usize>) -> Result<LoadedCode, LoadError> {
    let host = if cfg!(target_arch = "x86_64") {
        object::Architecture::X86_64
    } else if cfg!(target_arch = "aarch64") {
        object::Architecture::Aarch64
    } else {
        return err("this machine's architecture has no loader");
    };
    let Linked { mem, symbols, sizes } = link(bytes, host, resolve)?;
    let mem = mem.make_exec().map_err(|e| LoadError(format!("making the code executable: {e}")))?;
    // SAFETY: the range is the mapping just written; nothing executes it yet.
    unsafe {
        icache::clear_cache(mem.as_ptr().cast(), mem.len())
            .map_err(|e| LoadError(format!("flushing the icache: {e}")))?;
    }
    icache::pipeline_flush_mt().map_err(|e| LoadError(format!("flushing the pipeline: {e}")))?;
    Ok(LoadedCode { _mem: mem, symbols, sizes })
}

/// Links an object for `arch` (this machine's or another) without running it: whether [`load`]
/// would take it on a machine of that architecture. Bundles check the objects they carry for
/// other machines with it.
pub fn check(bytes: &[u8], arch: object::Architecture) -> Result<(), LoadError> {
    link(bytes, arch, &resolve).map(|_| ())
}

/// An object laid out in writable memory with its relocations applied: what [`load`] makes
/// executable.
struct Linked {
    mem: MmapMut,
    symbols: HashMap<String, usize>,
    sizes: HashMap<String, u64>,
}

/// AArch64 instruction words the loader writes, from the Arm Architecture Reference Manual (A64
/// encodings): `LDR X16, #8` (LDR literal, 64-bit: `0x58000000 | imm19 << 5 | Rt`, imm19 = 8 / 4,
/// Rt = 16) and `BR X16` (`0xD61F0000 | Rn << 5`). A veneer is these two words followed by the
/// 64-bit address to branch to: X16 (IP0) is the register the AArch64 procedure call standard
/// lets veneers clobber between a call and its callee.
const A64_LDR_X16_PC8: u32 = 0x5800_0050;
const A64_BR_X16: u32 = 0xD61F_0200;
const VENEER_BYTES: usize = 16;

/// How far a B or BL instruction reaches: a signed 26-bit count of 4-byte words (+-128 MiB).
const A64_BRANCH_REACH: i64 = 1 << 27;

/// Whether a relocation is an AArch64 B/BL branch (ELF `R_AARCH64_CALL26` and `R_AARCH64_JUMP26`,
/// Mach-O `ARM64_RELOC_BRANCH26`).
fn is_a64_branch(r: &object::Relocation) -> bool {
    (r.encoding() == object::RelocationEncoding::AArch64Call && r.size() == 26)
        || matches!(
            r.flags(),
            RelocationFlags::Elf { r_type: object::elf::R_AARCH64_CALL26 | object::elf::R_AARCH64_JUMP26 }
        )
}

fn read_u32(mem: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&mem[at..at + 4]);
    u32::from_le_bytes(w)
}

fn write_u32(mem: &mut [u8], at: usize, v: u32) {
    mem[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Lays out and relocates an object for `arch` in writable memory. Apart from making it
/// executable, this is all of [`load`], and it runs on any host (so the AArch64 relocations are
/// checked on x86_64 too).
fn link(
    bytes: &[u8],
    arch: object::Architecture,
    resolve: &dyn Fn(&str) -> Option<usize>,
) -> Result<Linked, LoadError> {
    let obj = object::File::parse(bytes).map_err(|e| LoadError(e.to_string()))?;
    if obj.architecture() != arch {
        return err(format!("the object is for {:?}, this machine is {arch:?}", obj.architecture()));
    }
    let a64 = arch == object::Architecture::Aarch64;
    // Lay out every allocated section.
    let mut offsets: HashMap<object::SectionIndex, usize> = HashMap::new();
    let mut size = 0usize;
    let mut branches = 0usize;
    for s in obj.sections() {
        if !matches!(
            s.kind(),
            SectionKind::Text
                | SectionKind::Data
                | SectionKind::ReadOnlyData
                | SectionKind::ReadOnlyString
                | SectionKind::UninitializedData
                | SectionKind::ReadOnlyDataWithRel
        ) {
            continue;
        }
        let align = s.align().max(1) as usize;
        size = size.next_multiple_of(align);
        offsets.insert(s.index(), size);
        size += s.size() as usize;
        if a64 {
            branches += s.relocations().filter(|(_, r)| is_a64_branch(r)).count();
        }
    }
    // After the sections, room for one veneer per AArch64 branch: a branch to a function outside
    // the object (a libcall such as `memset`) is usually beyond a BL's reach from memory the
    // loader maps, so it goes through a veneer next to the code.
    size = size.next_multiple_of(8);
    let veneers = size;
    size += branches * VENEER_BYTES;
    let mut mem = MmapMut::map_anon(size.max(1)).map_err(|e| LoadError(format!("mapping {size} bytes: {e}")))?;
    let base = mem.as_ptr() as usize;
    for s in obj.sections() {
        let Some(&off) = offsets.get(&s.index()) else { continue };
        if s.kind() == SectionKind::UninitializedData {
            continue;
        }
        let data = s.data().map_err(|e| LoadError(e.to_string()))?;
        mem[off..off + data.len()].copy_from_slice(data);
    }
    let symbol_addr = |idx: object::SymbolIndex| -> Result<usize, LoadError> {
        let sym = obj.symbol_by_index(idx).map_err(|e| LoadError(e.to_string()))?;
        if sym.is_undefined() {
            let name = sym.name().map_err(|e| LoadError(e.to_string()))?;
            let name = name.strip_prefix('_').filter(|_| obj.format() == object::BinaryFormat::MachO).unwrap_or(name);
            return resolve(name).ok_or(LoadError(format!("undefined symbol `{name}`")));
        }
        match sym.section_index() {
            Some(si) => match offsets.get(&si) {
                Some(off) => Ok(base + off + sym.address() as usize),
                None => err("a symbol in a section that is not loaded"),
            },
            None => err("a symbol without a section"),
        }
    };
    let mut next_veneer = veneers;
    for s in obj.sections() {
        let Some(&soff) = offsets.get(&s.index()) else { continue };
        for (at, r) in s.relocations() {
            let target = match r.target() {
                RelocationTarget::Symbol(i) => symbol_addr(i)?,
                RelocationTarget::Section(si) => match offsets.get(&si) {
                    Some(o) => base + o,
                    None => return err("a relocation against a section that is not loaded"),
                },
                _ => return err("an unsupported relocation target"),
            };
            let place = soff + at as usize;
            let width = if a64 && is_a64_branch(&r) { 4 } else { usize::from(r.size() / 8) };
            if place.checked_add(width.max(4)).is_none_or(|end| end > veneers) {
                return err("a relocation outside its section");
            }
            let value = (target as i64).wrapping_add(r.addend());
            let pc = (base + place) as i64;
            if a64 && is_a64_branch(&r) {
                // B/BL: imm26 = (S + A - P) / 4 (ELF for the Arm 64-bit Architecture, 5.7.8).
                let mut rel = value.wrapping_sub(pc);
                if rel % 4 != 0 || !(-A64_BRANCH_REACH..A64_BRANCH_REACH).contains(&rel) {
                    let v = next_veneer;
                    next_veneer += VENEER_BYTES;
                    write_u32(&mut mem, v, A64_LDR_X16_PC8);
                    write_u32(&mut mem, v + 4, A64_BR_X16);
                    mem[v + 8..v + 16].copy_from_slice(&(value as u64).to_le_bytes());
                    rel = (base + v) as i64 - pc;
                    if !(-A64_BRANCH_REACH..A64_BRANCH_REACH).contains(&rel) {
                        return err("a branch beyond the reach of its veneer (an object over 128 MiB)");
                    }
                }
                let insn = read_u32(&mem, place);
                write_u32(&mut mem, place, (insn & 0xFC00_0000) | ((rel >> 2) as u32 & 0x03FF_FFFF));
                continue;
            }
            // MOVZ/MOVK of 16 bits of an absolute address, bits 16n..16n+15 into the
            // instruction's imm16 (bits 5..20); the checked forms require the address to fit in
            // 16(n+1) bits (ELF for the Arm 64-bit Architecture, 5.7.7, "Group relocations to
            // create a 16-, 32-, 48-, or 64-bit unsigned data value").
            let movw = match r.flags() {
                RelocationFlags::Elf { r_type } if a64 => movw_group(r_type),
                _ => None,
            };
            if let Some((group, checked)) = movw {
                let v = value as u64;
                if checked && group < 3 && v >> (16 * (group + 1)) != 0 {
                    return err(format!("an address that does not fit a MOVW group {group} relocation"));
                }
                let imm = ((v >> (16 * group)) & 0xFFFF) as u32;
                let insn = read_u32(&mem, place);
                write_u32(&mut mem, place, (insn & !(0xFFFF << 5)) | (imm << 5));
                continue;
            }
            match (r.kind(), r.size(), r.flags()) {
                (object::RelocationKind::Absolute, 64, _) => {
                    mem[place..place + 8].copy_from_slice(&(value as u64).to_le_bytes());
                }
                (object::RelocationKind::Relative | object::RelocationKind::PltRelative, 32, _) => {
                    let v = i32::try_from(value - pc)
                        .map_err(|_| LoadError("a PC-relative relocation out of range".into()))?;
                    mem[place..place + 4].copy_from_slice(&v.to_le_bytes());
                }
                (object::RelocationKind::Relative, 64, _) => {
                    mem[place..place + 8].copy_from_slice(&(value - pc).to_le_bytes());
                }
                (k, bits, RelocationFlags::Elf { r_type }) => {
                    return err(format!("unsupported relocation {k:?} ({bits} bits, ELF type {r_type})"));
                }
                (k, bits, _) => return err(format!("unsupported relocation {k:?} ({bits} bits)")),
            }
        }
    }
    let mut symbols = HashMap::new();
    let mut sizes = HashMap::new();
    for sym in obj.symbols() {
        if sym.is_definition()
            && let (Ok(name), Some(si)) = (sym.name(), sym.section_index())
            && let Some(off) = offsets.get(&si)
        {
            let name = name.strip_prefix('_').filter(|_| obj.format() == object::BinaryFormat::MachO).unwrap_or(name);
            symbols.insert(name.to_string(), base + off + sym.address() as usize);
            sizes.insert(name.to_string(), sym.size());
        }
    }
    Ok(Linked { mem, symbols, sizes })
}

/// The group (0 to 3) of an ELF `R_AARCH64_MOVW_UABS_G*` relocation and whether it is checked
/// for overflow (the `_NC` forms are not; G3 has nothing left to overflow).
fn movw_group(r_type: u32) -> Option<(u32, bool)> {
    use object::elf::*;
    match r_type {
        R_AARCH64_MOVW_UABS_G0 => Some((0, true)),
        R_AARCH64_MOVW_UABS_G0_NC => Some((0, false)),
        R_AARCH64_MOVW_UABS_G1 => Some((1, true)),
        R_AARCH64_MOVW_UABS_G1_NC => Some((1, false)),
        R_AARCH64_MOVW_UABS_G2 => Some((2, true)),
        R_AARCH64_MOVW_UABS_G2_NC => Some((2, false)),
        R_AARCH64_MOVW_UABS_G3 => Some((3, false)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::write::{Object as Writer, Relocation, StandardSegment, Symbol, SymbolSection};
    use object::{Architecture, BinaryFormat, Endianness, SymbolFlags, SymbolKind, SymbolScope, elf};

    /// Far from any mapping the loader makes: a branch to it needs a veneer.
    const FAR: usize = 0x1234_5678_9abc_def0;

    /// An AArch64 ELF object whose `.text` is `words`, with a function `f` at 0, a local label
    /// `l` at `local` and the relocations `(offset, r_type, to_local)` (else to the undefined
    /// `memset`).
    fn a64_object(words: &[u32], local: u64, relocs: &[(u64, u32, bool)]) -> Vec<u8> {
        let mut o = Writer::new(BinaryFormat::Elf, Architecture::Aarch64, Endianness::Little);
        let text = o.add_section(o.segment_name(StandardSegment::Text).to_vec(), b".text".to_vec(), SectionKind::Text);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        o.append_section_data(text, &bytes, 4);
        let sym = |name: &str, value, section| Symbol {
            name: name.as_bytes().to_vec(),
            value,
            size: 0,
            kind: SymbolKind::Text,
            scope: SymbolScope::Linkage,
            weak: false,
            section,
            flags: SymbolFlags::None,
        };
        o.add_symbol(sym("f", 0, SymbolSection::Section(text)));
        let l = o.add_symbol(sym("l", local, SymbolSection::Section(text)));
        let ext = o.add_symbol(sym("memset", 0, SymbolSection::Undefined));
        for &(offset, r_type, to_local) in relocs {
            let symbol = if to_local { l } else { ext };
            let flags = RelocationFlags::Elf { r_type };
            o.add_relocation(text, Relocation { offset, symbol, addend: 0, flags }).expect("a relocation");
        }
        o.write().expect("the object writes")
    }

    fn link_a64(bytes: &[u8]) -> Result<Linked, LoadError> {
        link(bytes, Architecture::Aarch64, &|n| (n == "memset").then_some(FAR))
    }

    fn word(l: &Linked, at: usize) -> u32 {
        read_u32(&l.mem, at)
    }

    #[test]
    fn a64_calls_to_far_functions_go_through_veneers() {
        // BL memset; B l; BL memset; NOP; l: RET
        let words = [0x9400_0000, 0x1400_0000, 0x9400_0000, 0xD503_201F, 0xD65F_03C0];
        let obj = a64_object(
            &words,
            16,
            &[(0, elf::R_AARCH64_CALL26, false), (4, elf::R_AARCH64_JUMP26, true), (8, elf::R_AARCH64_CALL26, false)],
        );
        let l = link_a64(&obj).expect("links");
        let base = l.mem.as_ptr() as usize;
        assert_eq!(l.symbols["f"], base);
        // B l: +12 bytes is 3 words, the opcode kept.
        assert_eq!(word(&l, 4), 0x1400_0003);
        for at in [0usize, 8] {
            let insn = word(&l, at);
            assert_eq!(insn & 0xFC00_0000, 0x9400_0000, "still a BL");
            // Sign-extend imm26 and follow it to the veneer.
            let off = (((insn & 0x03FF_FFFF) << 6) as i32 >> 6) as i64 * 4;
            let v = (at as i64 + off) as usize;
            assert!(v >= 20 && v + VENEER_BYTES <= l.mem.len(), "the veneer lies after the code");
            assert_eq!(word(&l, v), A64_LDR_X16_PC8);
            assert_eq!(word(&l, v + 4), A64_BR_X16);
            assert_eq!(u64::from_le_bytes(l.mem[v + 8..v + 16].try_into().expect("8 bytes")), FAR as u64);
        }
    }

    #[test]
    fn a64_movz_movk_build_an_absolute_address() {
        // MOVZ X0, #0; MOVK X0, #0, LSL 16; MOVK X0, #0, LSL 32; MOVK X0, #0, LSL 48; RET
        let words = [0xD280_0000, 0xF2A0_0000, 0xF2C0_0000, 0xF2E0_0000, 0xD65F_03C0];
        let obj = a64_object(
            &words,
            16,
            &[
                (0, elf::R_AARCH64_MOVW_UABS_G0_NC, false),
                (4, elf::R_AARCH64_MOVW_UABS_G1_NC, false),
                (8, elf::R_AARCH64_MOVW_UABS_G2_NC, false),
                (12, elf::R_AARCH64_MOVW_UABS_G3, false),
            ],
        );
        let l = link_a64(&obj).expect("links");
        let mut addr = 0u64;
        for (i, base) in [0xD280_0000u32, 0xF2A0_0000, 0xF2C0_0000, 0xF2E0_0000].into_iter().enumerate() {
            let insn = word(&l, 4 * i);
            assert_eq!(insn & !(0xFFFF << 5), base, "opcode, shift and register kept");
            addr |= u64::from((insn >> 5) & 0xFFFF) << (16 * i);
        }
        assert_eq!(addr, FAR as u64);
        // The checked G0 form refuses an address wider than 16 bits.
        let obj = a64_object(&words, 16, &[(0, elf::R_AARCH64_MOVW_UABS_G0, false)]);
        let e = link_a64(&obj).err().expect("an error");
        assert!(e.0.contains("does not fit a MOVW group 0"), "{e}");
    }

    #[test]
    fn a64_relocations_it_does_not_know_are_errors() {
        let words = [0x9000_0000, 0xD65F_03C0];
        let obj = a64_object(&words, 4, &[(0, elf::R_AARCH64_ADR_PREL_PG_HI21, true)]);
        let e = link_a64(&obj).err().expect("an error");
        assert!(e.0.contains("unsupported relocation") && e.0.contains("ELF type 275"), "{e}");
        // A place past the end of the section is an error, not a write out of bounds.
        let obj = a64_object(&words, 4, &[(8, elf::R_AARCH64_CALL26, false)]);
        let e = link_a64(&obj).err().expect("an error");
        assert!(e.0.contains("outside its section"), "{e}");
        // An object for another machine.
        let e = link(&obj, Architecture::X86_64, &|_| None).err().expect("an error");
        assert!(e.0.contains("is for Aarch64"), "{e}");
    }
}
