//! The `tinygpu-server` transport: the TinyGPU.app Unix-socket protocol (../shared/notes/tinygpu.md).
//! tk-sim has a server that speaks it in front of a simulated GPU, for tests.
//!
//! A request is packed little-endian `{u8 cmd; u32 dev_id; u32 bar; u64 arg0, arg1, arg2}`; a
//! response `{u8 status; u64 r0, r1}`, followed on error (status != 0) by r0 bytes of message.
//! Registers and VRAM are one round trip per 32-bit access, so the driver keeps everything it
//! can in the shared system memory that MAP_SYSMEM_FD hands over (the file descriptor comes with
//! the response as SCM_RIGHTS; the memory starts with its bus segment list: u64 pairs
//! `[bus, bytes]`, ended by `[0, 0]`).

use super::*;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PROBE: u8 = 0;
pub const MAP_SYSMEM_FD: u8 = 2;
pub const MMIO_READ: u8 = 6;
pub const MMIO_WRITE: u8 = 7;
pub const PING: u8 = 12;
// The rest of the command set (source: ../shared/notes/tinygpu.md; tinygrad's RemoteCmd and
// TinyGPU.app's server.c, where MAP_BAR answers the BAR's size).
pub const MAP_BAR: u8 = 1;
pub const CFG_READ: u8 = 3;
pub const CFG_WRITE: u8 = 4;
pub const RESET: u8 = 5;

/// The bytes of a request and of a response.
pub const REQUEST: usize = 33;
pub const RESPONSE: usize = 17;

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
pub struct Mapped(pub Mutex<memmap2::MmapMut>);

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
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        check_config_access(offset, width)?;
        Ok(self.call(CFG_READ, 0, [u64::from(offset), u64::from(width), 0])?.0 as u32)
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        check_config_access(offset, width)?;
        self.call(CFG_WRITE, 0, [u64::from(offset), u64::from(width), u64::from(value)]).map(|_| ())
    }
    fn reset(&self) -> Result<(), String> {
        self.call(RESET, 0, [0; 3]).map(|_| ())
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        Ok(self.call(MAP_BAR, u32::from(bar), [0; 3])?.0)
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn sock(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tk-tgc-{}-{name}.sock", std::process::id()))
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
