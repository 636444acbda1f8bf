//! GSP-RM's resource manager over RPC: allocating objects (GSP_RM_ALLOC), controlling them
//! (GSP_RM_CONTROL) and freeing them (FREE), each answered by a reply with the same function
//! number, the request's payload echoed with the status and output parameters; and the
//! driver's object tree: its client, the device and subdevice (the `rpc` step), and the VA
//! space whose page tables the driver owns (the `vaspace` step: FERMI_VASPACE_A externally
//! owned, its root given with SET_PAGE_DIRECTORY).
//!
//! Payload layouts, class and control numbers and status codes: open-gpu-kernel-modules
//! 570.144 `g_rpc-structures.h`, `g_sdk-structures.h`, `cl0000.h`, `cl0080.h`, `cl2080.h`,
//! `nvos.h`, `ctrl0080dma.h`, `ctrl2080fifo.h`, `nvstatuscodes.h`; nouveau `r535/alloc.c`,
//! `ctrl.c`, `vmm.c`; tinygrad `nv/ip.py` (docs/nvidia-facts.md, "GSP-RM objects").

use super::mmu::PageTables;
use super::rpc::{FN_FREE, FN_GSP_RM_ALLOC, FN_GSP_RM_CONTROL, Message, Rpc};
use super::sysmem::Paged;
use super::{NvError, chip};
use crate::transport::Transport;

/// Classes.
pub const NV01_ROOT: u32 = 0x0;
pub const NV01_DEVICE_0: u32 = 0x80;
pub const NV20_SUBDEVICE_0: u32 = 0x2080;
pub const FERMI_VASPACE_A: u32 = 0x90f1;
pub const KEPLER_CHANNEL_GROUP_A: u32 = 0xa06c;
pub const FERMI_CONTEXT_SHARE_A: u32 = 0x9067;
pub const AMPERE_CHANNEL_GPFIFO_A: u32 = 0xc56f;
pub const AMPERE_COMPUTE_B: u32 = 0xc7c0;
pub const ADA_COMPUTE_A: u32 = 0xc9c0;
pub const AMPERE_DMA_COPY_B: u32 = 0xc7b5;
/// Parameter sizes.
pub const NV0000_PARAMS: usize = 0x78;
pub const NV0080_PARAMS: usize = 0x38;
pub const NV2080_PARAMS: usize = 0x4;
pub const VASPACE_PARAMS: usize = 0x30;
pub const TSG_PARAMS: usize = 0x14;
pub const CTXSHARE_PARAMS: usize = 0xc;
pub const CHANNEL_PARAMS: usize = 0x170;
/// Controls.
pub const CTRL_FIFO_GET_DEVICE_INFO_TABLE: u32 = 0x2080_1112;
pub const DEVICE_INFO_TABLE_BYTES: usize = 0xc8c;
pub const DEVICE_INFO_ENTRY_BYTES: usize = 0x64;
pub const CTRL_GPFIFO_GET_WORK_SUBMIT_TOKEN: u32 = 0xc36f_0108;
pub const CTRL_TSG_GPFIFO_SCHEDULE: u32 = 0xa06c_0101;
/// SET_PAGE_DIRECTORY (RPC function 54): `rpc_set_page_directory_v1E_05`.
pub const FN_SET_PAGE_DIRECTORY: u32 = 54;
/// FERMI_VASPACE_A flags: the client owns the page tables.
pub const VASPACE_EXTERNALLY_OWNED: u32 = 1 << 3;
/// SET_PAGE_DIRECTORY flags: the root in coherent system memory, for all channels.
pub const PD_APERTURE_SYS_COH: u32 = 1;
pub const PD_ALL_CHANNELS: u32 = 1 << 3;
/// The driver's VA space: from 4 KiB up, as tinygrad's.
pub const VA_BASE: u64 = 0x1000;
pub const VA_SIZE: u64 = 0x1_ffff_fb00_0000;
/// RM's engine type for the graphics/compute engine, and the device-info table's fields.
pub const ENGINE_TYPE_GR0: u32 = 1;
pub const ENGINE_DATA_RM_ENGINE_TYPE: usize = 2;
pub const ENGINE_DATA_RUNLIST: usize = 3;

/// The handles tk uses: its client (RM's user-client range), and its objects in it.
pub const H_CLIENT: u32 = 0xc1d0_0001;
pub const H_DEVICE: u32 = 0xde1d_0000;
pub const H_SUBDEVICE: u32 = 0x5d1d_0000;
pub const H_VASPACE: u32 = 0x90f1_0000;

/// The name of an RM status (`nvstatuscodes.h`), for messages.
pub fn status_name(s: u32) -> &'static str {
    match s {
        0x0 => "NV_OK",
        0x1f => "NV_ERR_INVALID_ARGUMENT",
        0x22 => "NV_ERR_INVALID_CLASS",
        0x23 => "NV_ERR_INVALID_CLIENT",
        0x24 => "NV_ERR_INVALID_COMMAND",
        0x31 => "NV_ERR_INVALID_OBJECT",
        0x33 => "NV_ERR_INVALID_OBJECT_HANDLE",
        0x34 => "NV_ERR_INVALID_OBJECT_NEW",
        0x36 => "NV_ERR_INVALID_OBJECT_PARENT",
        0x3b => "NV_ERR_INVALID_PARAMETER",
        0x40 => "NV_ERR_INVALID_STATE",
        0x51 => "NV_ERR_NO_MEMORY",
        0x56 => "NV_ERR_NOT_SUPPORTED",
        0x57 => "NV_ERR_OBJECT_NOT_FOUND",
        0xff10_0001 => "the RPC layer's UNKNOWN_FUNCTION",
        0xff10_0002 => "the RPC layer's INVALID_MESSAGE_FORMAT",
        _ => "an RM error",
    }
}

fn fail(step: &'static str, detail: String) -> NvError {
    NvError::Step { step, detail }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

impl Rpc {
    /// Sends `payload` as `function` and waits for the reply with the same function number
    /// (events in between are counted and skipped).
    pub fn call(
        &mut self,
        t: &dyn Transport,
        shared: &Paged,
        function: u32,
        payload: &[u8],
        what: &str,
    ) -> Result<Message, NvError> {
        self.send(t, shared, function, payload)?;
        loop {
            let m = self.recv(t, shared, what)?;
            if m.function == function {
                return Ok(m);
            }
            if m.function < 0x1000 {
                return Err(fail("rpc", format!("GSP-RM answered {what} with function {}", m.function)));
            }
            self.events.push(m.function);
        }
    }

    /// Allocates object `object` of `class` under `parent` in `client`; returns the output
    /// parameters.
    #[allow(clippy::too_many_arguments)]
    pub fn alloc(
        &mut self,
        t: &dyn Transport,
        shared: &Paged,
        client: u32,
        parent: u32,
        object: u32,
        class: u32,
        params: &[u8],
    ) -> Result<Vec<u8>, NvError> {
        let mut p = Vec::with_capacity(0x20 + params.len());
        for v in [client, parent, object, class, 0, params.len() as u32, 0, 0] {
            p.extend(v.to_le_bytes());
        }
        p.extend_from_slice(params);
        let what = format!("allocation of class {class:#x} (handle {object:#x})");
        let m = self.call(t, shared, FN_GSP_RM_ALLOC, &p, &what)?;
        let status = if m.result != 0 { m.result } else { u32_at(&m.payload, 0x10) };
        if status != 0 {
            return Err(fail("rpc", format!("GSP-RM refused the {what}: {} ({status:#x})", status_name(status))));
        }
        Ok(m.payload.get(0x20..0x20 + params.len()).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// Runs control `cmd` on `object`; returns the output parameters.
    pub fn control(
        &mut self,
        t: &dyn Transport,
        shared: &Paged,
        (client, object): (u32, u32),
        cmd: u32,
        params: &[u8],
    ) -> Result<Vec<u8>, NvError> {
        let mut p = Vec::with_capacity(0x18 + params.len());
        for v in [client, object, cmd, 0, params.len() as u32, 0] {
            p.extend(v.to_le_bytes());
        }
        p.extend_from_slice(params);
        let what = format!("control {cmd:#x} on {object:#x}");
        let m = self.call(t, shared, FN_GSP_RM_CONTROL, &p, &what)?;
        let status = if m.result != 0 { m.result } else { u32_at(&m.payload, 0xc) };
        if status != 0 {
            return Err(fail("rpc", format!("GSP-RM refused {what}: {} ({status:#x})", status_name(status))));
        }
        Ok(m.payload.get(0x18..0x18 + params.len()).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// Frees `object` of `client` (the client itself frees everything under it).
    pub fn free(&mut self, t: &dyn Transport, shared: &Paged, client: u32, object: u32) -> Result<(), NvError> {
        let mut p = Vec::new();
        for v in [client, 0, object, 0] {
            p.extend(v.to_le_bytes());
        }
        let m = self.call(t, shared, FN_FREE, &p, &format!("free of {object:#x}"))?;
        if m.result != 0 {
            return Err(fail("rpc", format!("GSP-RM refused to free {object:#x}: {}", status_name(m.result))));
        }
        Ok(())
    }
}

/// The driver's objects: the client, device and subdevice, and the GR engine's runlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Objects {
    pub client: u32,
    pub device: u32,
    pub subdevice: u32,
    /// The runlist of the graphics/compute engine (from the device-info table).
    pub gr_runlist: u32,
}

/// The `rpc` step: the client, the device, the subdevice, and the GR engine's runlist.
pub fn objects(t: &dyn Transport, shared: &Paged, rpc: &mut Rpc) -> Result<Objects, NvError> {
    let mut root = vec![0u8; NV0000_PARAMS];
    root[0..4].copy_from_slice(&H_CLIENT.to_le_bytes());
    rpc.alloc(t, shared, H_CLIENT, 0, H_CLIENT, NV01_ROOT, &root)?;
    let mut dev = vec![0u8; NV0080_PARAMS];
    dev[4..8].copy_from_slice(&H_CLIENT.to_le_bytes()); // hClientShare
    rpc.alloc(t, shared, H_CLIENT, H_CLIENT, H_DEVICE, NV01_DEVICE_0, &dev)?;
    rpc.alloc(t, shared, H_CLIENT, H_DEVICE, H_SUBDEVICE, NV20_SUBDEVICE_0, &[0u8; NV2080_PARAMS])?;
    // The engines' runlists: the device-info table, 32 entries at a time.
    let mut gr_runlist = None;
    let mut base = 0u32;
    loop {
        let mut q = vec![0u8; DEVICE_INFO_TABLE_BYTES];
        q[0..4].copy_from_slice(&base.to_le_bytes());
        let r = rpc.control(t, shared, (H_CLIENT, H_SUBDEVICE), CTRL_FIFO_GET_DEVICE_INFO_TABLE, &q)?;
        let n = u32_at(&r, 4).min(32) as usize;
        for k in 0..n {
            let e = 0xc + k * DEVICE_INFO_ENTRY_BYTES;
            if u32_at(&r, e + 4 * ENGINE_DATA_RM_ENGINE_TYPE) == ENGINE_TYPE_GR0 {
                gr_runlist = Some(u32_at(&r, e + 4 * ENGINE_DATA_RUNLIST));
            }
        }
        if u32_at(&r, 8) & 0xff == 0 || n == 0 {
            break;
        }
        base += n as u32;
    }
    let gr_runlist =
        gr_runlist.ok_or_else(|| fail("rpc", "GSP-RM's device-info table has no graphics engine".into()))?;
    Ok(Objects { client: H_CLIENT, device: H_DEVICE, subdevice: H_SUBDEVICE, gr_runlist })
}

/// The `vaspace` step: the driver's page tables, FERMI_VASPACE_A externally owned, and its root
/// given to GSP-RM.
pub fn vaspace(t: &dyn Transport, shared: &Paged, rpc: &mut Rpc, o: &Objects) -> Result<PageTables, NvError> {
    let tables = PageTables::new(t)?;
    let mut v = vec![0u8; VASPACE_PARAMS];
    v[4..8].copy_from_slice(&VASPACE_EXTERNALLY_OWNED.to_le_bytes());
    v[8..16].copy_from_slice(&VA_SIZE.to_le_bytes());
    v[0x28..0x30].copy_from_slice(&VA_BASE.to_le_bytes());
    rpc.alloc(t, shared, o.client, o.device, H_VASPACE, FERMI_VASPACE_A, &v)?;
    let mut p = vec![0u8; 0x30];
    let put = |p: &mut Vec<u8>, at: usize, v: u32| p[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut p, 0, o.client);
    put(&mut p, 4, o.device);
    put(&mut p, 8, u32::MAX); // pasid
    p[0x10..0x18].copy_from_slice(&tables.root_bus.to_le_bytes());
    put(&mut p, 0x18, 4); // the root's entries
    put(&mut p, 0x1c, PD_APERTURE_SYS_COH | PD_ALL_CHANNELS);
    put(&mut p, 0x20, H_VASPACE);
    put(&mut p, 0x24, 0); // chId
    put(&mut p, 0x28, 1); // subDeviceId: the first, counted from 1
    put(&mut p, 0x2c, u32::MAX);
    let m = rpc.call(t, shared, FN_SET_PAGE_DIRECTORY, &p, "SET_PAGE_DIRECTORY")?;
    if m.result != 0 {
        return Err(fail(
            "vaspace",
            format!("GSP-RM refused the page directory: {} ({:#x})", status_name(m.result), m.result),
        ));
    }
    chip::read(t, chip::BOOT_0)?;
    Ok(tables)
}
