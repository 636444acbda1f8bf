//! Host functions that generated CPU code calls: f16/bf16 rounding and conversion, the f64
//! transcendentals (not decomposed; docs/numerics.md) and integer powers. Each computes exactly
//! what the reference interpreter computes. They live in tk-ir, not in the code generator, so
//! that a runtime that loads precompiled objects resolves them without it.

pub extern "C" fn tk_round_f16(x: f64) -> f64 {
    half::f16::from_f64(x).to_f64()
}
pub extern "C" fn tk_round_bf16(x: f64) -> f64 {
    half::bf16::from_f64(x).to_f64()
}
pub extern "C" fn tk_f16_bits(x: f64) -> u32 {
    u32::from(half::f16::from_f64(x).to_bits())
}
pub extern "C" fn tk_bf16_bits(x: f64) -> u32 {
    u32::from(half::bf16::from_f64(x).to_bits())
}
pub extern "C" fn tk_f16_value(bits: u32) -> f64 {
    half::f16::from_bits(bits as u16).to_f64()
}
pub extern "C" fn tk_bf16_value(bits: u32) -> f64 {
    half::bf16::from_bits(bits as u16).to_f64()
}
pub extern "C" fn tk_exp(x: f64) -> f64 {
    x.exp()
}
pub extern "C" fn tk_exp2(x: f64) -> f64 {
    x.exp2()
}
pub extern "C" fn tk_log(x: f64) -> f64 {
    x.ln()
}
pub extern "C" fn tk_log2(x: f64) -> f64 {
    x.log2()
}
pub extern "C" fn tk_sin(x: f64) -> f64 {
    x.sin()
}
pub extern "C" fn tk_cos(x: f64) -> f64 {
    x.cos()
}
pub extern "C" fn tk_tanh(x: f64) -> f64 {
    x.tanh()
}
pub extern "C" fn tk_erf(x: f64) -> f64 {
    tk_ir::graph::interp::erf(x)
}
/// The helpers by name, with their parameter and result kinds: `f` f64, `i` i64, `u` u32.
pub const HELPERS: &[(&str, &str, char)] = &[
    ("tk_round_f16", "f", 'f'),
    ("tk_round_bf16", "f", 'f'),
    ("tk_f16_bits", "f", 'u'),
    ("tk_bf16_bits", "f", 'u'),
    ("tk_f16_value", "u", 'f'),
    ("tk_bf16_value", "u", 'f'),
    ("tk_exp", "f", 'f'),
    ("tk_exp2", "f", 'f'),
    ("tk_log", "f", 'f'),
    ("tk_log2", "f", 'f'),
    ("tk_sin", "f", 'f'),
    ("tk_cos", "f", 'f'),
    ("tk_tanh", "f", 'f'),
    ("tk_erf", "f", 'f'),
];

/// The address of a helper, for the JIT's symbol table.
pub fn address(name: &str) -> Option<*const u8> {
    Some(match name {
        "tk_round_f16" => tk_round_f16 as *const u8,
        "tk_round_bf16" => tk_round_bf16 as *const u8,
        "tk_f16_bits" => tk_f16_bits as *const u8,
        "tk_bf16_bits" => tk_bf16_bits as *const u8,
        "tk_f16_value" => tk_f16_value as *const u8,
        "tk_bf16_value" => tk_bf16_value as *const u8,
        "tk_exp" => tk_exp as *const u8,
        "tk_exp2" => tk_exp2 as *const u8,
        "tk_log" => tk_log as *const u8,
        "tk_log2" => tk_log2 as *const u8,
        "tk_sin" => tk_sin as *const u8,
        "tk_cos" => tk_cos as *const u8,
        "tk_tanh" => tk_tanh as *const u8,
        "tk_erf" => tk_erf as *const u8,
        _ => return None,
    })
}
