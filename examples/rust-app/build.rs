// Compiles kernels/stats.tk into $OUT_DIR/kernels.tkb (CPU code for every platform) and
// $OUT_DIR/kernels.rs (one Rust function per entry).
fn main() {
    if let Err(e) = tk_build::Build::new().file("kernels/stats.tk").compile("kernels") {
        panic!("compiling the kernels:\n{e}");
    }
}
