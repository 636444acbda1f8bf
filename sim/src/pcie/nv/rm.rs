//! The simulated GSP-RM's resource manager: the objects a driver allocates, checked as RM checks
//! them (a known class with its parameter size, a parent of the right class, a free handle),
//! the controls tk uses, FREE, and SET_PAGE_DIRECTORY for an externally owned VA space. A
//! refusal is an RM status in the reply (`NV_ERR_INVALID_CLASS`, `..._OBJECT_PARENT`, ...), as
//! GSP-RM answers; an unknown control is `NV_ERR_NOT_SUPPORTED`. The channels it creates are
//! what the host engine (`host.rs`) runs. Layouts: tk_gpu::nv::rm names the sources.

use super::NvSimGpu;
use std::collections::BTreeMap;
use tk_gpu::nv::rm::*;
use tk_gpu::nv::rpc::{FN_FREE, FN_GSP_RM_ALLOC, FN_GSP_RM_CONTROL};

/// RM statuses the model answers with.
pub const NV_OK: u32 = 0;
pub const NV_ERR_INVALID_ARGUMENT: u32 = 0x1f;
pub const NV_ERR_INSERT_DUPLICATE_NAME: u32 = 0x19;
pub const NV_ERR_INVALID_CLASS: u32 = 0x22;
pub const NV_ERR_INVALID_CLIENT: u32 = 0x23;
pub const NV_ERR_INVALID_OBJECT_PARENT: u32 = 0x36;
pub const NV_ERR_INVALID_PARAM_STRUCT: u32 = 0x3a;
pub const NV_ERR_INVALID_STATE: u32 = 0x40;
pub const NV_ERR_NOT_SUPPORTED: u32 = 0x56;
pub const NV_ERR_OBJECT_NOT_FOUND: u32 = 0x57;

/// The runlist the simulated GPU's graphics/compute engine is on.
pub const GR_RUNLIST: u32 = 1;

/// One object.
#[derive(Clone, Debug)]
pub struct Object {
    pub class: u32,
    pub parent: u32,
    pub params: Vec<u8>,
}

/// A channel (GPFIFO) as RM set it up.
#[derive(Clone, Debug, Default)]
pub struct Channel {
    pub chid: u32,
    pub handle: u32,
    /// The root of its VA space's page tables.
    pub root: u64,
    pub gpfifo_va: u64,
    pub entries: u32,
    /// USERD: its address and aperture (1 system memory, 2 VRAM).
    pub userd: u64,
    pub userd_sys: bool,
    /// GP_GET: the next entry the host engine reads.
    pub get: u32,
    /// The classes bound to subchannels (SET_OBJECT).
    pub subch: [u32; 8],
    /// Engine methods' state (subchannel, method) -> value.
    pub methods: BTreeMap<(u32, u32), u32>,
}

/// The objects of every client.
#[derive(Default)]
pub struct Rm {
    pub objects: BTreeMap<(u32, u32), Object>,
    /// Externally owned VA spaces' roots, by (client, handle).
    pub roots: BTreeMap<(u32, u32), u64>,
    pub channels: Vec<Channel>,
    pub scheduled: bool,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

impl NvSimGpu {
    /// The compute class this chip has.
    fn compute_class(&self) -> u32 {
        if self.opts.chip == super::SimChip::Ad102 { ADA_COMPUTE_A } else { AMPERE_COMPUTE_B }
    }

    /// Answers an RM call: (rpc_result, the reply payload). Err stops GSP-RM.
    pub(super) fn rm_call(&self, rm: &mut Rm, f: u32, mut p: Vec<u8>) -> Result<(u32, Vec<u8>), String> {
        let status = match f {
            FN_GSP_RM_ALLOC => {
                if p.len() < 0x20 || p.len() < 0x20 + u32_at(&p, 0x14) as usize {
                    return Ok((NV_ERR_INVALID_PARAM_STRUCT, p));
                }
                let st = self.rm_alloc(rm, &p);
                p[0x10..0x14].copy_from_slice(&st.to_le_bytes());
                st
            }
            FN_GSP_RM_CONTROL => {
                if p.len() < 0x18 || p.len() < 0x18 + u32_at(&p, 0x10) as usize {
                    return Ok((NV_ERR_INVALID_PARAM_STRUCT, p));
                }
                let st = self.rm_control(rm, &mut p);
                p[0xc..0x10].copy_from_slice(&st.to_le_bytes());
                st
            }
            FN_FREE => {
                let (client, object) = (u32_at(&p, 0), u32_at(&p, 8));
                let st = if rm.objects.remove(&(client, object)).is_some() {
                    // Everything under it goes too.
                    let mut gone = vec![object];
                    while let Some(h) = gone.pop() {
                        let kids: Vec<(u32, u32)> = rm
                            .objects
                            .iter()
                            .filter(|(k, o)| k.0 == client && o.parent == h)
                            .map(|(k, _)| *k)
                            .collect();
                        for k in kids {
                            rm.objects.remove(&k);
                            gone.push(k.1);
                        }
                    }
                    rm.channels.retain(|c| rm.objects.contains_key(&(client, c.handle)));
                    NV_OK
                } else {
                    NV_ERR_OBJECT_NOT_FOUND
                };
                if p.len() >= 16 {
                    p[12..16].copy_from_slice(&st.to_le_bytes());
                }
                st
            }
            _ => self.rm_set_page_directory(rm, &p)?,
        };
        Ok((status, p))
    }

    fn rm_alloc(&self, rm: &mut Rm, p: &[u8]) -> u32 {
        let (client, parent, handle, class, size) =
            (u32_at(p, 0), u32_at(p, 4), u32_at(p, 8), u32_at(p, 0xc), u32_at(p, 0x14));
        let params = p[0x20..0x20 + size as usize].to_vec();
        let parent_class = rm.objects.get(&(client, parent)).map(|o| o.class);
        let compute = self.compute_class();
        // (wanted parameter size, the parent classes allowed)
        let (want, parents): (usize, &[u32]) = match class {
            NV01_ROOT => (NV0000_PARAMS, &[]),
            NV01_DEVICE_0 => (NV0080_PARAMS, &[NV01_ROOT]),
            NV20_SUBDEVICE_0 => (NV2080_PARAMS, &[NV01_DEVICE_0]),
            FERMI_VASPACE_A => (VASPACE_PARAMS, &[NV01_DEVICE_0]),
            KEPLER_CHANNEL_GROUP_A => (TSG_PARAMS, &[NV01_DEVICE_0]),
            FERMI_CONTEXT_SHARE_A => (CTXSHARE_PARAMS, &[KEPLER_CHANNEL_GROUP_A]),
            AMPERE_CHANNEL_GPFIFO_A => (CHANNEL_PARAMS, &[KEPLER_CHANNEL_GROUP_A]),
            c if c == compute || c == AMPERE_DMA_COPY_B => (0, &[AMPERE_CHANNEL_GPFIFO_A]),
            _ => return NV_ERR_INVALID_CLASS,
        };
        if params.len() != want {
            return NV_ERR_INVALID_PARAM_STRUCT;
        }
        if class == NV01_ROOT {
            if handle != client || (parent != 0 && parent != client) || rm.objects.contains_key(&(client, client)) {
                return NV_ERR_INVALID_CLIENT;
            }
        } else if !rm.objects.contains_key(&(client, client)) {
            return NV_ERR_INVALID_CLIENT;
        } else if !parent_class.is_some_and(|c| parents.contains(&c)) {
            return NV_ERR_INVALID_OBJECT_PARENT;
        }
        if rm.objects.contains_key(&(client, handle)) {
            return NV_ERR_INSERT_DUPLICATE_NAME;
        }
        match class {
            FERMI_VASPACE_A if u32_at(&params, 4) & VASPACE_EXTERNALLY_OWNED == 0 => return NV_ERR_NOT_SUPPORTED,
            FERMI_CONTEXT_SHARE_A => {
                let vas = u32_at(&params, 0);
                if rm.objects.get(&(client, vas)).map(|o| o.class) != Some(FERMI_VASPACE_A) {
                    return NV_ERR_INVALID_ARGUMENT;
                }
            }
            AMPERE_CHANNEL_GPFIFO_A => match self.rm_channel(rm, client, handle, &params) {
                Ok(c) => rm.channels.push(c),
                Err(st) => return st,
            },
            _ => {}
        }
        rm.objects.insert((client, handle), Object { class, parent, params });
        NV_OK
    }

    /// A GPFIFO channel's parameters: the ring's VA and size, USERD, the context share's VA
    /// space (whose page directory must have been given).
    fn rm_channel(&self, rm: &Rm, client: u32, handle: u32, p: &[u8]) -> Result<Channel, u32> {
        let (va, entries, share) = (u64_at(p, 8), u32_at(p, 0x10), u32_at(p, 0x18));
        let vas =
            rm.objects.get(&(client, share)).filter(|o| o.class == FERMI_CONTEXT_SHARE_A).map(|o| u32_at(&o.params, 0));
        let root = vas.and_then(|v| rm.roots.get(&(client, v))).ok_or(NV_ERR_INVALID_STATE)?;
        if entries == 0 || !entries.is_power_of_two() || !va.is_multiple_of(8) {
            return Err(NV_ERR_INVALID_ARGUMENT);
        }
        // userdMem: base, size, address space (1 system memory, 2 VRAM).
        let (userd, size, space) = (u64_at(p, 0xa8), u64_at(p, 0xb0), u32_at(p, 0xb8));
        if size < 0x200 || !userd.is_multiple_of(0x200) || !(1..=2).contains(&space) {
            return Err(NV_ERR_INVALID_ARGUMENT);
        }
        let chid = rm.channels.iter().map(|c| c.chid + 1).max().unwrap_or(0);
        Ok(Channel {
            chid,
            handle,
            root: *root,
            gpfifo_va: va,
            entries,
            userd,
            userd_sys: space == 1,
            ..Channel::default()
        })
    }

    fn rm_control(&self, rm: &mut Rm, p: &mut [u8]) -> u32 {
        let (client, object, cmd, size) = (u32_at(p, 0), u32_at(p, 4), u32_at(p, 8), u32_at(p, 0x10) as usize);
        let Some(class) = rm.objects.get(&(client, object)).map(|o| o.class) else {
            return NV_ERR_OBJECT_NOT_FOUND;
        };
        let params = &mut p[0x18..0x18 + size];
        let put = |b: &mut [u8], at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        match (cmd, class) {
            (CTRL_FIFO_GET_DEVICE_INFO_TABLE, NV20_SUBDEVICE_0) if size == DEVICE_INFO_TABLE_BYTES => {
                // Two engines: graphics/compute (RM engine type 1) and copy 0 (type 9).
                params.fill(0);
                put(params, 4, 2);
                for (k, (ty, runlist)) in [(ENGINE_TYPE_GR0, GR_RUNLIST), (9, 2)].into_iter().enumerate() {
                    let e = 0xc + k * DEVICE_INFO_ENTRY_BYTES;
                    put(params, e + 4 * ENGINE_DATA_RM_ENGINE_TYPE, ty);
                    put(params, e + 4 * ENGINE_DATA_RUNLIST, runlist);
                }
                NV_OK
            }
            (CTRL_GPFIFO_GET_WORK_SUBMIT_TOKEN, AMPERE_CHANNEL_GPFIFO_A) if size == 4 => {
                // GSP-RM fills in the channel id only (tinygrad's reading).
                match rm.channels.iter().find(|c| c.handle == object) {
                    Some(c) => {
                        put(params, 0, c.chid);
                        NV_OK
                    }
                    None => NV_ERR_INVALID_STATE,
                }
            }
            (CTRL_TSG_GPFIFO_SCHEDULE, KEPLER_CHANNEL_GROUP_A) if size == 2 => {
                rm.scheduled = params[0] != 0;
                NV_OK
            }
            _ => NV_ERR_NOT_SUPPORTED,
        }
    }

    fn rm_set_page_directory(&self, rm: &mut Rm, p: &[u8]) -> Result<u32, String> {
        if p.len() < 0x30 {
            return Ok(NV_ERR_INVALID_PARAM_STRUCT);
        }
        let (client, root, entries, flags, vas) =
            (u32_at(p, 0), u64_at(p, 0x10), u32_at(p, 0x18), u32_at(p, 0x1c), u32_at(p, 0x20));
        match rm.objects.get(&(client, vas)) {
            Some(o) if o.class == FERMI_VASPACE_A && u32_at(&o.params, 4) & VASPACE_EXTERNALLY_OWNED != 0 => {}
            _ => return Ok(NV_ERR_INVALID_ARGUMENT),
        }
        if flags & 3 != PD_APERTURE_SYS_COH || entries != 4 || !root.is_multiple_of(4096) {
            return Ok(NV_ERR_INVALID_ARGUMENT);
        }
        // The root must be memory the GPU can read.
        if self.read_bus(root, 32).is_err() {
            return Ok(NV_ERR_INVALID_ARGUMENT);
        }
        rm.roots.insert((client, vas), root);
        Ok(NV_OK)
    }
}
