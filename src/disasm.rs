//! `tk disasm FILE`: the machine code of a GPU code object, printed without external tools.
//!
//! - An AMD code object (`.hsaco`, ELF machine 224): every instruction of `.text` in
//!   llvm-objdump's syntax (`llvm-objdump -d --mcpu=gfx1100`), from tk's RDNA3 tables, with each
//!   kernel's label where its code starts.
//! - An NVIDIA cubin (ELF machine 190) for sm_80, sm_86 or sm_89: what the cubin says about each
//!   kernel (registers, barriers, shared memory, parameters, relocations) as comments, then its
//!   SASS in `nvdisasm -c`'s layout, from tk's SASS tables: the same instruction lines and
//!   `.L_x_N` labels (numbered as nvdisasm numbers them). An instruction beyond the tables is
//!   shown as its raw word and makes the command fail, naming `nvdisasm`.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// Why a file cannot be disassembled.
#[derive(Debug, thiserror::Error)]
pub enum DisasmError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Decode(String),
    /// Some instructions of a cubin are beyond tk's SASS tables (shown as raw words).
    #[error(
        "{unknown} of {total} instructions are not in tk's SASS tables yet (shown as raw words above); \
         `nvdisasm -c {name}` (from the pip wheel scripts/setup installs) decodes them"
    )]
    SassUnknown { name: String, unknown: usize, total: usize },
    /// A cubin for an architecture tk's SASS tables do not cover: its facts were printed.
    #[error(
        "tk's SASS tables cover sm_80, sm_86 and sm_89; {name} is for sm_{sm}. The facts above come from tk's \
         cubin reader; `nvdisasm -c {name}` prints the instructions"
    )]
    SassArch { name: String, sm: u32 },
}

/// The ELF machine of a file's header, if it is a 64-bit little-endian ELF file.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 20 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1)
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// Disassembles `bytes`, read from `name`: the text to print, or why not (with what could be
/// printed).
pub fn disassemble(name: &str, bytes: &[u8], kernel: Option<&str>) -> Result<String, (String, DisasmError)> {
    match elf_machine(bytes) {
        Some(224) => amd(name, bytes, kernel).map_err(|e| (String::new(), e)),
        Some(190) => {
            let c =
                tk_abi::cubin::read(bytes).map_err(|e| (String::new(), DisasmError::Format(format!("{name}: {e}"))))?;
            if kernel.is_some() && !c.kernels.iter().any(|k| kernel.is_none_or(|n| n == k.name)) {
                return Err((String::new(), no_kernel(name, kernel, c.kernels.iter().map(|k| k.name.as_str()))));
            }
            nvidia(name, &c, kernel)
        }
        Some(m) => Err((
            String::new(),
            DisasmError::Format(format!(
                "{name}: an ELF file for machine {m}; tk disassembles AMD code objects (.hsaco, machine 224) \
                 and NVIDIA cubins (machine 190), as `tk build --target gfx1100|sm_86` writes them"
            )),
        )),
        None => Err((
            String::new(),
            DisasmError::Format(format!(
                "{name}: not a 64-bit ELF file; tk disassembles AMD code objects (.hsaco) and NVIDIA cubins, \
                 as `tk build --target gfx1100|sm_86` writes them"
            )),
        )),
    }
}

fn no_kernel<'a>(name: &str, kernel: Option<&str>, all: impl Iterator<Item = &'a str>) -> DisasmError {
    let all: Vec<&str> = all.collect();
    DisasmError::Format(format!(
        "{name} has no kernel `{}`; it has: {}",
        kernel.unwrap_or_default(),
        if all.is_empty() { "none".to_string() } else { all.join(", ") }
    ))
}

/// `.L_x_N` labels as nvdisasm numbers them in a cubin (one counter per file): first each
/// branch, call or BSSY target without a label or function there, in section and address
/// order; then every EXIT offset of each kernel; then the end of every function symbol, in
/// symbol-table order. The later two use up a number even where a label or function exists.
fn sass_labels(c: &tk_abi::cubin::Cubin) -> HashMap<(usize, u64), String> {
    let starts: HashSet<(usize, u64)> = c
        .functions
        .iter()
        .filter_map(|f| c.kernels.iter().position(|k| k.name == f.kernel).map(|i| (i, f.offset)))
        .collect();
    let mut labels = HashMap::new();
    let mut next = 0;
    let mut take = |labels: &mut HashMap<(usize, u64), String>, at: (usize, u64), always: bool| {
        let free = !labels.contains_key(&at) && !starts.contains(&at);
        if free {
            labels.insert(at, format!(".L_x_{next}"));
        }
        if free || always {
            next += 1;
        }
    };
    for (i, k) in c.kernels.iter().enumerate() {
        for (n, chunk) in k.code.chunks_exact(16).enumerate() {
            let at = 16 * n as u64;
            if let Some(t) = tk_isa::sass::target(sass_word(chunk), at) {
                take(&mut labels, (i, t), false);
            }
        }
    }
    // The instruction offsets of each kernel's `.nv.info.K` records, in record order: EXIT,
    // S2R of the CTA id, cooperative-group and warp-wide instructions.
    for (i, k) in c.kernels.iter().enumerate() {
        for a in k.attributes.iter().filter(|a| matches!(a.attr, 0x1c | 0x1d | 0x28 | 0x31)) {
            for o in a.words() {
                take(&mut labels, (i, u64::from(o)), true);
            }
        }
    }
    for f in &c.functions {
        if let Some(i) = c.kernels.iter().position(|k| k.name == f.kernel) {
            take(&mut labels, (i, f.offset + f.size), true);
        }
    }
    labels
}

fn sass_word(chunk: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b.copy_from_slice(chunk);
    tk_isa::sass::word(&b)
}

/// A cubin in `nvdisasm -c`'s layout, each kernel preceded by its facts as comments.
fn nvidia(name: &str, c: &tk_abi::cubin::Cubin, kernel: Option<&str>) -> Result<String, (String, DisasmError)> {
    let mut out = format!("// {name}: cubin for sm_{} ({:?} ELF layout)\n\n", c.sm, c.layout);
    if !tk_isa::sass::SMS.contains(&c.sm) {
        for k in c.kernels.iter().filter(|k| kernel.is_none_or(|n| n == k.name)) {
            let _ = writeln!(out, "{k}");
        }
        return Err((out, DisasmError::SassArch { name: name.to_string(), sm: c.sm }));
    }
    let labels = sass_labels(c);
    let (mut unknown, mut total) = (0, 0);
    for (i, k) in c.kernels.iter().enumerate() {
        if kernel.is_some_and(|n| n != k.name) {
            continue;
        }
        let function_at = |at: u64| c.functions.iter().find(|f| f.kernel == k.name && f.offset == at);
        let name_at = |at: u64| function_at(at).map(|f| f.name.clone()).or_else(|| labels.get(&(i, at)).cloned());
        let end = |f: &tk_abi::cubin::Function| name_at(f.offset + f.size).unwrap_or_else(|| "?".into());
        let _ = writeln!(out, "{k}");
        let _ = writeln!(out, "\t.section\t.text.{},\"ax\",@progbits", k.name);
        let _ = writeln!(out, "\t.sectioninfo\t@\"SHI_REGISTERS={}\"", k.registers);
        let _ = writeln!(out, "\t.align\t128");
        if let Some(f) = function_at(0) {
            let _ = writeln!(out, "        .global         {}", f.name);
            let _ = writeln!(out, "        .type           {},@function", f.name);
            let _ = writeln!(out, "        .size           {},({} - {})", f.name, end(f), f.name);
            if k.entry {
                let _ = writeln!(out, "        .other          {},@\"STO_CUDA_ENTRY STV_DEFAULT\"", f.name);
            }
            let _ = writeln!(out, "{}:", f.name);
        }
        let _ = writeln!(out, ".text.{}:", k.name);
        for (n, chunk) in k.code.chunks_exact(16).enumerate() {
            let at = 16 * n as u64;
            if let Some(f) = function_at(at).filter(|_| at != 0) {
                let _ = writeln!(out, "        .{:<15}{}", if f.weak { "weak" } else { "global" }, f.name);
                let _ = writeln!(out, "        .type           {},@function", f.name);
                let _ = writeln!(out, "        .size           {},({} - {})", f.name, end(f), f.name);
                let _ = writeln!(out, "{}:", f.name);
            }
            if let Some(l) = labels.get(&(i, at)) {
                let _ = writeln!(out, "{l}:");
            }
            let w = sass_word(chunk);
            total += 1;
            match tk_isa::sass::print(w, c.sm, at, &name_at) {
                Some(t) => {
                    let guard = if t.guard.is_empty() { " ".repeat(19) } else { format!("{:>18} ", t.guard) };
                    let end = if tk_isa::sass::bare_terminator(w) { ";" } else { " ;" };
                    let _ = writeln!(out, "        /*{at:04x}*/{guard}{}{end}", t.body);
                }
                None => {
                    unknown += 1;
                    let _ = writeln!(
                        out,
                        "        /*{at:04x}*/                   /* 0x{:016x}{:016x}: not in tk's SASS tables */",
                        (w >> 64) as u64,
                        w as u64
                    );
                }
            }
        }
        if let Some(l) = labels.get(&(i, k.code.len() as u64)) {
            let _ = writeln!(out, "{l}:");
        }
        out.push_str("\n\n");
    }
    if unknown > 0 {
        return Err((out, DisasmError::SassUnknown { name: name.to_string(), unknown, total }));
    }
    Ok(out)
}

/// An AMD code object in llvm-objdump's layout.
fn amd(name: &str, bytes: &[u8], kernel: Option<&str>) -> Result<String, DisasmError> {
    let co = tk_abi::amd::read_code(bytes).map_err(|e| DisasmError::Format(format!("{name}: {e}")))?;
    if let Some(k) = kernel
        && co.kernel(k).is_none()
    {
        return Err(no_kernel(name, kernel, co.kernels.iter().map(|k| k.name.as_str())));
    }
    let words: Vec<u32> = co.text.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let insts = tk_isa::rdna3::decode_all(&words).map_err(|e| {
        DisasmError::Decode(format!(
            "{name}: at .text+0x{:x}: {e} (tk's RDNA3 tables cover the instructions LLVM 19 emits for tk's kernels; \
             `llvm-objdump -d --mcpu=gfx1100 {name}` decodes everything)",
            e.pc
        ))
    })?;
    let mut out = format!("\n{name}:\tfile format elf64-amdgpu\n\nDisassembly of section .text:\n");
    let mut current: Option<&str> = None;
    for i in &insts {
        if let Some(k) = co.kernels.iter().find(|k| k.offset == u64::from(i.pc)) {
            current = Some(k.name.as_str());
            if kernel.is_none_or(|n| n == k.name) {
                let _ = write!(out, "\n{:016x} <{}>:\n", co.text_address + k.offset, k.name);
            }
        }
        if kernel.is_some() && kernel != current {
            continue;
        }
        let at = i.pc as usize;
        let hex: Vec<String> = words[at / 4..at / 4 + i.len as usize].iter().map(|w| format!("{w:08X}")).collect();
        let _ =
            writeln!(out, "\t{:<58} // {:012X}: {}", i.to_string(), co.text_address + u64::from(i.pc), hex.join(" "));
    }
    Ok(out)
}
