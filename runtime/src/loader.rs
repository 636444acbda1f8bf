//! tk's loader of relocatable objects: maps an object's sections into executable memory,
//! applies its relocations and returns the addresses of its symbols. It handles what Cranelift
//! emits for tk's kernels and what LLVM emits in the large code model without PIC (the CPU's
//! LLVM tier): absolute 64-bit relocations (calls to helpers and libcalls, constant pools, on
//! x86_64 and aarch64) and 32-bit PC-relative ones (x86_64, within the object). Anything else
//! is an error, never a guess: the kernel cache then compiles afresh, and the LLVM tier keeps
//! Cranelift's code.

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
    let obj = object::File::parse(bytes).map_err(|e| LoadError(e.to_string()))?;
    let host = if cfg!(target_arch = "x86_64") {
        object::Architecture::X86_64
    } else if cfg!(target_arch = "aarch64") {
        object::Architecture::Aarch64
    } else {
        return err("this machine's architecture has no loader");
    };
    if obj.architecture() != host {
        return err(format!("the object is for {:?}, this machine is {host:?}", obj.architecture()));
    }
    // Lay out every allocated section.
    let mut offsets: HashMap<object::SectionIndex, usize> = HashMap::new();
    let mut size = 0usize;
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
    }
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
            let value = (target as i64).wrapping_add(r.addend());
            let kind = (r.kind(), r.size(), r.flags());
            match kind {
                (object::RelocationKind::Absolute, 64, _) => {
                    mem[place..place + 8].copy_from_slice(&(value as u64).to_le_bytes());
                }
                (object::RelocationKind::Relative | object::RelocationKind::PltRelative, 32, _)
                    if host == object::Architecture::X86_64 =>
                {
                    let rel = value - (base + place) as i64;
                    let v =
                        i32::try_from(rel).map_err(|_| LoadError("a PC-relative relocation out of range".into()))?;
                    mem[place..place + 4].copy_from_slice(&v.to_le_bytes());
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
    let mem = mem.make_exec().map_err(|e| LoadError(format!("making the code executable: {e}")))?;
    // SAFETY: the range is the mapping just written; nothing executes it yet.
    unsafe {
        icache::clear_cache(mem.as_ptr().cast(), mem.len())
            .map_err(|e| LoadError(format!("flushing the icache: {e}")))?;
    }
    icache::pipeline_flush_mt().map_err(|e| LoadError(format!("flushing the pipeline: {e}")))?;
    Ok(LoadedCode { _mem: mem, symbols, sizes })
}
