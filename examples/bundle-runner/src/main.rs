//! Runs one entry of a tk bundle on a device, reading its inputs from `.npy` files and writing
//! its outputs as `.npy` files. It depends on the tk runtime only (tk-runtime, whose devices load
//! code and never compile it): nothing is compiled, and no compiler crate is linked.
//!
//! ```sh
//! tk build examples/saxpy.tk --target cpu -o saxpy.tkb
//! cargo run -p tk-bundle-runner -- saxpy.tkb saxpy out/ a.npy x.npy y.npy
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tk_runtime::bundle::Bundle;
use tk_runtime::{DType, HostArray};

const USAGE: &str = "usage: tk-bundle-runner BUNDLE.tkb ENTRY OUT_DIR [--device DEVICE] [--dim NAME=N] INPUT.npy...";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let mut device = "cpu".to_string();
    let mut dims: HashMap<String, i64> = HashMap::new();
    let mut positional: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => device = args.next().ok_or(USAGE)?,
            "--dim" => {
                let d = args.next().ok_or(USAGE)?;
                let (n, v) = d.split_once('=').ok_or_else(|| format!("--dim {d}: expected NAME=N"))?;
                dims.insert(n.to_string(), v.parse().map_err(|_| format!("--dim {d}: {v} is not an integer"))?);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            _ => positional.push(a),
        }
    }
    let [bundle, entry, out, inputs @ ..] = positional.as_slice() else { return Err(USAGE.into()) };
    let b = Bundle::load(Path::new(bundle)).map_err(|e| e.to_string())?;
    let sig =
        b.entries().into_iter().find(|s| &s.name == entry).ok_or_else(|| format!("{bundle} has no entry `{entry}`"))?;
    if inputs.len() != sig.inputs.len() {
        return Err(format!("`{entry}` takes {} inputs, got {}", sig.inputs.len(), inputs.len()));
    }
    let mut arrays = Vec::new();
    for (file, (name, dtype, _)) in inputs.iter().zip(&sig.inputs) {
        let d = DType::parse(dtype).ok_or_else(|| format!("input `{name}` has an unknown dtype {dtype}"))?;
        arrays.push(HostArray::read_npy(Path::new(file), d).map_err(|e| e.to_string())?);
    }
    let dev = tk_runtime::open(&device).map_err(|e| e.to_string())?;
    let loaded = b.load_entry(dev.as_ref(), entry).map_err(|e| e.to_string())?;
    let outputs = loaded.run(dev.as_ref(), &arrays, &dims).map_err(|e| e.to_string())?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (a, (name, _, _)) in outputs.iter().zip(&sig.outputs) {
        let path = out.join(format!("{name}.npy"));
        a.write_npy(&path).map_err(|e| e.to_string())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
