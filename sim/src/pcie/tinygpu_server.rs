//! A TinyGPU server: the TinyGPU.app socket protocol (tk-gpu's `transport::tinygpu`) in front of
//! a simulated AMD or NVIDIA GPU, on its own thread; each client gets a fresh GPU. Tests and demos
//! run the userspace drivers over the real protocol with it.

use super::amd::SimGpu;
use super::nv::{NvSimGpu, NvSimOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tk_gpu::transport::tinygpu::{
    CFG_READ, CFG_WRITE, MAP_BAR, MAP_SYSMEM_FD, MMIO_READ, MMIO_WRITE, Mapped, PING, PROBE, REQUEST, RESET, RESPONSE,
};
use tk_gpu::transport::{HostMem, Transport};

/// A simulated GPU the server can stand in front of: its PCI ids, and system memory the server
/// shares with its client, attached to the GPU's bus.
pub trait Served: Transport {
    fn ids(&self) -> (u16, u16);
    fn attach_sysmem(&self, mem: Arc<dyn HostMem>) -> Result<Vec<(u64, u64)>, String>;
}

impl Served for SimGpu {
    fn ids(&self) -> (u16, u16) {
        // AMD, Navi 31 (RX 7900 XTX).
        (0x1002, 0x744c)
    }
    fn attach_sysmem(&self, mem: Arc<dyn HostMem>) -> Result<Vec<(u64, u64)>, String> {
        SimGpu::attach_sysmem(self, mem)
    }
}

impl Served for NvSimGpu {
    fn ids(&self) -> (u16, u16) {
        (0x10de, self.device_id())
    }
    fn attach_sysmem(&self, mem: Arc<dyn HostMem>) -> Result<Vec<(u64, u64)>, String> {
        NvSimGpu::attach_sysmem(self, mem)
    }
}

type MakeGpu = Arc<dyn Fn() -> Box<dyn Served> + Send + Sync>;

/// A fake TinyGPU server: the protocol in front of a simulated GPU, on its own thread.
pub struct FakeServer {
    pub path: PathBuf,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeServer {
    /// Listens at `path` (replacing a stale socket file), with a simulated AMD GPU per client.
    pub fn start(path: &Path) -> Result<FakeServer, String> {
        FakeServer::start_with(path, Arc::new(|| Box::new(SimGpu::new()) as Box<dyn Served>))
    }

    /// Listens at `path` with a simulated NVIDIA GPU with options `opts` per client.
    pub fn start_nv(path: &Path, opts: NvSimOptions) -> Result<FakeServer, String> {
        FakeServer::start_with(path, Arc::new(move || Box::new(NvSimGpu::new(opts)) as Box<dyn Served>))
    }

    fn start_with(path: &Path, make: MakeGpu) -> Result<FakeServer, String> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        let thread = std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if let (Ok(mut list), Ok(copy)) = (c.lock(), s.try_clone()) {
                    list.push(copy);
                }
                let make = make.clone();
                std::thread::spawn(move || serve(s, make().as_ref()));
            }
        });
        Ok(FakeServer { path: path.to_path_buf(), conns, _thread: thread })
    }

    /// Disconnects every client, as a server that quits does.
    pub fn disconnect(&self) {
        if let Ok(list) = self.conns.lock() {
            for s in list.iter() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

fn respond(s: &mut UnixStream, r: Result<(u64, u64), String>) -> std::io::Result<()> {
    let mut b = [0u8; RESPONSE];
    match r {
        Ok((a, c)) => {
            b[1..9].copy_from_slice(&a.to_le_bytes());
            b[9..17].copy_from_slice(&c.to_le_bytes());
            s.write_all(&b)
        }
        Err(m) => {
            b[0] = 1;
            b[1..9].copy_from_slice(&(m.len() as u64).to_le_bytes());
            s.write_all(&b)?;
            s.write_all(m.as_bytes())
        }
    }
}

/// One client's session with a fresh simulated GPU.
fn serve(mut s: UnixStream, gpu: &dyn Served) {
    let mut keep = Vec::new();
    let mut req = [0u8; REQUEST];
    while s.read_exact(&mut req).is_ok() {
        let w = |o: usize| u64::from_le_bytes(req[o..o + 8].try_into().unwrap_or([0; 8]));
        let bar = u32::from_le_bytes([req[5], req[6], req[7], req[8]]) as u8;
        let (a0, a1, a2) = (w(9), w(17), w(25));
        let r = match req[0] {
            PING => gpu.fault().map_or(Ok((0, 0)), |f| Err(format!("the GPU faulted: {f}"))),
            PROBE => {
                let (v, d) = gpu.ids();
                Ok((u64::from(v), u64::from(d)))
            }
            MMIO_READ => gpu.read32(bar, a0).map(|v| (u64::from(v), 0)),
            MMIO_WRITE => gpu.write32(bar, a0, a1 as u32).map(|_| (0, 0)),
            MAP_BAR => gpu.bar_size(bar).map(|n| (n, 0)),
            CFG_READ => gpu.config_read(a0 as u16, a1 as u8).map(|v| (u64::from(v), 0)),
            CFG_WRITE => gpu.config_write(a0 as u16, a1 as u8, a2 as u32).map(|_| (0, 0)),
            RESET => gpu.reset().map(|_| (0, 0)),
            MAP_SYSMEM_FD => match share(gpu, a0) {
                Ok((fd, map)) => {
                    keep.push(map);
                    let mut b = [0u8; RESPONSE];
                    b[1..9].copy_from_slice(&a0.to_le_bytes());
                    let iov = [std::io::IoSlice::new(&b)];
                    let fds = [fd.as_raw_fd()];
                    let cm = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
                    if nix::sys::socket::sendmsg::<()>(
                        s.as_raw_fd(),
                        &iov,
                        &cm,
                        nix::sys::socket::MsgFlags::empty(),
                        None,
                    )
                    .is_err()
                    {
                        return;
                    }
                    continue;
                }
                Err(m) => Err(m),
            },
            c => Err(format!("unknown command {c}")),
        };
        if respond(&mut s, r).is_err() {
            return;
        }
    }
}

/// Creates shared memory for a client: an unlinked file, mapped here and attached to the GPU,
/// with the segment list at its start.
fn share(gpu: &dyn Served, bytes: u64) -> Result<(OwnedFd, Arc<dyn HostMem>), String> {
    if !(16 << 10..=1 << 30).contains(&bytes) {
        return Err(format!("system memory of {bytes} bytes (16 KiB to 1 GiB)"));
    }
    let path = std::env::temp_dir().join(format!("tk-tinygpu-{}-{}", std::process::id(), rand_suffix()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    file.set_len(bytes).map_err(|e| e.to_string())?;
    // SAFETY: the file is this server's and its client's alone.
    let map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| e.to_string())?;
    let mem: Arc<dyn HostMem> = Arc::new(Mapped(Mutex::new(map)));
    let segs = gpu.attach_sysmem(mem.clone())?;
    mem.with(&mut |m: &mut [u8]| {
        for (k, (b, l)) in segs.iter().enumerate() {
            m[16 * k..16 * k + 8].copy_from_slice(&b.to_le_bytes());
            m[16 * k + 8..16 * k + 16].copy_from_slice(&l.to_le_bytes());
        }
    });
    Ok((OwnedFd::from(file), mem))
}

fn rand_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
