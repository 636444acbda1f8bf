//! `TK_DRIVER_TRACE=FILE`: a text record of every transport call a driver makes, and its replay.
//!
//! [`Recorder`] wraps a transport and writes one line per call: register and configuration
//! reads (with what they returned) and writes, BAR byte reads and writes, resets, and system
//! memory allocations (with their bus segments). Before each 64-bit write (a doorbell) and each
//! 32-bit write (a register, such as the PSP's mailbox, which makes firmware read system
//! memory), it writes the bytes that changed in shared system memory since the previous one, as
//! `sys` lines:
//! the CPU's writes (rings, arguments, staged uploads), and also what the GPU wrote there
//! meanwhile (fences, downloads), which a recorder on the CPU's side cannot tell apart. Repeated identical configuration reads (the driver polling whether the GPU still
//! answers) become one line with a count, and replay by their final value only. A user with
//! hardware sends such a file when something fails; [`replay`] runs one against another
//! transport (the simulated GPU in tk's tests) and stops at the first read that differs.
//!
//! The format, one call per line (numbers in hexadecimal with `0x`, except counts and widths):
//! ```text
//! # tk driver trace 1
//! sysmem BYTES -> BUS:LEN,BUS:LEN,...
//! read32 BAR OFF -> VALUE
//! write32 BAR OFF VALUE
//! sys INDEX OFF HEX          (system memory INDEX, in allocation order)
//! write64 BAR OFF VALUE
//! read BAR OFF LEN -> HEX|zero*LEN
//! write BAR OFF HEX|zero*LEN
//! config-read OFF WIDTH -> VALUE [xN]
//! config-write OFF WIDTH VALUE
//! reset
//! ```

use super::{HostMem, SysMem, Transport};
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

/// Hex of bytes, or `zero*N` for zeros.
fn bytes_text(b: &[u8]) -> String {
    if b.iter().all(|&x| x == 0) {
        return format!("zero*{}", b.len());
    }
    let mut s = String::with_capacity(2 * b.len());
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

/// The most bytes one trace line may ask for (a read, a run of zeros, a system memory): more
/// than any driver call makes, and little enough to allocate.
const MAX_BYTES: u64 = 1 << 28;

fn parse_bytes(s: &str) -> Result<Vec<u8>, String> {
    if let Some(n) = s.strip_prefix("zero*") {
        let n: u64 = n.parse().map_err(|_| format!("`{s}` is not zero*COUNT"))?;
        if n > MAX_BYTES {
            return Err(format!("`{s}`: more than {MAX_BYTES} bytes"));
        }
        return Ok(vec![0; n as usize]);
    }
    if !s.len().is_multiple_of(2) {
        return Err(format!("`{s}` has an odd number of hex digits"));
    }
    s.as_bytes()
        .chunks(2)
        .map(|c| {
            std::str::from_utf8(c)
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("`{s}` is not hex"))
        })
        .collect()
}

struct State {
    out: std::io::BufWriter<std::fs::File>,
    /// Each system memory handed out, with its contents at the last doorbell.
    sys: Vec<(Arc<dyn HostMem>, Vec<u8>)>,
    /// A configuration read not yet written: its line and how often it repeated.
    poll: Option<(String, u64)>,
    error: Option<String>,
}

/// A transport that records every call to a file.
pub struct Recorder {
    inner: Box<dyn Transport>,
    st: Mutex<State>,
}

impl Recorder {
    /// Wraps `inner`, writing the trace to `path` (created or truncated). A process that
    /// traces a second GPU (`tk devices --verbose` opens each simulated one) writes its trace
    /// to `path.2`, the third to `path.3`: one file per GPU, each replayable on its own.
    pub fn create(inner: Box<dyn Transport>, path: &std::path::Path) -> Result<Recorder, String> {
        static USED: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
        let path = match USED.lock() {
            Ok(mut used) => {
                let n = used.iter().filter(|p| p.as_path() == path).count();
                used.push(path.to_path_buf());
                if n == 0 {
                    path.to_path_buf()
                } else {
                    let mut p = path.as_os_str().to_owned();
                    p.push(format!(".{}", n + 1));
                    std::path::PathBuf::from(p)
                }
            }
            Err(_) => path.to_path_buf(),
        };
        let path = path.as_path();
        let f = std::fs::File::create(path)
            .map_err(|e| format!("TK_DRIVER_TRACE: cannot create {}: {e}", path.display()))?;
        let mut out = std::io::BufWriter::new(f);
        let _ = writeln!(out, "# tk driver trace 1: {}", inner.name());
        Ok(Recorder { inner, st: Mutex::new(State { out, sys: Vec::new(), poll: None, error: None }) })
    }

    fn line(&self, l: String) {
        if let Ok(mut st) = self.st.lock() {
            Self::flush_poll(&mut st);
            // Flushed line by line: a process that exits or crashes keeps its trace.
            if let Err(e) = writeln!(st.out, "{l}").and_then(|()| st.out.flush()) {
                st.error.get_or_insert(e.to_string());
            }
        }
    }

    fn flush_poll(st: &mut State) {
        if let Some((l, n)) = st.poll.take() {
            let l = if n > 1 { format!("{l} x{n}") } else { l };
            if let Err(e) = writeln!(st.out, "{l}") {
                st.error.get_or_insert(e.to_string());
            }
        }
    }

    /// The CPU's writes to system memory since the last doorbell, as `sys` lines.
    fn sys_changes(&self) {
        let Ok(mut st) = self.st.lock() else { return };
        Self::flush_poll(&mut st);
        let mut lines = Vec::new();
        for (k, (mem, shadow)) in st.sys.iter_mut().enumerate() {
            mem.with(&mut |m: &mut [u8]| {
                let mut i = 0;
                while i < m.len() {
                    // Whole unchanged pages are skipped with one comparison.
                    if i % 4096 == 0 {
                        let e = (i + 4096).min(m.len());
                        if m[i..e] == shadow[i..e] {
                            i = e;
                            continue;
                        }
                    }
                    if m[i] == shadow[i] {
                        i += 1;
                        continue;
                    }
                    // A run of changes, joining gaps shorter than 16 bytes.
                    let start = i;
                    let mut end = i + 1;
                    let mut j = i + 1;
                    while j < m.len() && j < end + 16 {
                        if m[j] != shadow[j] {
                            end = j + 1;
                        }
                        j += 1;
                    }
                    lines.push(format!("sys {k} 0x{start:x} {}", bytes_text(&m[start..end])));
                    shadow[start..end].copy_from_slice(&m[start..end]);
                    i = end;
                }
            });
        }
        for l in lines {
            if let Err(e) = writeln!(st.out, "{l}") {
                st.error.get_or_insert(e.to_string());
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Ok(mut st) = self.st.lock() {
            Self::flush_poll(&mut st);
            let _ = st.out.flush();
        }
    }
}

impl Transport for Recorder {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        let v = self.inner.read32(bar, off)?;
        self.line(format!("read32 {bar} 0x{off:x} -> 0x{v:x}"));
        Ok(v)
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        // A register write can make firmware read system memory (the PSP's mailbox and ring):
        // the memory goes first, as at a doorbell.
        self.sys_changes();
        self.line(format!("write32 {bar} 0x{off:x} 0x{v:x}"));
        self.inner.write32(bar, off, v)
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        self.sys_changes();
        self.line(format!("write64 {bar} 0x{off:x} 0x{v:x}"));
        self.inner.write64(bar, off, v)
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        self.inner.read_bytes(bar, off, out)?;
        self.line(format!("read {bar} 0x{off:x} {} -> {}", out.len(), bytes_text(out)));
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        self.line(format!("write {bar} 0x{off:x} {}", bytes_text(src)));
        self.inner.write_bytes(bar, off, src)
    }
    fn fault(&self) -> Option<String> {
        self.inner.fault()
    }
    fn round_trips(&self) -> u64 {
        self.inner.round_trips()
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        let m = self.inner.sysmem(bytes)?;
        let segs: Vec<String> = m.segments.iter().map(|(b, n)| format!("0x{b:x}:0x{n:x}")).collect();
        self.line(format!("sysmem {bytes} -> {}", segs.join(",")));
        let mut shadow = Vec::new();
        m.mem.with(&mut |x: &mut [u8]| shadow = x.to_vec());
        if let Ok(mut st) = self.st.lock() {
            st.sys.push((m.mem.clone(), shadow));
        }
        Ok(m)
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        let v = self.inner.config_read(offset, width)?;
        let l = format!("config-read 0x{offset:x} {width} -> 0x{v:x}");
        if let Ok(mut st) = self.st.lock() {
            match &mut st.poll {
                Some((p, n)) if *p == l => *n += 1,
                _ => {
                    Self::flush_poll(&mut st);
                    st.poll = Some((l, 1));
                }
            }
        }
        Ok(v)
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        self.line(format!("config-write 0x{offset:x} {width} 0x{value:x}"));
        self.inner.config_write(offset, width, value)
    }
    fn reset(&self) -> Result<(), String> {
        self.line("reset".into());
        self.inner.reset()
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        self.inner.bar_size(bar)
    }
    fn firmware(&self) -> Option<Vec<(String, Vec<u8>)>> {
        self.inner.firmware()
    }
}

fn num(s: &str) -> Result<u64, String> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
    .map_err(|_| format!("`{s}` is not a number"))
}

/// Replays a trace against `t`: the same calls in the same order. Reads must return what the
/// trace holds; `settle` runs after each 64-bit write (a doorbell), to wait for the device as
/// the driver did. Returns the number of calls replayed, or the first line that failed.
pub fn replay(text: &str, t: &dyn Transport, settle: &dyn Fn() -> Result<(), String>) -> Result<usize, String> {
    let mut sys: Vec<SysMem> = Vec::new();
    let mut calls = 0;
    for (n, line) in text.lines().enumerate() {
        let at = |m: String| format!("trace line {}: {m}\n  {line}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (call, want) = match line.split_once(" -> ") {
            Some((c, w)) => (c, Some(w)),
            None => (line, None),
        };
        let f: Vec<&str> = call.split_whitespace().collect();
        let arg = |i: usize| {
            f.get(i).copied().ok_or_else(|| at("a field is missing".into())).and_then(|s| num(s).map_err(at))
        };
        // A field that must fit a narrower type (a BAR, a width, a register value) or be a
        // byte count a line may ask for.
        let small = |i: usize, max: u64, what: &str| -> Result<u64, String> {
            let v = arg(i)?;
            if v > max {
                return Err(at(format!("{what} {v:#x} is out of range (at most {max:#x})")));
            }
            Ok(v)
        };
        let bar = |i: usize| small(i, u64::from(u8::MAX), "the BAR").map(|v| v as u8);
        let word = |i: usize| small(i, u64::from(u32::MAX), "the value").map(|v| v as u32);
        let len = |i: usize| small(i, MAX_BYTES, "the byte count").map(|v| v as usize);
        let want_num = || -> Result<u64, String> {
            let w = want.ok_or_else(|| at("the result is missing".into()))?;
            num(w.split_whitespace().next().unwrap_or("")).map_err(at)
        };
        let differ = |got: String, w: String| at(format!("the device gave {got}, the trace has {w}"));
        match f.first().copied() {
            Some("sysmem") => {
                let m = t.sysmem(len(1)?).map_err(at)?;
                let segs: Vec<String> = m.segments.iter().map(|(b, n)| format!("0x{b:x}:0x{n:x}")).collect();
                if Some(segs.join(",").as_str()) != want {
                    return Err(differ(segs.join(","), want.unwrap_or("").into()));
                }
                sys.push(m);
            }
            Some("sys") => {
                let k = arg(1)?;
                let off = len(2)?;
                let data = parse_bytes(f.get(3).copied().unwrap_or("")).map_err(at)?;
                let m = usize::try_from(k)
                    .ok()
                    .and_then(|k| sys.get(k))
                    .ok_or_else(|| at(format!("there is no system memory {k}")))?;
                let mut fits = false;
                m.mem.with(&mut |x: &mut [u8]| {
                    if let Some(d) = off.checked_add(data.len()).and_then(|end| x.get_mut(off..end)) {
                        d.copy_from_slice(&data);
                        fits = true;
                    }
                });
                if !fits {
                    return Err(at("the bytes lie outside that system memory".into()));
                }
                continue;
            }
            Some("read32") => {
                let v = t.read32(bar(1)?, arg(2)?).map_err(at)?;
                let w = want_num()?;
                if u64::from(v) != w {
                    return Err(differ(format!("0x{v:x}"), format!("0x{w:x}")));
                }
            }
            Some("write32") => t.write32(bar(1)?, arg(2)?, word(3)?).map_err(at)?,
            Some("write64") => {
                t.write64(bar(1)?, arg(2)?, arg(3)?).map_err(at)?;
                settle().map_err(at)?;
                if let Some(e) = t.fault() {
                    return Err(at(format!("the device faulted: {e}")));
                }
            }
            Some("read") => {
                let mut b = vec![0u8; len(3)?];
                t.read_bytes(bar(1)?, arg(2)?, &mut b).map_err(at)?;
                let w = parse_bytes(want.unwrap_or("")).map_err(at)?;
                if b != w {
                    return Err(differ(bytes_text(&b), bytes_text(&w)));
                }
            }
            Some("write") => {
                let data = parse_bytes(f.get(3).copied().unwrap_or("")).map_err(at)?;
                t.write_bytes(bar(1)?, arg(2)?, &data).map_err(at)?;
            }
            Some("config-read") => {
                let v = t
                    .config_read(small(1, 0xfff, "the configuration offset")? as u16, small(2, 4, "the width")? as u8)
                    .map_err(at)?;
                let w = want_num()?;
                if u64::from(v) != w {
                    return Err(differ(format!("0x{v:x}"), format!("0x{w:x}")));
                }
            }
            Some("config-write") => t
                .config_write(
                    small(1, 0xfff, "the configuration offset")? as u16,
                    small(2, 4, "the width")? as u8,
                    word(3)?,
                )
                .map_err(at)?,
            Some("reset") => t.reset().map_err(at)?,
            _ => return Err(at("unknown call".into())),
        }
        calls += 1;
    }
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transport that answers every read with zeros and accepts every write.
    struct Null;
    impl Transport for Null {
        fn name(&self) -> String {
            "null".into()
        }
        fn read32(&self, _: u8, _: u64) -> Result<u32, String> {
            Ok(0)
        }
        fn write32(&self, _: u8, _: u64, _: u32) -> Result<(), String> {
            Ok(())
        }
        fn write64(&self, _: u8, _: u64, _: u64) -> Result<(), String> {
            Ok(())
        }
        fn read_bytes(&self, _: u8, _: u64, out: &mut [u8]) -> Result<(), String> {
            out.fill(0);
            Ok(())
        }
        fn write_bytes(&self, _: u8, _: u64, _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn round_trips(&self) -> u64 {
            0
        }
        fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
            Ok(SysMem { mem: Arc::new(Mutex::new(vec![0u8; bytes])), segments: vec![(0x1000, bytes as u64)] })
        }
        fn config_read(&self, _: u16, _: u8) -> Result<u32, String> {
            Ok(0x1002)
        }
        fn config_write(&self, _: u16, _: u8, _: u32) -> Result<(), String> {
            Ok(())
        }
        fn reset(&self) -> Result<(), String> {
            Ok(())
        }
        fn bar_size(&self, _: u8) -> Result<u64, String> {
            Ok(0)
        }
    }

    #[test]
    fn traces_replay_and_bad_lines_are_named() {
        let ok = "# tk driver trace 1: null\nsysmem 16 -> 0x1000:0x10\nsys 0 0x4 0102\nwrite64 2 0x8 0x5\n\
                  read32 5 0x10 -> 0x0\nread 0 0x0 4 -> zero*4\nconfig-read 0x0 2 -> 0x1002 x9\nreset\n";
        assert_eq!(replay(ok, &Null, &|| Ok(())), Ok(6));
        for (bad, why) in [
            ("read32 5 0x10 -> 0x7", "the device gave 0x0, the trace has 0x7"),
            ("read 0 0x0 2 -> 0xé", "is not hex"),
            ("read 0 0x0 2 -> é", "is not hex"),
            ("sys 3 0x0 00", "there is no system memory 3"),
            ("sysmem 16 -> 0x2000:0x10", "the device gave 0x1000:0x10"),
            ("write32 5", "a field is missing"),
            ("frobnicate 1", "unknown call"),
            ("read32 5 zz -> 0x0", "`zz` is not a number"),
            // Numbers too large for their field are refused, not cut down.
            ("read32 0x105 0x10 -> 0x0", "the BAR 0x105 is out of range"),
            ("write32 5 0x10 0x100000000", "the value 0x100000000 is out of range"),
            ("config-read 0x1000 2 -> 0x0", "the configuration offset 0x1000 is out of range"),
            ("config-write 0x4 8 0x6", "the width 0x8 is out of range"),
            // Byte counts are bounded before anything is allocated.
            ("read 0 0x0 0xffffffffffff -> 00", "the byte count 0xffffffffffff is out of range"),
            ("write 0 0x0 zero*99999999999", "more than"),
            ("sysmem 0xffffffffffffffff -> 0x1000:0x10", "the byte count"),
        ] {
            let e = replay(bad, &Null, &|| Ok(())).expect_err(bad);
            assert!(e.starts_with("trace line 1: ") && e.contains(why), "{bad}: {e}");
        }
        // An offset at the end of the address space does not overflow.
        let e = replay("sysmem 16 -> 0x1000:0x10\nsys 0 0xfffffff 0102", &Null, &|| Ok(())).expect_err("outside");
        assert!(e.contains("outside that system memory"), "{e}");
    }

    use proptest::prelude::*;

    proptest::proptest! {
        /// Any line, well formed or not, gives a result or an error naming its line: never a
        /// panic or a huge allocation.
        #[test]
        fn any_trace_line_is_replayed_or_refused(
            call in proptest::sample::select(vec!["sysmem", "sys", "read32", "write32", "write64", "read", "write", "config-read", "config-write", "reset", "x"]),
            fields in proptest::collection::vec(proptest::prop_oneof![
                proptest::prop_oneof![0u64..4096, MAX_BYTES + 1..u64::MAX].prop_map(|v| format!("0x{v:x}")),
                (0u64..64).prop_map(|v| v.to_string()),
                "[0-9a-f]{0,8}",
                // Runs of zeros: small ones, or more than a line may ask for (nothing between,
                // so that the test never allocates much).
                proptest::prop_oneof![0u64..4096, MAX_BYTES + 1..1 << 40].prop_map(|v| format!("zero*{v}")),
            ], 0..5),
            result in proptest::option::of("[0-9a-fx:,*]{0,12}"),
        ) {
            let mut line = format!("sysmem 64 -> 0x1000:0x40\n{call} {}", fields.join(" "));
            if let Some(r) = result {
                line += &format!(" -> {r}");
            }
            if let Err(e) = replay(&line, &Null, &|| Ok(())) {
                prop_assert!(e.starts_with("trace line "), "{}", e);
            }
        }
    }
}
