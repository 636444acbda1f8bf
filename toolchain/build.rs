//! Embeds tk's build id (version, git commit, dirty flag) for the kernel cache's keys.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let o = Command::new("git").args(args).output().ok()?;
    o.status.success().then(|| String::from_utf8_lossy(&o.stdout).trim().to_string())
}

fn main() {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let id = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(hash) => {
            // A dirty tree gets a hash of its diff, so every edited build has its own id.
            let diff = git(&["diff", "HEAD"]).unwrap_or_default();
            if diff.is_empty() {
                format!("{version}+{hash}")
            } else {
                use std::hash::{Hash, Hasher};
                let mut h = std::hash::DefaultHasher::new();
                diff.hash(&mut h);
                format!("{version}+{hash}-dirty-{:08x}", h.finish() as u32)
            }
        }
        None => format!("{version}+unknown"),
    };
    println!("cargo:rustc-env=TK_BUILD_ID={id}");
    for p in ["../.git/HEAD", "../.git/index", "../ir/src", "../abi/src", "../codegen/src", "src"] {
        println!("cargo:rerun-if-changed={p}");
    }
}
