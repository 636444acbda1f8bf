//! AMD's side of tk's kernel ABI: the kernel arguments a launch passes, the 64-byte kernel
//! descriptor (code object v5) and the reader of code objects (`.hsaco`) that the toolchain's
//! checks, the userspace driver's loader and the RDNA3 emulator share.
//!
//! Facts from public sources: the kernel descriptor layout and the AMDGPU metadata note are
//! LLVM's AMDGPUUsage documentation ("Kernel Descriptor", "Code Object V5 Metadata"); ELF machine
//! 224 is EM_AMDGPU and note type 32 is NT_AMDGPU_METADATA in the same document.

use object::{Object, ObjectSection, ObjectSymbol};

/// The kernel arguments of tk's ABI: every buffer's address in kernel order, the value of every
/// size symbol (sorted by name), the address of the error slots ([`crate::check`]) and the
/// number of workgroups of the launch; each a little-endian 64-bit word.
pub fn kernargs(buffers: &[u64], symbols: &[i64], error_slots: u64, blocks: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 * (buffers.len() + symbols.len() + 2));
    for b in buffers {
        k.extend_from_slice(&b.to_le_bytes());
    }
    for s in symbols {
        k.extend_from_slice(&s.to_le_bytes());
    }
    k.extend_from_slice(&error_slots.to_le_bytes());
    k.extend_from_slice(&i64::from(blocks).to_le_bytes());
    k
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

/// Reads what a code object says about every kernel: the AMDGPU metadata note (msgpack) and each kernel's
/// descriptor. A malformed object is an error naming what is wrong.
pub fn read_metadata(hsaco: &[u8]) -> Result<Vec<KernelDesc>, String> {
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

/// One kernel of a code object: where its code starts and its descriptor.
#[derive(Clone, Debug)]
pub struct KernelEntry {
    pub name: String,
    /// Byte offset of the kernel's first instruction in `.text` (a multiple of 4, inside it).
    pub offset: u64,
    pub descriptor: Descriptor,
}

/// The loadable part of a code object: the `.text` bytes and every kernel (`NAME.kd` symbols).
#[derive(Clone, Debug)]
pub struct CodeObject {
    pub text: Vec<u8>,
    /// The address of `.text` in the code object (disassemblers print addresses from it).
    pub text_address: u64,
    pub kernels: Vec<KernelEntry>,
}

impl CodeObject {
    pub fn kernel(&self, name: &str) -> Option<&KernelEntry> {
        self.kernels.iter().find(|k| k.name == name)
    }
}

/// Reads an AMDGPU ELF code object's `.text` and kernel descriptors. A malformed object is an
/// error naming what is wrong.
pub fn read_code(bytes: &[u8]) -> Result<CodeObject, String> {
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
    // EM_AMDGPU
    let machine = match &file {
        object::File::Elf64(e) => {
            use object::read::elf::FileHeader;
            e.elf_header().e_machine(e.endian())
        }
        _ => 0,
    };
    if machine != 224 {
        return Err("not an AMDGPU code object (a 64-bit ELF file for machine 224)".into());
    }
    let text = file.section_by_name(".text").ok_or("no .text section")?;
    let data = text.data().map_err(|e| format!(".text: {e}"))?;
    let mut kernels = Vec::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(k) = name.strip_suffix(".kd") else { continue };
        let sec = sym
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .ok_or(format!("{name} is in no section"))?;
        let sd = sec.data().map_err(|e| format!("{name}: {e}"))?;
        let off = sym.address().checked_sub(sec.address()).ok_or(format!("{name}: bad address"))? as usize;
        let descriptor = sd
            .get(off..off.saturating_add(64))
            .and_then(Descriptor::parse)
            .ok_or(format!("{name}: the descriptor is truncated"))?;
        let entry = (sym.address() as i64).wrapping_add(descriptor.kernel_code_entry_byte_offset);
        let offset = u64::try_from(entry.wrapping_sub(text.address() as i64))
            .ok()
            .filter(|o| *o < data.len() as u64 && o % 4 == 0)
            .ok_or(format!("{name}: the kernel's code is not at an instruction of .text"))?;
        kernels.push(KernelEntry { name: k.to_string(), offset, descriptor });
    }
    Ok(CodeObject { text: data.to_vec(), text_address: text.address(), kernels })
}
