//! A Rust program that uses tk kernels like functions. Its build script compiles
//! `kernels/stats.tk` (tk-build); at run time only the tk runtime runs them: nothing is compiled.
//!
//! ```sh
//! cargo run -p tk-rust-app
//! ```

use tk_runtime::HostArray;

mod kernels {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dev = tk_runtime::open(&std::env::args().nth(1).unwrap_or_else(|| "cpu".into()))?;
    let x = HostArray::from_slice(&[2, 4], &[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 0.5, 8.0])?;

    let p = kernels::softmax_rows(dev.as_ref(), &x)?;
    println!("softmax_rows: {:?}", p.to_vec::<f32>()?);

    let (mean, var) = kernels::moments(dev.as_ref(), &x)?;
    println!("moments: mean {:?} var {:?}", mean.to_vec::<f32>()?, var.to_vec::<f32>()?);

    let r = kernels::ramp(dev.as_ref(), &HostArray::from_slice(&[], &[0.25f32])?, 5)?;
    println!("ramp: {:?}", r.to_vec::<f32>()?);

    // A wrong dtype is a typed error, before anything runs.
    let ints = HostArray::from_slice(&[2], &[1i32, 2])?;
    match kernels::softmax_rows(dev.as_ref(), &ints) {
        Err(e) => println!("error: {e}"),
        Ok(_) => return Err("softmax_rows accepted i32 arguments".into()),
    }
    Ok(())
}
