//! The kernel cache: reuse across processes and caches, corrupt entries, entries for another
//! target, and concurrent writers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tk_ir::kernel::Kernel;
use tk_runtime::HostArray;
use tk_runtime::devices::cpu::CpuDevice;
use tk_toolchain::cache::KernelCache;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tk-cache-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn kernels(src: &str, name: &str) -> (tk_ir::graph::Graph, Vec<Kernel>) {
    let c = tk_compiler::check_source(Path::new("k.tk"), src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    let k = c.kernels.iter().find(|k| k.name == name).expect("kernel");
    let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
    // The device kernels the CPU runs (row kernels included), as `softmax_is_right` compiles them.
    let opts = tk_toolchain::target::Options { knobs: None, deterministic: true, split: None };
    let ks = tk_toolchain::target::lower(&g, tk_toolchain::target::Target::Cpu, &opts).expect("lowers").kernels;
    (g, ks)
}

const SRC: &str = "kernel softmax(x: f32[b, n]) -> f32[b, n] {\n    let e = exp(x - max(x, axis: 1, keep: true));\n    e / sum(e, axis: 1, keep: true)\n}\nkernel gather(t: f32[v], i: i32[n]) -> f32[n] { [k] => t[i[k]] }\n";

fn host_cache(d: &Path) -> Arc<KernelCache> {
    Arc::new(KernelCache::new(true, Some(d.to_path_buf()), tk_codegen::cpu::host_description()))
}

/// Runs softmax on a device with the given cache and compares with the interpreter.
fn softmax_is_right(cache: Arc<KernelCache>) {
    let (g, _) = kernels(SRC, "softmax");
    let dev = CpuDevice::new();
    let opts = tk_toolchain::target::Options { knobs: None, deterministic: true, split: None };
    let c = tk_toolchain::Session::with_options(opts).with_cache(cache).compile(&dev, "softmax", &g).expect("compiles");
    let x = tk_ir::graph::interp::Array::from_fn(tk_ir::dtype::DType::F32, vec![3, 37], |i| {
        tk_ir::graph::Scalar::Float(((i * 7919) % 101) as f64 / 10.0 - 5.0)
    });
    let dims = tk_ir::graph::interp::bind_dims(&g, std::slice::from_ref(&x), &HashMap::new()).expect("binds");
    let want = tk_ir::graph::interp::run(&g, &dims, std::slice::from_ref(&x)).expect("runs");
    let got = c.run(&dev, &[HostArray::from_interp(&x)], &HashMap::new()).expect("runs");
    assert_eq!(format!("{:?}", want[0]), format!("{:?}", got[0].to_interp()));
}

#[test]
fn entries_are_reused_from_memory_and_disk() {
    let d = dir("reuse");
    let a = host_cache(&d);
    softmax_is_right(a.clone());
    assert_eq!(a.stats.compiled.load(Ordering::Relaxed), 1);
    softmax_is_right(a.clone());
    assert_eq!(a.stats.memory_hits.load(Ordering::Relaxed), 1);
    // A new cache (another process, in effect) loads the object from disk.
    let b = host_cache(&d);
    softmax_is_right(b.clone());
    assert_eq!(b.stats.disk_hits.load(Ordering::Relaxed), 1);
    assert_eq!(b.stats.compiled.load(Ordering::Relaxed), 0);
    // TK_CACHE=0 semantics: a disabled cache compiles every time and stores nothing.
    let off = Arc::new(KernelCache::new(false, Some(dir("off")), tk_codegen::cpu::host_description()));
    softmax_is_right(off.clone());
    softmax_is_right(off.clone());
    assert_eq!(off.stats.compiled.load(Ordering::Relaxed), 2);
    assert!(!dir("off").exists());
}

#[test]
fn corrupt_entries_are_recompiled() {
    let d = dir("corrupt");
    softmax_is_right(host_cache(&d));
    let (_, ks) = kernels(SRC, "softmax");
    let path = host_cache(&d).path(&host_cache(&d).key(&ks)).expect("a path");
    let good = std::fs::read(&path).expect("the entry exists");
    let corruptions: Vec<Vec<u8>> = vec![
        good[..good.len() / 2].to_vec(),
        {
            let mut v = good.clone();
            let mid = v.len() / 2;
            v[mid] ^= 0x55;
            v
        },
        Vec::new(),
        b"not a cache entry at all".to_vec(),
    ];
    for bad in corruptions {
        std::fs::write(&path, &bad).expect("write");
        let c = host_cache(&d);
        softmax_is_right(c.clone());
        assert_eq!(c.stats.rejected.load(Ordering::Relaxed), 1);
        assert_eq!(c.stats.compiled.load(Ordering::Relaxed), 1);
        // The entry was replaced by a good one.
        let again = host_cache(&d);
        softmax_is_right(again.clone());
        assert_eq!(again.stats.disk_hits.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn entries_for_another_target_or_kernel_are_not_used() {
    let d = dir("isa");
    let (_, ks) = kernels(SRC, "softmax");
    let host = host_cache(&d);
    // The ISA features are part of the key: a machine without AVX2 (say) never reads this entry.
    let other = KernelCache::new(true, Some(d.clone()), "x86_64-unknown-linux-gnu has_sse3,has_ssse3".into());
    assert_ne!(host.key(&ks), other.key(&ks));
    assert_ne!(host.path(&host.key(&ks)), other.path(&other.key(&ks)));
    assert!(host.key(&ks).contains(&tk_codegen::cpu::host_description()));
    assert!(host.key(&ks).contains(tk_toolchain::cache::BUILD_ID));
    // An entry whose stored key differs (another target, build or kernel) is rejected even at
    // the right path: put the gather kernel's entry where softmax's belongs.
    let (_, gk) = kernels(SRC, "gather");
    let dev = CpuDevice::new();
    host.get_or_compile(&dev, &gk).expect("compiles");
    let gpath = host.path(&host.key(&gk)).expect("path");
    let spath = host.path(&host.key(&ks)).expect("path");
    std::fs::create_dir_all(spath.parent().expect("dir")).expect("dir");
    std::fs::copy(&gpath, &spath).expect("copy");
    let c = host_cache(&d);
    softmax_is_right(c.clone());
    assert_eq!(c.stats.rejected.load(Ordering::Relaxed), 1);
    assert_eq!(c.stats.disk_hits.load(Ordering::Relaxed), 0);
}

#[test]
fn concurrent_writers() {
    let d = dir("concurrent");
    // Threads with separate caches on one directory, all missing at once.
    std::thread::scope(|s| {
        for _ in 0..4 {
            let d = d.clone();
            s.spawn(move || softmax_is_right(host_cache(&d)));
        }
    });
    // Processes too.
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_tk"))
                .args(["run", "examples/softmax.tk", "--arg", "x=rand:5x9"])
                .env("TK_CACHE_DIR", &d)
                .output()
        })
        .collect();
    for c in children {
        let o = c.expect("tk runs");
        assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // Every entry verifies, and no temporary file is left behind.
    for e in std::fs::read_dir(d.join("cpu")).expect("entries").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(name.ends_with(".tko"), "left behind: {name}");
    }
    let fresh = host_cache(&d);
    softmax_is_right(fresh.clone());
    assert_eq!(fresh.stats.disk_hits.load(Ordering::Relaxed), 1);
}
