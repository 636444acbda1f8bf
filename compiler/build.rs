fn main() {
    // The grammar lives in src/grammar.lalrpop; the generated parser goes to OUT_DIR.
    lalrpop::Configuration::new().use_cargo_dir_conventions().process().expect("the .lalrpop grammar must be valid");
}
