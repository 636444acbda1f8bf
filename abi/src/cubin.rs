//! NVIDIA's side of code objects: the reader of cubins (the ELF files ptxas writes), which
//! `tk disasm`, the SASS emulator and the NVIDIA userspace driver's loader share.
//!
//! A cubin holds, per kernel `K`: `.text.K` (the SASS), `.nv.info.K` (attribute records: the
//! parameter bank, each parameter's offset and size, the exit offsets, ...), `.nv.constant0.K`
//! (constant bank 0: the driver's area, then the parameters) and, when the kernel declares shared
//! memory, `.nv.shared.K` (NOBITS); `.nv.info` holds per-function records (register count, frame
//! and stack sizes) keyed by symbol index, and `.rel.*`/`.rela.*` sections relocate the code and
//! the constant banks.
//!
//! Facts from public sources: EM_CUDA = 190, the two ELF header layouts (ABI version 7 keeps the
//! SM number in the low byte of `e_flags`, ABI version 8, written by CUDA 12.8 and later, in
//! bits 8-15) and `EF_CUDA_64BIT_ADDRESS` are in LLVM's `llvm/BinaryFormat/ELF.h`; the record
//! layout of `.nv.info` (format byte, attribute byte, 16-bit size or value, payload) and the
//! attribute numbers are those `cuobjdump -elf` prints, also listed in cuda-gdb's and tinygrad's
//! cubin code; `sh_info` of `.text.K` = registers << 24 | symbol and the barrier count in bits
//! 20-26 of its flags (CUDA 12) are from ../shared/notes/sass.md. Observed on our own fixtures
//! (abi/tests/fixtures/cubin, made by ptxas 12.9 and 13.0): CUDA 13 writes neither the register
//! count into `sh_info` nor the barrier count into the flags; it records the barriers in
//! attribute 0x4c and the registers only in `.nv.info`'s REGCOUNT.

use object::read::elf::{ElfFile64, FileHeader, SectionHeader, Sym};
use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};
use std::fmt;

/// What is wrong with a file that should be a cubin.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CubinError {
    #[error("not an ELF file: {0}")]
    NotElf(String),
    #[error("not a cubin: {0}")]
    NotCubin(String),
    #[error("{section}: {message}")]
    Malformed { section: String, message: String },
}

fn bad(section: &str, message: impl Into<String>) -> CubinError {
    CubinError::Malformed { section: section.to_string(), message: message.into() }
}

/// The two layouts of a cubin's ELF header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// ELF ABI version 7 (OS/ABI 0x33): the SM number in the low byte of `e_flags`.
    V1,
    /// ELF ABI version 8 (OS/ABI 0x41), CUDA 12.8 and later: the SM number in bits 8-15.
    V2,
}

/// One record of a `.nv.info` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute number (`EIATTR_*`).
    pub attr: u8,
    pub value: AttrValue,
}

/// The value of an attribute, by its format byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttrValue {
    /// Format 1: no value.
    None,
    /// Format 2: a byte (stored in a 16-bit field).
    Byte(u8),
    /// Format 3: a 16-bit value.
    Half(u16),
    /// Format 4: a sized payload.
    Bytes(Vec<u8>),
}

impl Attribute {
    /// The name `cuobjdump -elf` gives the attribute, without its `EIATTR_` prefix, where tk
    /// knows it.
    pub fn name(&self) -> Option<&'static str> {
        Some(match self.attr {
            0x04 => "CTAIDZ_USED",
            0x05 => "MAX_THREADS",
            0x0a => "PARAM_CBANK",
            0x0f => "EXTERNS",
            0x10 => "REQNTID",
            0x11 => "FRAME_SIZE",
            0x12 => "MIN_STACK_SIZE",
            0x17 => "KPARAM_INFO",
            0x18 => "SMEM_PARAM_SIZE",
            0x19 => "CBANK_PARAM_SIZE",
            0x1b => "MAXREG_COUNT",
            0x1c => "EXIT_INSTR_OFFSETS",
            0x1d => "S2RCTAID_INSTR_OFFSETS",
            0x1e => "CRS_STACK_SIZE",
            0x23 => "MAX_STACK_SIZE",
            0x28 => "COOP_GROUP_INSTR_OFFSETS",
            0x2f => "REGCOUNT",
            0x31 => "INT_WARP_WIDE_INSTR_OFFSETS",
            0x37 => "CUDA_API_VERSION",
            _ => return None,
        })
    }

    /// The payload's little-endian 32-bit words (format 4 only).
    pub fn words(&self) -> Vec<u32> {
        match &self.value {
            AttrValue::Bytes(b) => b.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            _ => Vec::new(),
        }
    }

    /// A small value: a byte, a half, or the first word of a payload.
    fn scalar(&self) -> Option<u32> {
        match &self.value {
            AttrValue::None => None,
            AttrValue::Byte(b) => Some(u32::from(*b)),
            AttrValue::Half(h) => Some(u32::from(*h)),
            AttrValue::Bytes(_) => self.words().first().copied(),
        }
    }
}

impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}")?,
            None => write!(f, "0x{:02x}", self.attr)?,
        }
        match &self.value {
            AttrValue::None => Ok(()),
            AttrValue::Byte(b) => write!(f, " {b}"),
            AttrValue::Half(h) => write!(f, " 0x{h:x}"),
            AttrValue::Bytes(b) => {
                let words: Vec<String> =
                    b.chunks(4).map(|c| c.iter().rev().map(|x| format!("{x:02x}")).collect::<String>()).collect();
                write!(f, " [{}]", words.join(" "))
            }
        }
    }
}

/// Parses the records of a `.nv.info` section. Every record is aligned to 4 bytes.
pub fn parse_info(section: &str, data: &[u8]) -> Result<Vec<Attribute>, CubinError> {
    let mut out = Vec::new();
    let mut at = 0usize;
    while at < data.len() {
        let head = data.get(at..at + 4).ok_or_else(|| bad(section, format!("a record at byte {at} is truncated")))?;
        let (format, attr, half) = (head[0], head[1], u16::from_le_bytes([head[2], head[3]]));
        at += 4;
        let value = match format {
            1 => AttrValue::None,
            2 => AttrValue::Byte(half as u8),
            3 => AttrValue::Half(half),
            4 => {
                let n = usize::from(half);
                let b = data.get(at..at + n).ok_or_else(|| {
                    bad(section, format!("attribute 0x{attr:02x} at byte {} claims {n} bytes past the end", at - 4))
                })?;
                at += n.next_multiple_of(4);
                AttrValue::Bytes(b.to_vec())
            }
            f => return Err(bad(section, format!("unknown record format {f} at byte {}", at - 4))),
        };
        out.push(Attribute { attr, value });
    }
    Ok(out)
}

/// One kernel parameter, from `KPARAM_INFO`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Param {
    /// The parameter's position in the kernel's signature.
    pub ordinal: u16,
    /// Its byte offset from the start of the parameters in the constant bank.
    pub offset: u16,
    /// Its size in bytes.
    pub size: u16,
}

/// A relocation of a kernel's code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reloc {
    /// Byte offset in the relocated section.
    pub offset: u64,
    /// The relocation type (`R_CUDA_*`), as the ELF file numbers it.
    pub kind: u32,
    /// The symbol it refers to ("" for none).
    pub symbol: String,
    pub addend: i64,
}

/// Everything a cubin says about one function (a kernel, or a device function ptxas kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kernel {
    pub name: String,
    /// Whether it is a kernel entry point (`.entry`), not a device function.
    pub entry: bool,
    /// The SASS: 16 bytes per instruction.
    pub code: Vec<u8>,
    /// Registers per thread.
    pub registers: u32,
    /// Named barriers used.
    pub barriers: u32,
    /// The parameters' offset in constant bank 0 and their total size in bytes.
    pub param_base: u32,
    pub param_bytes: u32,
    /// The parameters, in signature order.
    pub params: Vec<Param>,
    /// Byte offsets of the EXIT instructions in `code`.
    pub exit_offsets: Vec<u32>,
    pub frame_size: u32,
    pub min_stack_size: u32,
    /// `.nv.constant0.K`: the constant bank as the driver initialises it (parameters excluded).
    pub constant0: Vec<u8>,
    /// `.nv.constant2.K`: constants ptxas placed in bank 2 (`c[0x2][...]`), or empty.
    pub constant2: Vec<u8>,
    /// Shared memory the kernel declares, in bytes (`.nv.shared.K`).
    pub shared_bytes: u64,
    /// Relocations of `.text.K`.
    pub relocations: Vec<Reloc>,
    /// Every record of `.nv.info.K`, in order, known or not.
    pub attributes: Vec<Attribute>,
}

/// A cubin, read and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cubin {
    pub layout: Layout,
    /// The SM the code is for (86 for sm_86).
    pub sm: u32,
    /// The functions with code, in section order.
    pub kernels: Vec<Kernel>,
    /// Relocations of the other sections (constant banks, debug frames), by the name of the
    /// section they relocate.
    pub relocations: Vec<(String, Reloc)>,
    /// The function symbols, in symbol-table order: the kernels and the subroutines ptxas
    /// places in a kernel's code (`$__internal_...`, weak).
    pub functions: Vec<Function>,
}

/// A function symbol: where its code starts in a kernel's `.text` section, and its size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// The kernel whose `.text` section holds it.
    pub kernel: String,
    pub offset: u64,
    pub size: u64,
    pub weak: bool,
}

impl Cubin {
    pub fn kernel(&self, name: &str) -> Option<&Kernel> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

const EM_CUDA: u16 = 190;
const EF_CUDA_64BIT_ADDRESS: u32 = 0x400;
const STO_CUDA_ENTRY: u8 = 0x10;

/// Reads a cubin. Anything malformed or truncated is an error naming the section and what is
/// wrong; nothing panics.
pub fn read(bytes: &[u8]) -> Result<Cubin, CubinError> {
    let file = ElfFile64::<object::Endianness>::parse(bytes).map_err(|e| {
        CubinError::NotElf(format!("{e} (a cubin is a 64-bit ELF file, as ptxas and `tk build --target sm_XX` write)"))
    })?;
    let endian = file.endian();
    let header = file.elf_header();
    if header.e_machine(endian) != EM_CUDA {
        return Err(CubinError::NotCubin(format!(
            "its ELF machine is {}, not 190 (NVIDIA CUDA)",
            header.e_machine(endian)
        )));
    }
    let ident = header.e_ident();
    let flags = header.e_flags(endian);
    let (layout, sm) = match ident.abi_version {
        7 => {
            if flags & EF_CUDA_64BIT_ADDRESS == 0 {
                return Err(CubinError::NotCubin("32-bit addressing (tk reads 64-bit cubins only)".into()));
            }
            (Layout::V1, flags & 0xff)
        }
        8 => (Layout::V2, (flags >> 8) & 0xff),
        v => {
            return Err(CubinError::NotCubin(format!(
                "unknown ELF ABI version {v} (7 and 8 are the layouts of CUDA up to 12.x and from 12.8 on)"
            )));
        }
    };
    if sm < 20 {
        return Err(CubinError::NotCubin(format!("e_flags 0x{flags:x} name no SM architecture")));
    }

    // The per-function records of `.nv.info`, keyed by symbol index.
    let mut regcount = std::collections::HashMap::new();
    let mut frame = std::collections::HashMap::new();
    let mut stack = std::collections::HashMap::new();
    if let Some(s) = file.section_by_name(".nv.info") {
        let data = s.data().map_err(|e| bad(".nv.info", e.to_string()))?;
        for a in parse_info(".nv.info", data)? {
            let w = a.words();
            let (Some(&sym), Some(&v)) = (w.first(), w.get(1)) else { continue };
            match a.attr {
                0x2f => regcount.insert(sym, v),
                0x11 => frame.insert(sym, v),
                0x12 => stack.insert(sym, v),
                _ => None,
            };
        }
    }

    let mut kernels = Vec::new();
    let mut relocations = Vec::new();
    for sec in file.sections() {
        let name = sec.name().map_err(|e| bad("the section names", e.to_string()))?;
        let relocs = || -> Result<Vec<Reloc>, CubinError> {
            let mut out = Vec::new();
            for (offset, r) in sec.relocations() {
                let symbol = match r.target() {
                    RelocationTarget::Symbol(i) => file
                        .symbol_by_index(i)
                        .and_then(|s| s.name().map(str::to_string))
                        .map_err(|e| bad(name, format!("a relocation's symbol: {e}")))?,
                    _ => String::new(),
                };
                let kind = match r.flags() {
                    RelocationFlags::Elf { r_type } => r_type,
                    _ => 0,
                };
                out.push(Reloc { offset, kind, symbol, addend: r.addend() });
            }
            Ok(out)
        };
        let Some(k) = name.strip_prefix(".text.") else {
            if sec.relocations().next().is_some() {
                for r in relocs()? {
                    relocations.push((name.to_string(), r));
                }
            }
            continue;
        };
        let code = sec.data().map_err(|e| bad(name, e.to_string()))?;
        if code.len() % 16 != 0 {
            return Err(bad(
                name,
                format!("{} bytes of code is not a whole number of 16-byte instructions", code.len()),
            ));
        }
        let sh = sec.elf_section_header();
        let (sh_info, sh_flags) = (sh.sh_info(endian), sh.sh_flags(endian));
        let sym_index = sh_info & 0xff_ffff;
        let symbol = file
            .symbols()
            .find(|s| s.name() == Ok(k) && s.section_index() == Some(sec.index()))
            .ok_or_else(|| bad(name, format!("no symbol `{k}` names the code")))?;
        let entry = symbol.elf_symbol().st_other() & STO_CUDA_ENTRY != 0;
        let index = symbol.index().0 as u32;
        if layout == Layout::V1 && sym_index != index {
            return Err(bad(name, format!("sh_info names symbol {sym_index}, but `{k}` is symbol {index}")));
        }
        let info_name = format!(".nv.info.{k}");
        let attributes = match file.section_by_name(&info_name) {
            Some(s) => parse_info(&info_name, s.data().map_err(|e| bad(&info_name, e.to_string()))?)?,
            None => Vec::new(),
        };
        let registers = match (regcount.get(&index), layout) {
            (Some(&r), _) => r,
            (None, Layout::V1) => sh_info >> 24,
            (None, Layout::V2) => return Err(bad(".nv.info", format!("no register count for `{k}`"))),
        };
        if layout == Layout::V1 && sh_info >> 24 != 0 && sh_info >> 24 != registers {
            return Err(bad(name, format!("sh_info says {} registers, .nv.info says {registers}", sh_info >> 24)));
        }
        let mut barriers = ((sh_flags >> 20) & 0x7f) as u32;
        let mut param_base = 0;
        let mut param_bytes = 0;
        let mut params = Vec::new();
        let mut exit_offsets = Vec::new();
        for a in &attributes {
            match a.attr {
                0x0a => {
                    // PARAM_CBANK: the bank's section symbol, then offset and size (16 bits each).
                    let w = a.words();
                    let v = w.get(1).ok_or_else(|| bad(&info_name, "PARAM_CBANK is shorter than 8 bytes"))?;
                    param_base = v & 0xffff;
                    param_bytes = v >> 16;
                }
                0x17 => {
                    // KPARAM_INFO: index (32 bits), ordinal and offset (16 bits each), then a word
                    // whose bits 18-31 are the size.
                    let w = a.words();
                    let (Some(&oo), Some(&f)) = (w.get(1), w.get(2)) else {
                        return Err(bad(&info_name, "KPARAM_INFO is shorter than 12 bytes"));
                    };
                    params.push(Param { ordinal: oo as u16, offset: (oo >> 16) as u16, size: (f >> 18) as u16 });
                }
                0x1c => exit_offsets = a.words(),
                0x4c => barriers = barriers.max(a.scalar().unwrap_or(0)),
                _ => {}
            }
        }
        params.sort_by_key(|p| p.ordinal);
        for p in &params {
            if u32::from(p.offset) + u32::from(p.size) > param_bytes {
                return Err(bad(
                    &info_name,
                    format!(
                        "parameter {} ends at byte {} of a {param_bytes}-byte parameter block",
                        p.ordinal,
                        u32::from(p.offset) + u32::from(p.size)
                    ),
                ));
            }
        }
        if let Some(o) = exit_offsets.iter().find(|&&o| o % 16 != 0 || o as usize >= code.len()) {
            return Err(bad(&info_name, format!("an exit offset 0x{o:x} is not an instruction of {name}")));
        }
        let c0_name = format!(".nv.constant0.{k}");
        let constant0 = match file.section_by_name(&c0_name) {
            Some(s) => s.data().map_err(|e| bad(&c0_name, e.to_string()))?.to_vec(),
            None => Vec::new(),
        };
        if param_bytes > 0 && (param_base + param_bytes) as usize > constant0.len() {
            return Err(bad(
                &c0_name,
                format!(
                    "the parameters (bytes 0x{param_base:x}..0x{:x}) lie outside its {} bytes",
                    param_base + param_bytes,
                    constant0.len()
                ),
            ));
        }
        let c2_name = format!(".nv.constant2.{k}");
        let constant2 = match file.section_by_name(&c2_name) {
            Some(s) => s.data().map_err(|e| bad(&c2_name, e.to_string()))?.to_vec(),
            None => Vec::new(),
        };
        let shared_bytes = file.section_by_name(&format!(".nv.shared.{k}")).map_or(0, |s| s.size());
        kernels.push(Kernel {
            name: k.to_string(),
            entry,
            code: code.to_vec(),
            registers,
            barriers,
            param_base,
            param_bytes,
            params,
            exit_offsets,
            frame_size: frame.get(&index).copied().unwrap_or(0),
            min_stack_size: stack.get(&index).copied().unwrap_or(0),
            constant0,
            constant2,
            shared_bytes,
            relocations: relocs()?,
            attributes,
        });
    }
    let mut functions = Vec::new();
    for s in file.symbols() {
        if s.kind() != object::SymbolKind::Text {
            continue;
        }
        let Some(i) = s.section_index() else { continue };
        let sec = file.section_by_index(i).map_err(|e| bad("the symbol table", e.to_string()))?;
        let Some(k) = sec.name().ok().and_then(|n| n.strip_prefix(".text.")) else { continue };
        let name = s.name().map_err(|e| bad("the symbol table", e.to_string()))?;
        if s.address().checked_add(s.size()).is_none_or(|end| end > sec.size()) {
            return Err(bad(
                "the symbol table",
                format!("function `{name}` (0x{:x}, {} bytes) lies outside .text.{k}", s.address(), s.size()),
            ));
        }
        functions.push(Function {
            name: name.to_string(),
            kernel: k.to_string(),
            offset: s.address(),
            size: s.size(),
            weak: s.is_weak(),
        });
    }
    Ok(Cubin { layout, sm, kernels, relocations, functions })
}

impl fmt::Display for Kernel {
    /// The facts `tk disasm` prints above a kernel's code, as comments.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "//--------------------- .text.{} --------------------------", self.name)?;
        writeln!(
            f,
            "// {}: {} registers, {} barriers, {} bytes of shared memory, frame {} bytes, stack {} bytes",
            if self.entry { "kernel" } else { "device function" },
            self.registers,
            self.barriers,
            self.shared_bytes,
            self.frame_size,
            self.min_stack_size
        )?;
        if self.param_bytes > 0 || !self.params.is_empty() {
            let ps: Vec<String> =
                self.params.iter().map(|p| format!("{}@0x{:x}:{}", p.ordinal, p.offset, p.size)).collect();
            writeln!(
                f,
                "// parameters: {} bytes at c[0x0][0x{:x}]: {}",
                self.param_bytes,
                self.param_base,
                ps.join(" ")
            )?;
        }
        for r in &self.relocations {
            writeln!(f, "// relocation at 0x{:x}: type {} {}{:+}", r.offset, r.kind, r.symbol, r.addend)?;
        }
        Ok(())
    }
}
