//! `tk disasm FILE`: the machine code of a GPU code object, printed without external tools.
//!
//! - An AMD code object (`.hsaco`, ELF machine 224): every instruction of `.text` in
//!   llvm-objdump's syntax (`llvm-objdump -d --mcpu=gfx1100`), from tk's RDNA3 tables, with each
//!   kernel's label where its code starts.
//! - An NVIDIA cubin (ELF machine 190): what the cubin says about each kernel (registers,
//!   barriers, shared memory, parameters, relocations), read by tk's cubin reader. tk cannot yet
//!   decode SASS itself, so the instructions are not printed: the error says so and names
//!   `nvdisasm`.

use std::fmt::Write;

/// Why a file cannot be disassembled.
#[derive(Debug, thiserror::Error)]
pub enum DisasmError {
    #[error("{0}")]
    Format(String),
    #[error("{0}")]
    Decode(String),
    /// The cubin's facts were printed, but not its code.
    #[error(
        "tk cannot decode SASS yet; the facts above come from tk's cubin reader. `nvdisasm -c {0}` \
         (from the pip wheel scripts/setup installs) prints the instructions"
    )]
    SassNotYet(String),
}

/// The ELF machine of a file's header, if it is a 64-bit little-endian ELF file.
fn elf_machine(bytes: &[u8]) -> Option<u16> {
    (bytes.len() >= 20 && bytes[..4] == *b"\x7fELF" && bytes[4] == 2 && bytes[5] == 1)
        .then(|| u16::from_le_bytes([bytes[18], bytes[19]]))
}

/// Disassembles `bytes`, read from `name`: the text to print, or why not. For a cubin, the
/// kernels' facts come with the [`DisasmError::SassNotYet`] error.
pub fn disassemble(name: &str, bytes: &[u8], kernel: Option<&str>) -> Result<String, (String, DisasmError)> {
    match elf_machine(bytes) {
        Some(224) => amd(name, bytes, kernel).map_err(|e| (String::new(), e)),
        Some(190) => {
            let c =
                tk_abi::cubin::read(bytes).map_err(|e| (String::new(), DisasmError::Format(format!("{name}: {e}"))))?;
            let mut out = format!("{name}:\tcubin for sm_{} ({:?} ELF layout)\n\n", c.sm, c.layout);
            let mut shown = 0;
            for k in c.kernels.iter().filter(|k| kernel.is_none_or(|n| n == k.name)) {
                let _ = writeln!(out, "{k}");
                shown += 1;
            }
            if shown == 0 {
                return Err((String::new(), no_kernel(name, kernel, c.kernels.iter().map(|k| k.name.as_str()))));
            }
            Err((out, DisasmError::SassNotYet(name.to_string())))
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
