//! LLVM 19 through inkwell: the module's IR text -> a relocatable AMDGPU object.

use super::{Module, TRIPLE};
use inkwell::OptimizationLevel;
use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::passes::PassBuilderOptions;
use inkwell::targets::{CodeModel, FileType, InitializationConfig, RelocMode, Target, TargetMachine, TargetTriple};

fn machine(cpu: &str) -> Result<TargetMachine, String> {
    Target::initialize_amd_gpu(&InitializationConfig::default());
    let triple = TargetTriple::create(TRIPLE);
    let t = Target::from_triple(&triple).map_err(|e| format!("LLVM has no AMDGPU target: {e}"))?;
    t.create_target_machine(&triple, cpu, "", OptimizationLevel::Default, RelocMode::PIC, CodeModel::Default)
        .ok_or_else(|| format!("LLVM cannot make a target machine for {cpu}"))
}

/// Parses, verifies and optimises (`default<O2>`) the module's IR with `f` on the result.
fn optimized<T>(
    m: &Module,
    f: impl FnOnce(&TargetMachine, &inkwell::module::Module) -> Result<T, String>,
) -> Result<T, String> {
    let tm = machine(m.target.name)?;
    let ctx = Context::create();
    let buf = MemoryBuffer::create_from_memory_range_copy(m.ir.as_bytes(), "tk");
    let module = ctx.create_module_from_ir(buf).map_err(|e| format!("LLVM rejected tk's IR: {}", e.to_string()))?;
    module.verify().map_err(|e| format!("LLVM IR does not verify: {}", e.to_string()))?;
    module
        .run_passes("default<O2>", &tm, PassBuilderOptions::create())
        .map_err(|e| format!("LLVM optimisation failed: {}", e.to_string()))?;
    f(&tm, &module)
}

/// Parses, verifies and optimises (`default<O2>`) the module's IR, then emits a relocatable
/// object for its target. Errors are LLVM's messages (a bug in tk when they happen).
pub fn object(m: &Module) -> Result<Vec<u8>, String> {
    optimized(m, |tm, module| {
        // Emitting changes the module (see ../shared/notes/toolchains.md): emit from a clone.
        let clone = module.clone();
        let obj = tm
            .write_to_memory_buffer(&clone, FileType::Object)
            .map_err(|e| format!("LLVM code generation failed: {}", e.to_string()))?;
        Ok(obj.as_slice().to_vec())
    })
}

/// The optimised IR (what `object` compiles).
pub fn optimized_ir(m: &Module) -> Result<String, String> {
    optimized(m, |_, module| Ok(module.print_to_string().to_string()))
}
