//! The `tinygpu-server` transport: the TinyGPU.app Unix-socket protocol (../shared/notes/tinygpu.md),
//! and a fake server backed by the simulated GPU for tests.
//!
//! A request is packed little-endian `{u8 cmd; u32 dev_id; u32 bar; u64 arg0, arg1, arg2}`; a
//! response `{u8 status; u64 r0, r1}`, followed on error (status != 0) by r0 bytes of message.
//! Registers and VRAM are one round trip per 32-bit access, so the driver keeps everything it
//! can in the shared system memory that MAP_SYSMEM_FD hands over (the file descriptor comes with
//! the response as SCM_RIGHTS; the memory starts with its bus segment list: u64 pairs
//! `[bus, bytes]`, ended by `[0, 0]`).

use super::simgpu::SimGpu;
use super::transport::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PROBE: u8 = 0;
pub const MAP_SYSMEM_FD: u8 = 2;
pub const MMIO_READ: u8 = 6;
pub const MMIO_WRITE: u8 = 7;
pub const PING: u8 = 12;

const REQUEST: usize = 33;
const RESPONSE: usize = 17;

/// How long the client waits for a response before it gives up on the server.
const ANSWER: Duration = Duration::from_secs(10);

fn request(cmd: u8, dev: u32, bar: u32, a: [u64; 3]) -> [u8; REQUEST] {
    let mut b = [0u8; REQUEST];
    b[0] = cmd;
    b[1..5].copy_from_slice(&dev.to_le_bytes());
    b[5..9].copy_from_slice(&bar.to_le_bytes());
    for (k, v) in a.iter().enumerate() {
        b[9 + 8 * k..17 + 8 * k].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// Shared memory mapped from the server's file descriptor.
struct Mapped(Mutex<memmap2::MmapMut>);

impl HostMem for Mapped {
    fn len(&self) -> usize {
        self.0.lock().map(|m| m.len()).unwrap_or(0)
    }
    fn with(&self, f: &mut dyn FnMut(&mut [u8])) {
        if let Ok(mut m) = self.0.lock() {
            f(&mut m);
        }
    }
}

/// A client of a TinyGPU server.
pub struct TinyGpu {
    path: PathBuf,
    sock: Mutex<UnixStream>,
    dev: u32,
    trips: AtomicU64,
    /// The lock that makes this process the GPU's only user (released when dropped).
    _lock: std::fs::File,
}

/// Takes the lock of the GPU behind `path`: one process at a time drives a GPU.
fn lock(path: &Path) -> Result<std::fs::File, String> {
    let name: String =
        path.display().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    let lock = std::env::temp_dir().join(format!("tk-gpu-{name}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| format!("{}: {e}", lock.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "the GPU behind {} is busy: another process is using it (lock file {})",
            path.display(),
            lock.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(format!("{}: {e}", lock.display())),
    }
}

impl TinyGpu {
    /// Connects to the server at `path` and checks that it answers.
    pub fn connect(path: &Path) -> Result<TinyGpu, String> {
        let l = lock(path)?;
        let s = UnixStream::connect(path).map_err(|e| {
            format!("cannot connect to the TinyGPU server at {}: {e} (is TinyGPU.app running?)", path.display())
        })?;
        s.set_read_timeout(Some(ANSWER)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(ANSWER)).map_err(|e| e.to_string())?;
        let t = TinyGpu { path: path.to_path_buf(), sock: Mutex::new(s), dev: 0, trips: AtomicU64::new(0), _lock: l };
        t.call(PING, 0, [0; 3])?;
        Ok(t)
    }

    /// The (vendor, device) ids of the GPU.
    pub fn probe(&self) -> Result<(u16, u16), String> {
        let (a, b) = self.call(PROBE, 0, [0; 3])?;
        Ok((a as u16, b as u16))
    }

    fn gone(&self, e: std::io::Error) -> String {
        match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                format!("the TinyGPU server at {} did not answer within {} s", self.path.display(), ANSWER.as_secs())
            }
            _ => format!("the connection to the TinyGPU server at {} broke: {e}", self.path.display()),
        }
    }

    fn send(&self, s: &mut UnixStream, cmd: u8, bar: u32, a: [u64; 3]) -> Result<(), String> {
        self.trips.fetch_add(1, Ordering::Relaxed);
        s.write_all(&request(cmd, self.dev, bar, a)).map_err(|e| self.gone(e))
    }

    fn answer(&self, s: &mut UnixStream, r: &[u8; RESPONSE]) -> Result<(u64, u64), String> {
        let w = |o: usize| u64::from_le_bytes(r[o..o + 8].try_into().unwrap_or([0; 8]));
        if r[0] != 0 {
            let n = w(1).min(1 << 16) as usize;
            let mut m = vec![0u8; n];
            s.read_exact(&mut m).map_err(|e| self.gone(e))?;
            return Err(format!("the TinyGPU server refused: {}", String::from_utf8_lossy(&m)));
        }
        Ok((w(1), w(9)))
    }

    fn call(&self, cmd: u8, bar: u32, a: [u64; 3]) -> Result<(u64, u64), String> {
        let mut s = self.sock.lock().map_err(|_| "poisoned")?;
        self.send(&mut s, cmd, bar, a)?;
        let mut r = [0u8; RESPONSE];
        s.read_exact(&mut r).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                format!("the TinyGPU server at {} closed the connection", self.path.display())
            } else {
                self.gone(e)
            }
        })?;
        self.answer(&mut s, &r)
    }
}

impl Transport for TinyGpu {
    fn name(&self) -> String {
        format!("tinygpu-server {}", self.path.display())
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        Ok(self.call(MMIO_READ, u32::from(bar), [off, 0, 0])?.0 as u32)
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        self.call(MMIO_WRITE, u32::from(bar), [off, u64::from(v), 0]).map(|_| ())
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        self.write32(bar, off, v as u32)?;
        self.write32(bar, off + 4, (v >> 32) as u32)
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        if !off.is_multiple_of(4) || !out.len().is_multiple_of(4) {
            return Err("BAR reads over the TinyGPU server are whole dwords".into());
        }
        for (k, c) in out.chunks_mut(4).enumerate() {
            c.copy_from_slice(&self.read32(bar, off + 4 * k as u64)?.to_le_bytes());
        }
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        if !off.is_multiple_of(4) || !src.len().is_multiple_of(4) {
            return Err("BAR writes over the TinyGPU server are whole dwords".into());
        }
        for (k, c) in src.chunks(4).enumerate() {
            self.write32(bar, off + 4 * k as u64, u32::from_le_bytes([c[0], c[1], c[2], c[3]]))?;
        }
        Ok(())
    }
    fn fault(&self) -> Option<String> {
        self.call(PING, 0, [0; 3]).err()
    }
    fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        let mut s = self.sock.lock().map_err(|_| "poisoned")?;
        self.send(&mut s, MAP_SYSMEM_FD, 0, [bytes as u64, 0, 0])?;
        let mut r = [0u8; RESPONSE];
        let mut got = 0;
        let mut fd: Option<OwnedFd> = None;
        while got < RESPONSE {
            let mut iov = [std::io::IoSliceMut::new(&mut r[got..])];
            let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
            let msg = recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                .map_err(|e| format!("receiving the shared memory from the TinyGPU server: {e}"))?;
            if msg.bytes == 0 {
                return Err(format!("the TinyGPU server at {} closed the connection", self.path.display()));
            }
            got += msg.bytes;
            for c in msg.cmsgs().map_err(|e| format!("the server's control message: {e}"))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel just gave this process the descriptor; nothing else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        fd.get_or_insert(owned);
                    }
                }
            }
        }
        self.answer(&mut s, &r)?;
        drop(s);
        let fd = fd.ok_or("the TinyGPU server sent no file descriptor for the shared memory")?;
        let file = std::fs::File::from(fd);
        // SAFETY: the server created this memory for the client; both sides access it only
        // through the locks of their own mappings, as DMA memory shared with a device.
        let map = unsafe { memmap2::MmapMut::map_mut(&file) }.map_err(|e| format!("mapping the shared memory: {e}"))?;
        if map.len() < bytes {
            return Err(format!("the shared memory has {} bytes, {bytes} were asked for", map.len()));
        }
        let mut segments = Vec::new();
        for k in 0..map.len().min(1 << 16) / 16 {
            let w = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().unwrap_or([0; 8]));
            let (bus, len) = (w(16 * k), w(16 * k + 8));
            if bus == 0 && len == 0 {
                break;
            }
            segments.push((bus, len));
        }
        if segments.is_empty() {
            return Err("the shared memory holds no bus segment list".into());
        }
        Ok(SysMem { mem: Arc::new(Mapped(Mutex::new(map))), segments })
    }
}

/// A fake TinyGPU server: the protocol in front of a simulated GPU, on its own thread.
pub struct FakeServer {
    pub path: PathBuf,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    _thread: std::thread::JoinHandle<()>,
}

impl FakeServer {
    /// Listens at `path` (replacing a stale socket file).
    pub fn start(path: &Path) -> Result<FakeServer, String> {
        let _ = std::fs::remove_file(path);
        let l = UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let c = conns.clone();
        let thread = std::thread::spawn(move || {
            for s in l.incoming().flatten() {
                if let (Ok(mut list), Ok(copy)) = (c.lock(), s.try_clone()) {
                    list.push(copy);
                }
                std::thread::spawn(move || serve(s));
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

/// One client's session: a fresh simulated GPU.
fn serve(mut s: UnixStream) {
    let gpu = SimGpu::new();
    let mut keep = Vec::new();
    let mut req = [0u8; REQUEST];
    while s.read_exact(&mut req).is_ok() {
        let w = |o: usize| u64::from_le_bytes(req[o..o + 8].try_into().unwrap_or([0; 8]));
        let bar = u32::from_le_bytes([req[5], req[6], req[7], req[8]]) as u8;
        let (a0, a1) = (w(9), w(17));
        let r = match req[0] {
            PING => gpu.fault().map_or(Ok((0, 0)), |f| Err(format!("the GPU faulted: {f}"))),
            // AMD, Navi 31 (RX 7900 XTX).
            PROBE => Ok((0x1002, 0x744c)),
            MMIO_READ => gpu.read32(bar, a0).map(|v| (u64::from(v), 0)),
            MMIO_WRITE => gpu.write32(bar, a0, a1 as u32).map(|_| (0, 0)),
            MAP_SYSMEM_FD => match share(&gpu, a0) {
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
fn share(gpu: &SimGpu, bytes: u64) -> Result<(OwnedFd, Arc<dyn HostMem>), String> {
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
    let segs = gpu.attach_sysmem(mem.clone());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::Device;
    use crate::gpu::device::AmdDevice;
    use std::time::Instant;

    fn sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tk-tg-{}-{name}.sock", std::process::id()))
    }

    fn open(s: &FakeServer) -> AmdDevice {
        let t = TinyGpu::connect(&s.path).expect("connects");
        assert_eq!(t.probe().expect("probe"), (0x1002, 0x744c));
        AmdDevice::open("amd:tinygpu", Box::new(t), tk_ir::launch::AmdTarget::ALL[0]).expect("opens")
    }

    #[test]
    fn uploading_a_mebibyte_takes_a_constant_number_of_round_trips() {
        let s = FakeServer::start(&sock("upload")).expect("server");
        let dev = open(&s);
        let q = dev.queue();
        let buf = dev.alloc(1 << 20).expect("alloc");
        let data: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + (i >> 11)) as u8).collect();
        let before = dev.round_trips();
        dev.write(&q, &buf, &data).expect("upload");
        let trips = dev.round_trips() - before;
        // The data goes through shared memory and the GPU's DMA: the doorbell (two 32-bit
        // writes) and a few fault checks, not one request per dword.
        eprintln!("uploading 1 MiB took {trips} round trips");
        assert!(trips <= 8, "{trips} round trips for 1 MiB");
        let mut back = vec![0u8; 1 << 20];
        dev.read(&q, &buf, &mut back).expect("download");
        assert!(back == data, "the data comes back");
    }

    #[test]
    fn a_server_that_goes_away_is_an_error_not_a_hang() {
        let s = FakeServer::start(&sock("gone")).expect("server");
        let dev = open(&s);
        let q = dev.queue();
        let buf = dev.alloc(4096).expect("alloc");
        s.disconnect();
        let start = Instant::now();
        let e = dev.write(&q, &buf, &[1; 4096]).expect_err("the server is gone");
        assert!(start.elapsed() < Duration::from_secs(30), "no hang");
        let m = e.to_string();
        assert!(m.contains("closed the connection") || m.contains("broke"), "{m}");
        // The device is lost from now on.
        assert!(dev.alloc(16).is_err());
    }

    #[test]
    fn a_gpu_has_one_user_at_a_time() {
        let s = FakeServer::start(&sock("busy")).expect("server");
        let first = TinyGpu::connect(&s.path).expect("connects");
        let e = TinyGpu::connect(&s.path).err().expect("busy");
        assert!(e.contains("busy"), "{e}");
        drop(first);
        TinyGpu::connect(&s.path).expect("free again");
    }

    #[test]
    fn protocol_errors_are_reported() {
        // No server.
        let e = TinyGpu::connect(&sock("nobody")).err().expect("no server");
        assert!(e.contains("cannot connect") && e.contains("TinyGPU.app"), "{e}");
        // A server that refuses every request, and one that hangs up mid-answer.
        for (name, reply) in
            [("refuses", b"\x01\x04\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0nope".to_vec()), ("short", vec![0u8; 5])]
        {
            let path = sock(name);
            let _ = std::fs::remove_file(&path);
            let l = UnixListener::bind(&path).expect("bind");
            let t = std::thread::spawn(move || {
                if let Ok((mut c, _)) = l.accept() {
                    let mut r = [0u8; REQUEST];
                    let _ = c.read_exact(&mut r);
                    let _ = c.write_all(&reply);
                }
            });
            let e = TinyGpu::connect(&path).err().expect("fails");
            if name == "refuses" {
                assert!(e.contains("refused: nope"), "{e}");
            } else {
                assert!(e.contains("closed the connection"), "{e}");
            }
            let _ = t.join();
        }
    }
}
