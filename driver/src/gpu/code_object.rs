//! What the AMD loader needs from a code object: the `.text` bytes and, per kernel, where its
//! code starts in them and the registers of its 64-byte descriptor.

/// One kernel of a code object.
pub struct KernelEntry {
    pub name: String,
    /// Byte offset of the kernel's first instruction in `.text`.
    pub offset: u64,
    /// COMPUTE_PGM_RSRC1, RSRC2, RSRC3.
    pub rsrc: [u32; 3],
    /// LDS bytes (the group segment).
    pub lds: u32,
}

pub struct Object {
    pub text: Vec<u8>,
    pub kernels: Vec<KernelEntry>,
}

/// Reads an AMDGPU ELF code object.
pub fn read(bytes: &[u8]) -> Result<Object, String> {
    use object::{Object as _, ObjectSection, ObjectSymbol};
    let file = object::File::parse(bytes).map_err(|e| format!("not an ELF file: {e}"))?;
    let text = file.section_by_name(".text").ok_or("no .text section")?;
    let data = text.data().map_err(|e| format!(".text: {e}"))?;
    let mut kernels = Vec::new();
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        let Some(k) = name.strip_suffix(".kd") else { continue };
        let sec =
            sym.section_index().and_then(|i| file.section_by_index(i).ok()).ok_or(format!("{name}: no section"))?;
        let sd = sec.data().map_err(|e| format!("{name}: {e}"))?;
        let off = sym.address().checked_sub(sec.address()).ok_or(format!("{name}: bad address"))? as usize;
        let kd = sd.get(off..off + 64).ok_or(format!("{name}: the descriptor is truncated"))?;
        let u32_at = |o: usize| u32::from_le_bytes([kd[o], kd[o + 1], kd[o + 2], kd[o + 3]]);
        let mut e = [0u8; 8];
        e.copy_from_slice(&kd[16..24]);
        let entry = (sym.address() as i64).wrapping_add(i64::from_le_bytes(e));
        let offset = u64::try_from(entry - text.address() as i64)
            .ok()
            .filter(|o| *o < data.len() as u64 && o % 256 == 0)
            .ok_or(format!("{name}: the kernel's code is not a 256-byte aligned place in .text"))?;
        kernels.push(KernelEntry {
            name: k.to_string(),
            offset,
            rsrc: [u32_at(48), u32_at(52), u32_at(44)],
            lds: u32_at(0),
        });
    }
    Ok(Object { text: data.to_vec(), kernels })
}
