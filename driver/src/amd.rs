//! AMD code objects: LLVM's relocatable object linked into a loadable code object (`.hsaco`)
//! by ld.lld, read back for the kernel descriptors and the AMDGPU metadata note, and checked
//! against the fixed kernel ABI (docs/architecture.md).
//!
//! The tools: ld.lld is found through `TK_LLD`, then `PATH` as `ld.lld-19` or `ld.lld`;
//! llvm-objdump (for `tk emit --stage gcn`) through `TK_OBJDUMP`, then `llvm-objdump-19` or
//! `llvm-objdump`. `scripts/setup` installs both (Debian's lld-19 and llvm-19).

use crate::error::RunError;
use crate::nvidia::{tempdir, write};
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::PathBuf;
use std::process::Command;
use tk_codegen::amdgpu;

/// An LLVM command-line tool.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Lld,
    Objdump,
}

impl Tool {
    fn names(self) -> [&'static str; 2] {
        match self {
            Tool::Lld => ["ld.lld-19", "ld.lld"],
            Tool::Objdump => ["llvm-objdump-19", "llvm-objdump"],
        }
    }
    fn env(self) -> &'static str {
        match self {
            Tool::Lld => "TK_LLD",
            Tool::Objdump => "TK_OBJDUMP",
        }
    }
}

/// Finds a tool, or says how to install it.
pub fn find(tool: Tool) -> Result<PathBuf, RunError> {
    let [name, _] = tool.names();
    if let Some(p) = std::env::var_os(tool.env()).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RunError::MissingTool {
            tool: name.into(),
            message: format!(
                "{} is set to `{}`, which is not a file: point it at {name}, or unset it to search PATH",
                tool.env(),
                p.display()
            ),
        });
    }
    if let Some(path) = std::env::var_os("PATH") {
        for n in tool.names() {
            for dir in std::env::split_paths(&path) {
                let p = dir.join(n);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
    }
    let pkg = match tool {
        Tool::Lld => "lld-19",
        Tool::Objdump => "llvm-19",
    };
    Err(RunError::MissingTool {
        tool: name.into(),
        message: format!(
            "`{name}` was not found (looked at ${} and PATH). Run `scripts/setup` in the tk source tree (on Debian and \
             Ubuntu: `apt-get install {pkg}`; with Homebrew: `brew install llvm lld`), or set {} to the binary",
            tool.env(),
            tool.env()
        ),
    })
}

/// The relocatable object of a module, compiled by LLVM 19 (the `amdgpu` feature).
#[cfg(feature = "amdgpu")]
fn llvm_object(m: &amdgpu::Module) -> Result<Vec<u8>, RunError> {
    amdgpu::object(m).map_err(|message| RunError::Compile { message, loc: Default::default() })
}

#[cfg(not(feature = "amdgpu"))]
fn llvm_object(_m: &amdgpu::Module) -> Result<Vec<u8>, RunError> {
    Err(no_llvm())
}

/// Whether this build of tk can make AMD code objects: the `amdgpu` feature (LLVM 19) and
/// ld.lld.
pub fn available() -> Result<(), RunError> {
    if !cfg!(feature = "amdgpu") {
        return Err(no_llvm());
    }
    find(Tool::Lld).map(|_| ())
}

fn no_llvm() -> RunError {
    RunError::MissingTool {
        tool: "LLVM 19".into(),
        message: "this tk was built without the `amdgpu` feature, which compiles AMD code with LLVM 19: run \
                  `scripts/setup`, then build tk with `cargo build --features amdgpu`"
            .into(),
    }
}

/// Links a relocatable object into a code object with ld.lld.
pub fn link(obj: &[u8]) -> Result<Vec<u8>, RunError> {
    let lld = find(Tool::Lld)?;
    let dir = tempdir()?;
    let (o, out) = (dir.path.join("k.o"), dir.path.join("k.hsaco"));
    write(&o, obj)?;
    let r =
        Command::new(&lld).arg("-shared").arg("-o").arg(&out).arg(&o).output().map_err(|e| RunError::Tool {
            tool: "ld.lld".into(),
            message: format!("running {}: {e}", lld.display()),
        })?;
    if !r.status.success() {
        return Err(RunError::Tool {
            tool: "ld.lld".into(),
            message: format!("linking the AMD code object failed:\n{}", String::from_utf8_lossy(&r.stderr)),
        });
    }
    std::fs::read(&out)
        .map_err(|e| RunError::Tool { tool: "ld.lld".into(), message: format!("reading its output: {e}") })
}

/// What a code object says about one kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelDesc {
    pub name: String,
    pub vgprs: u32,
    pub sgprs: u32,
    pub vgpr_spills: u32,
    pub sgpr_spills: u32,
    /// LDS bytes (the group segment).
    pub lds_bytes: u32,
    /// Scratch bytes per work-item (the private segment).
    pub scratch_bytes: u32,
    pub wave_size: u32,
    pub kernarg_bytes: u32,
    /// From the 64-byte kernel descriptor `{name}.kd`.
    pub descriptor: Descriptor,
}

/// The fields of a kernel descriptor (code object v5) that tk's loaders read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub group_segment_fixed_size: u32,
    pub private_segment_fixed_size: u32,
    pub kernarg_size: u32,
    /// Byte offset of the kernel's code from the descriptor.
    pub kernel_code_entry_byte_offset: i64,
    pub compute_pgm_rsrc1: u32,
    pub compute_pgm_rsrc2: u32,
    pub compute_pgm_rsrc3: u32,
    pub kernel_code_properties: u16,
    pub kernarg_preload: u16,
}

impl Descriptor {
    /// Decodes the 64 bytes of a kernel descriptor.
    pub fn parse(b: &[u8]) -> Option<Descriptor> {
        if b.len() < 64 {
            return None;
        }
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut e = [0u8; 8];
        e.copy_from_slice(&b[16..24]);
        Some(Descriptor {
            group_segment_fixed_size: u32_at(0),
            private_segment_fixed_size: u32_at(4),
            kernarg_size: u32_at(8),
            kernel_code_entry_byte_offset: i64::from_le_bytes(e),
            compute_pgm_rsrc3: u32_at(44),
            compute_pgm_rsrc1: u32_at(48),
            compute_pgm_rsrc2: u32_at(52),
            kernel_code_properties: u16::from_le_bytes([b[56], b[57]]),
            kernarg_preload: u16::from_le_bytes([b[58], b[59]]),
        })
    }

    /// The user SGPRs and initial registers the kernel asks for, by name.
    pub fn requests(&self) -> Vec<&'static str> {
        const PROPS: [(u16, &str); 8] = [
            (1 << 0, "the private segment buffer"),
            (1 << 1, "the dispatch packet pointer"),
            (1 << 2, "the queue pointer"),
            (1 << 3, "the kernarg segment pointer"),
            (1 << 4, "the dispatch id"),
            (1 << 5, "flat scratch initialisation"),
            (1 << 6, "the private segment size"),
            (1 << 11, "a dynamic stack"),
        ];
        const RSRC2: [(u32, &str); 6] = [
            (1 << 0, "a private segment (scratch)"),
            (1 << 7, "the workgroup id in x"),
            (1 << 8, "the workgroup id in y"),
            (1 << 9, "the workgroup id in z"),
            (1 << 10, "the workgroup info"),
            (1 << 6, "a trap handler"),
        ];
        let mut v: Vec<&'static str> =
            PROPS.iter().filter(|(m, _)| self.kernel_code_properties & m != 0).map(|(_, n)| *n).collect();
        v.extend(RSRC2.iter().filter(|(m, _)| self.compute_pgm_rsrc2 & m != 0).map(|(_, n)| *n));
        match (self.compute_pgm_rsrc2 >> 11) & 3 {
            0 => v.push("the work-item id in x"),
            1 => v.push("the work-item ids in x and y"),
            _ => v.push("the work-item ids in x, y and z"),
        }
        v
    }

    /// Checks the descriptor against tk's kernel ABI: the kernarg segment pointer, the
    /// workgroup id in x and the work-item id in x, wave32, and nothing else.
    pub fn check_abi(&self, kernel: &str) -> Result<(), String> {
        const ALLOWED: [&str; 3] = ["the kernarg segment pointer", "the workgroup id in x", "the work-item id in x"];
        let extra: Vec<&str> = self.requests().into_iter().filter(|r| !ALLOWED.contains(r)).collect();
        if !extra.is_empty() {
            return Err(format!(
                "kernel `{kernel}` asks for {}, which tk's kernel ABI does not provide (it passes the kernarg segment \
                 pointer, the workgroup id in x and the work-item id in x)",
                extra.join(", ")
            ));
        }
        if self.kernarg_preload != 0 {
            return Err(format!(
                "kernel `{kernel}` preloads kernel arguments into SGPRs, which tk's kernel ABI does not do"
            ));
        }
        if self.kernel_code_properties & (1 << 10) == 0 {
            return Err(format!("kernel `{kernel}` is compiled for wave64; tk's kernel ABI is wave32"));
        }
        Ok(())
    }
}

fn map_get<'a>(m: &'a rmpv::Value, key: &str) -> Option<&'a rmpv::Value> {
    m.as_map()?.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v)
}

/// Reads every kernel of a code object: the AMDGPU metadata note (msgpack) and each kernel's
/// descriptor. A malformed object is an error naming what is wrong.
pub fn read(hsaco: &[u8]) -> Result<Vec<KernelDesc>, String> {
    let file = object::File::parse(hsaco).map_err(|e| format!("not an ELF code object: {e}"))?;
    let object::File::Elf64(elf) = &file else { return Err("not a 64-bit ELF code object".into()) };
    let mut meta = None;
    {
        use object::read::elf::FileHeader;
        let endian = elf.endian();
        // EM_AMDGPU
        if elf.elf_header().e_machine(endian) != 224 {
            return Err(format!("not an AMDGPU code object (ELF machine {})", elf.elf_header().e_machine(endian)));
        }
        for s in elf.elf_section_table().iter() {
            use object::read::elf::SectionHeader;
            if let Some(mut notes) = s.notes(endian, elf.data()).map_err(|e| format!("reading notes: {e}"))? {
                while let Some(n) = notes.next().map_err(|e| format!("reading a note: {e}"))? {
                    // NT_AMDGPU_METADATA
                    if n.name() == b"AMDGPU" && n.n_type(endian) == 32 {
                        let mut desc = n.desc();
                        meta =
                            Some(rmpv::decode::read_value(&mut desc).map_err(|e| format!("the metadata note: {e}"))?);
                    }
                }
            }
        }
    }
    let meta = meta.ok_or("the code object has no AMDGPU metadata note")?;
    let version = map_get(&meta, "amdhsa.version")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect::<Vec<_>>());
    if version.as_deref() != Some(&[1, 2][..]) {
        return Err(format!("the code object is not code object v5 (amdhsa.version {version:?}; v5 is [1, 2])"));
    }
    let kernels = map_get(&meta, "amdhsa.kernels").and_then(|k| k.as_array()).ok_or("the metadata lists no kernels")?;
    let mut out = Vec::new();
    for k in kernels {
        let s = |key: &str| map_get(k, key).and_then(|v| v.as_str()).map(str::to_string);
        let n = |key: &str| map_get(k, key).and_then(|v| v.as_u64()).unwrap_or(0) as u32;
        let name = s(".name").ok_or("a kernel without a .name")?;
        let symbol = s(".symbol").unwrap_or_else(|| format!("{name}.kd"));
        let sym = file.symbols().find(|x| x.name() == Ok(symbol.as_str())).ok_or(format!("no symbol {symbol}"))?;
        let section = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .ok_or(format!("{symbol} is in no section"))?;
        let data = section.data().map_err(|e| format!("{symbol}: {e}"))?;
        let off = sym.address().checked_sub(section.address()).ok_or(format!("{symbol}: bad address"))? as usize;
        let descriptor = data
            .get(off..off + 64)
            .and_then(Descriptor::parse)
            .ok_or(format!("{symbol}: the kernel descriptor is truncated"))?;
        out.push(KernelDesc {
            name,
            vgprs: n(".vgpr_count"),
            sgprs: n(".sgpr_count"),
            vgpr_spills: n(".vgpr_spill_count"),
            sgpr_spills: n(".sgpr_spill_count"),
            lds_bytes: n(".group_segment_fixed_size"),
            scratch_bytes: n(".private_segment_fixed_size"),
            wave_size: n(".wavefront_size"),
            kernarg_bytes: n(".kernarg_segment_size"),
            descriptor,
        });
    }
    Ok(out)
}

/// A built code object and what it holds.
pub struct CodeObject {
    pub hsaco: Vec<u8>,
    pub kernels: Vec<KernelDesc>,
}

/// Compiles a module into a code object and checks every kernel against the ABI.
pub fn code_object(m: &amdgpu::Module) -> Result<CodeObject, RunError> {
    // Find the tools before the (slower) LLVM compilation.
    available()?;
    let obj = llvm_object(m)?;
    let hsaco = link(&obj)?;
    let bad = |message: String| RunError::Compile { message, loc: Default::default() };
    let kernels = read(&hsaco).map_err(|e| bad(format!("the code object LLVM made for {}: {e}", m.target)))?;
    for k in &kernels {
        k.descriptor.check_abi(&k.name).map_err(bad)?;
        if k.scratch_bytes > 0 {
            return Err(bad(format!(
                "kernel `{}` needs {} bytes of scratch per work-item, which tk's kernel ABI does not provide",
                k.name, k.scratch_bytes
            )));
        }
    }
    Ok(CodeObject { hsaco, kernels })
}

/// The RDNA3 disassembly of a code object, from llvm-objdump.
pub fn disassemble(hsaco: &[u8], target: amdgpu::Target) -> Result<String, RunError> {
    let objdump = find(Tool::Objdump)?;
    let dir = tempdir()?;
    let f = dir.path.join("k.hsaco");
    write(&f, hsaco)?;
    let o = Command::new(&objdump).arg(format!("--mcpu={}", target.name)).arg("-d").arg(&f).output().map_err(|e| {
        RunError::Tool { tool: "llvm-objdump".into(), message: format!("running {}: {e}", objdump.display()) }
    })?;
    if !o.status.success() {
        return Err(RunError::Tool {
            tool: "llvm-objdump".into(),
            message: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
