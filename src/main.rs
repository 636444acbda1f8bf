//! `tk`: the command line of the tk kernel language.

use clap::{Parser, Subcommand, ValueEnum};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tk_compiler::codespan_reporting::term::termcolor::{ColorChoice, StandardStream};

/// `print!` for the command line's results: a closed stdout (`tk emit ... | head -1`) ends the
/// process quietly (exit 0) instead of panicking; another write error is reported (exit 3).
macro_rules! out {
    ($($t:tt)*) => {
        $crate::write_stdout(format_args!($($t)*))
    };
}

/// `println!` with the behaviour of [`out!`].
macro_rules! outln {
    () => {
        out!("\n")
    };
    ($($t:tt)*) => {
        out!("{}\n", format_args!($($t)*))
    };
}

use tk::disasm;
mod repl;
mod run;

/// Writes to stdout; see [`out!`].
fn write_stdout(args: std::fmt::Arguments<'_>) {
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(i32::from(exit::OK));
        }
        eprintln!("error: cannot write the output: {e}");
        std::process::exit(i32::from(exit::RUNTIME));
    }
}

/// Exit codes, the same for every command (documented in the README).
mod exit {
    pub const OK: u8 = 0;
    /// An error in the user's program or data.
    pub const USER: u8 = 1;
    /// A usage error: a bad command line (clap reports its own with this code too).
    pub const USAGE: u8 = 2;
    /// A runtime or device failure.
    pub const RUNTIME: u8 = 3;
    /// A required external tool is missing.
    pub const MISSING_TOOL: u8 = 4;
    /// The run was interrupted (Ctrl-C; 128 + SIGINT, as shells report it).
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Parser)]
#[command(
    name = "tk",
    version,
    about = "tk: a kernel-compiling array language",
    long_about = "tk compiles kernels written in the .tk array language.\n\n\
        Exit codes: 0 ok, 1 error in the program or its data, 2 usage error, \
        3 runtime or device failure, 4 a required external tool is missing, \
        130 interrupted (Ctrl-C)."
)]
struct Cli {
    /// When to color diagnostics: `auto` colors when stderr is a terminal and NO_COLOR is unset.
    #[arg(long, value_enum, default_value_t = Color::Auto, global = true)]
    color: Color,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand)]
enum Command {
    /// Parse and check .tk files (names, dtypes, shapes) and report every error found.
    Check {
        /// The files to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print one stage of the compiler for a .tk file.
    Emit {
        /// The file to compile.
        file: PathBuf,
        /// The stage to print.
        #[arg(long, value_enum, default_value_t = Stage::Ast)]
        stage: Stage,
        /// Only this kernel (stages from `types` on).
        #[arg(short = 'k', long = "kernel", value_name = "ENTRY")]
        entry: Option<String>,
        /// The compile target (stages from `schedule` on): `cpu`, an NVIDIA architecture
        /// (`sm_80`, `sm_86`, `sm_89`, `sm_90`, `sm_120`) or an AMD one (`gfx1100`, `gfx1101`,
        /// `gfx1102`).
        #[arg(long, default_value = "cpu")]
        target: String,
        /// Optimisation knobs for every device kernel; each one named replaces that knob of the
        /// target's defaults for the kernel, the others keep them:
        /// `parallel=P` (outer output axes run in parallel), `unroll=U` (reduction unroll),
        /// `vector=V` (innermost SIMD width, CPU), `group=G` (threads sharing a reduction, GPU),
        /// `upcast=F` (F x F register tiles of a matrix product, GPU). Results are unchanged
        /// (`group` reorders float sums within docs/numerics.md); docs/architecture.md, "Kernel
        /// IR", explains each. `tk emit --stage kernel` shows the defaults.
        #[arg(long, value_name = "KNOBS")]
        opts: Option<String>,
        /// Allow contraction and hardware approximations (docs/numerics.md); results may then
        /// differ between devices.
        #[arg(long)]
        fast_math: bool,
        /// Fix every reduction to the reference order, so results are bit-identical everywhere.
        #[arg(long)]
        deterministic: bool,
    },
    /// Compile one kernel of a file and run it on the given arguments.
    #[command(after_help = "ARGUMENT VALUES:\n  \
        FILE.npy       an array saved by numpy (np.save); its dtype must match the parameter's\n  \
        3.5, -2, true  a scalar literal, for a rank-0 parameter\n  \
        [1, 5, 2]      a list literal, nested for higher ranks ('[[1, 2], [3, 4]]'; quote it\n                 \
        for the shell); elements are scalar literals, nan and inf included\n  \
        rand:DIMS      random values, e.g. rand:1024x1024: floats uniform in [0, 1); signed\n                 \
        integers uniform in [-100, 100], unsigned ones (u8, u32) in [0, 100]; bools\n                 \
        true with p = 0.5\n  \
        randn:DIMS     floats from the standard normal distribution\n  \
        randint:LO:HI:DIMS\n                 \
        integers uniform in [LO, HI), e.g. randint:0:1000:64 for ids of a\n                 \
        1000-row table (any integer or float parameter; the range must fit its dtype)\n\n\
        Random values come from ChaCha8 seeded with --seed, drawn in parameter order.\n\n\
        EXAMPLE:\n  tk run examples/softmax.tk --arg x=rand:4x8")]
    Run {
        /// The .tk file.
        file: PathBuf,
        /// The kernel to run (may be omitted when the file has one).
        #[arg(short = 'k', long = "kernel", value_name = "ENTRY")]
        entry: Option<String>,
        /// An argument, NAME=VALUE (see ARGUMENT VALUES below). Repeat for each parameter.
        #[arg(long = "arg", value_name = "NAME=VALUE")]
        args: Vec<String>,
        /// A value for an explicit dimension parameter (`kernel k<h>`), NAME=N.
        #[arg(long = "dim", value_name = "NAME=N")]
        dims: Vec<String>,
        /// Write each output to DIR/NAME.npy instead of printing a summary.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The device to run on (`tk devices` lists them).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Run N more times (N >= 1) after a warm-up, with the arguments resident on the device,
        /// and print the minimum, median and maximum time, with GB/s and GFLOP/s at the median.
        #[arg(long, value_name = "N", value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        bench: Option<usize>,
        /// Print the time of every phase: parse, check, lower, schedule, codegen (marked when the
        /// kernel cache had the code), argument generation, the run and the output.
        #[arg(long)]
        time: bool,
        /// How to print results: `short` elides the middle of arrays of more than 1000 elements
        /// (as numpy does), `full` prints every element.
        #[arg(long, value_enum, default_value_t = run::Print::Short)]
        print: run::Print,
        /// Seed of the random arguments.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Optimisation knobs for every device kernel; each one named replaces that knob of the
        /// target's defaults for the kernel, the others keep them:
        /// `parallel=P` (outer output axes run in parallel), `unroll=U` (reduction unroll),
        /// `vector=V` (innermost SIMD width, CPU), `group=G` (threads sharing a reduction, GPU),
        /// `upcast=F` (F x F register tiles of a matrix product, GPU). Results are unchanged
        /// (`group` reorders float sums within docs/numerics.md); docs/architecture.md, "Kernel
        /// IR", explains each. `tk emit --stage kernel` shows the defaults.
        #[arg(long, value_name = "KNOBS")]
        opts: Option<String>,
        /// Keep every reduction and scatter in the reference order: results are bit-identical
        /// to the reference interpreter (and to every device), at some cost in speed.
        #[arg(long)]
        deterministic: bool,
    },
    /// Compile .tk files ahead of time: GPU code objects (for each file and target,
    /// DIR/<stem>.<target>.ptx and .cubin (NVIDIA) or .ll and .hsaco (AMD), plus
    /// DIR/manifest.json describing entries, device kernels, parameters and launch geometry), a
    /// bundle (`-o FILE.tkb`: CPU and GPU code in one checksummed file a program loads without
    /// compiling), or a static library with a C header (`--emit staticlib`, CPU).
    #[command(after_help = "NVIDIA: ptxas is found through TK_PTXAS, then PATH, then the project's .tools/venv \
        (scripts/setup installs it). There is no ptxas for macOS: build cubins on Linux.\n\
        AMD: tk must be built with the `amdgpu` feature (LLVM 19); ld.lld is found through TK_LLD, then PATH \
        (ld.lld-19, ld.lld).\n\n\
        EXAMPLES:\n  tk build examples/matmul.tk --target sm_86,sm_90 -o out/\n  \
        tk build examples/matmul.tk --target gfx1100 -o out/ --verbose\n  \
        tk build examples/softmax.tk examples/matmul.tk --target cpu,sm_86 -o kernels.tkb\n  \
        tk build examples/c/kernels.tk --target cpu --emit staticlib -o libkernels.a --header kernels.h")]
    Build {
        /// The .tk files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Comma-separated targets: `cpu` (bundles and static libraries), NVIDIA sm_80, sm_86,
        /// sm_89, sm_90, sm_120; AMD gfx1100, gfx1101, gfx1102.
        #[arg(long, value_delimiter = ',', required = true)]
        target: Vec<String>,
        /// The output: a directory (created when missing) for code objects, or a file for
        /// `--emit bundle` (the default when it ends in `.tkb`).
        #[arg(short = 'o', long = "out", value_name = "DIR|FILE.tkb")]
        out: PathBuf,
        /// What to write: `objects` (per-target code objects and a manifest in a directory) or
        /// `bundle` (one checksummed .tkb file a program loads without compiling; also takes
        /// `--target cpu`).
        #[arg(long, value_enum)]
        emit: Option<Emit>,
        /// With `--emit staticlib`: where to write the C header (default: the library's name with
        /// `.h`, without a `lib` prefix).
        #[arg(long, value_name = "FILE.h")]
        header: Option<PathBuf>,
        /// Print the registers, spills and shared memory (LDS) of every device kernel (from
        /// ptxas -v, or from the AMD code object's metadata).
        #[arg(short, long)]
        verbose: bool,
        /// Optimisation knobs for every device kernel; each one named replaces that knob of the
        /// target's defaults for the kernel, the others keep them:
        /// `parallel=P` (outer output axes run in parallel), `unroll=U` (reduction unroll),
        /// `vector=V` (innermost SIMD width, CPU), `group=G` (threads sharing a reduction, GPU),
        /// `upcast=F` (F x F register tiles of a matrix product, GPU). Results are unchanged
        /// (`group` reorders float sums within docs/numerics.md); docs/architecture.md, "Kernel
        /// IR", explains each. `tk emit --stage kernel` shows the defaults.
        #[arg(long, value_name = "KNOBS")]
        opts: Option<String>,
        /// Keep every reduction and scatter in the reference order (bit-identical to the
        /// interpreter).
        #[arg(long)]
        deterministic: bool,
    },
    /// Print what a bundle (.tkb) holds: its entries with their signatures and the code for each
    /// target. The file is checked (version, checksum) first.
    Inspect {
        /// The bundle.
        file: PathBuf,
    },
    /// Print the machine code of a GPU code object that `tk build` wrote, without external
    /// tools: an AMD `.hsaco` in llvm-objdump's syntax; for an NVIDIA `.cubin` (sm_80, sm_86,
    /// sm_89), what it says about each kernel, then its SASS in `nvdisasm -c`'s syntax.
    #[command(after_help = "EXAMPLES:\n  tk build examples/saxpy.tk --target gfx1100 -o out/\n  \
        tk disasm out/saxpy.gfx1100.hsaco\n  tk disasm out/saxpy.sm_86.cubin -k saxpy_k0")]
    Disasm {
        /// The code object (.hsaco) or cubin (.cubin).
        file: PathBuf,
        /// Only this kernel (a device kernel's name, such as `saxpy_k0`).
        #[arg(short = 'k', long = "kernel", value_name = "NAME")]
        kernel: Option<String>,
    },
    /// List the devices of this machine and the target each compiles for.
    Devices {
        /// Also show, per GPU: the chip and IP versions (AMD: from IP discovery, which opens
        /// the device), its BAR sizes, free VRAM and boot state.
        #[arg(short, long)]
        verbose: bool,
    },
    /// An interactive session: define fns and kernels, bind arrays, evaluate expressions.
    Repl {
        /// The device to run on.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Emit {
    /// Per-target code objects and manifest.json in a directory.
    Objects,
    /// One .tkb bundle file.
    Bundle,
    /// A static library (`-o libNAME.a`) and a C header: one C function per entry, for the
    /// host CPU.
    Staticlib,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// The parsed program, printed as source.
    Ast,
    /// Each kernel's signature and the type of every binding.
    Types,
    /// The graph IR of each kernel after the rewrite passes (text form; it parses back).
    Graph,
    /// The device kernels and buffers each kernel's graph is partitioned into.
    Schedule,
    /// The loop-level kernel IR of every device kernel.
    Kernel,
    /// The kernel IR after legalization for the target (`--target`): what its code generator
    /// receives, with the numeric rules it lacks written out.
    Legal,
    /// The Cranelift IR of every device kernel (the CPU backend's input).
    Clif,
    /// The PTX module of the file's device kernels (NVIDIA targets).
    Ptx,
    /// The SASS disassembly of the cubin ptxas makes from the PTX (needs ptxas and nvdisasm).
    Sass,
    /// The LLVM IR module of the file's device kernels, as tk writes it: for an AMD target, or
    /// for the CPU the LLVM tier's (one module per entry, for this machine).
    Llvm,
    /// The RDNA3 disassembly of the code object (AMD targets; needs the `amdgpu` feature,
    /// ld.lld and llvm-objdump).
    Gcn,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let choice = match cli.color {
        Color::Always => ColorChoice::Always,
        Color::Never => ColorChoice::Never,
        Color::Auto => {
            if std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) {
                ColorChoice::Auto
            } else {
                ColorChoice::Never
            }
        }
    };
    let code = match cli.command {
        Command::Check { files } => check(&files, choice),
        Command::Emit { file, stage, entry, target, opts, fast_math, deterministic } => {
            let target: tk_toolchain::target::Target = match target.parse() {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let nvidia = matches!(target, tk_toolchain::target::Target::Nvidia(_));
            let amd = matches!(target, tk_toolchain::target::Target::Amd(_));
            let mismatch = match stage {
                Stage::Clif if nvidia || amd => Some("--stage clif is the CPU backend's: use --target cpu"),
                Stage::Ptx | Stage::Sass if !nvidia => {
                    Some("--stage ptx and sass need an NVIDIA target, e.g. --target sm_86")
                }
                Stage::Llvm if nvidia => {
                    Some("--stage llvm needs an AMD target (e.g. --target gfx1100) or the CPU (the LLVM tier's IR)")
                }
                Stage::Gcn if !amd => Some("--stage gcn needs an AMD target, e.g. --target gfx1100"),
                _ => None,
            };
            if let Some(m) = mismatch {
                eprintln!("error: {m}");
                return ExitCode::from(2);
            }
            let Ok(knobs) = parse_opts(opts.as_deref()) else { return ExitCode::from(2) };
            warn_knobs(knobs.as_ref(), target);
            let flags = Flags { fast_math, deterministic };
            emit(&file, stage, target, entry.as_deref(), knobs.as_ref(), flags, choice)
        }
        Command::Run { file, entry, args, dims, out, device, bench, time, seed, opts, deterministic, print } => {
            let Ok(knobs) = parse_opts(opts.as_deref()) else { return ExitCode::from(2) };
            run::run(
                run::RunOpts { file, entry, args, dims, out, device, bench, time, seed, knobs, deterministic, print },
                choice,
            )
        }
        Command::Repl { device } => repl::run(&device),
        Command::Build { files, target, out, emit, header, verbose, opts, deterministic } => {
            let Ok(knobs) = parse_opts(opts.as_deref()) else { return ExitCode::from(2) };
            if emit == Some(Emit::Staticlib) {
                if target.iter().any(|t| t != "cpu") {
                    eprintln!("error: a static library holds CPU code: use --target cpu");
                    return ExitCode::from(2);
                }
                let header = header.unwrap_or_else(|| {
                    let stem =
                        out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "kernels".into());
                    out.with_file_name(format!("{}.h", stem.strip_prefix("lib").unwrap_or(&stem)))
                });
                let opts = tk_toolchain::target::Options { knobs, deterministic, split: None };
                return ExitCode::from(build_staticlib(&files, &out, &header, opts, choice));
            }
            if header.is_some() {
                eprintln!("error: --header goes with --emit staticlib");
                return ExitCode::from(2);
            }
            let bundle = match emit {
                Some(e) => e == Emit::Bundle,
                None => out.extension().is_some_and(|e| e == "tkb"),
            };
            let mut targets = Vec::new();
            for t in &target {
                match t.parse::<tk_toolchain::target::Target>() {
                    Ok(tk_toolchain::target::Target::Cpu) if bundle => {
                        if !targets.contains(&tk_toolchain::target::Target::Cpu) {
                            targets.push(tk_toolchain::target::Target::Cpu)
                        }
                    }
                    Ok(tk_toolchain::target::Target::Cpu) => {
                        eprintln!(
                            "error: code objects are for GPUs; the CPU compiles kernels when they run (use an sm_XX \
                             or gfx11xx target, or write a bundle with `--emit bundle`, which holds CPU code too)"
                        );
                        return ExitCode::from(2);
                    }
                    Ok(t) => {
                        if !targets.contains(&t) {
                            targets.push(t)
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let opts = tk_toolchain::target::Options { knobs, deterministic, split: None };
            if bundle {
                build_bundle(&files, &targets, &out, opts, choice)
            } else {
                build(&files, &targets, &out, verbose, opts, choice)
            }
        }
        Command::Inspect { file } => match tk_runtime::bundle::Bundle::load(&file) {
            Ok(b) => {
                out!("{}", b.describe());
                exit::OK
            }
            Err(e) => {
                eprintln!("error: {e}");
                exit::USER
            }
        },
        Command::Disasm { file, kernel } => {
            let name = file.display().to_string();
            match std::fs::read(&file) {
                Err(e) => {
                    eprintln!("error: cannot read {name}: {e}");
                    exit::USER
                }
                Ok(bytes) => match disasm::disassemble(&name, &bytes, kernel.as_deref()) {
                    Ok(text) => {
                        out!("{text}");
                        exit::OK
                    }
                    Err((text, e)) => {
                        out!("{text}");
                        eprintln!("error: {e}");
                        exit::USER
                    }
                },
            }
        }
        Command::Devices { verbose } => {
            let list: Vec<(String, String, Vec<String>)> = if verbose {
                tk_runtime::devices::list_verbose()
            } else {
                tk_runtime::devices::list().into_iter().map(|(n, t)| (n, t, Vec::new())).collect()
            };
            let w = list.iter().map(|(n, _, _)| n.len()).max().unwrap_or(0).max(6);
            outln!("{:<w$} TARGET", "DEVICE");
            for (name, target, details) in list {
                outln!("{name:<w$} {target}");
                for d in details {
                    outln!("{:<w$}   {d}", "");
                }
            }
            exit::OK
        }
    };
    ExitCode::from(code)
}

/// Warns about knobs that the target cannot use well (they never change results).
fn warn_knobs(knobs: Option<&tk_ir::kernel::KnobOverrides>, target: tk_toolchain::target::Target) {
    if let Some(u) = knobs.and_then(|k| k.upcast)
        && u > 1
        && target == tk_toolchain::target::Target::Cpu
    {
        eprintln!(
            "warning: --opts upcast={u} tiles outputs in registers, which pays on GPUs; the CPU backend vectorises \
             and blocks matrix products itself, and a tile defeats that (often several times slower): leave upcast \
             out on the CPU"
        );
    }
}

/// `--opts KNOBS`, reporting a bad value (a usage error).
fn parse_opts(opts: Option<&str>) -> Result<Option<tk_ir::kernel::KnobOverrides>, ()> {
    match opts.map(str::parse::<tk_ir::kernel::KnobOverrides>) {
        None => Ok(None),
        Some(Ok(k)) => Ok(Some(k)),
        Some(Err(e)) => {
            eprintln!("error: --opts: {e}");
            Err(())
        }
    }
}

/// Diagnostics shown per file; the rest are counted (as rustc stops at its error limit).
const MAX_SHOWN_ERRORS: usize = 50;

fn read(path: &Path) -> Result<String, u8> {
    match std::fs::read(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(s) => Ok(s),
            Err(e) => {
                // The place of the first bad byte, as an editor shows it.
                let at = e.utf8_error().valid_up_to();
                let valid = String::from_utf8_lossy(&e.as_bytes()[..at]);
                let line = valid.matches('\n').count() + 1;
                let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let what = if tk_runtime::bundle::MAGIC.as_slice() == e.as_bytes().get(..8).unwrap_or(&[]) {
                    " (it is a tk bundle: `tk inspect` shows it)"
                } else {
                    ""
                };
                eprintln!(
                    "error: {}:{line}:{col}: not UTF-8 text: byte {:#04x} at offset {at} does not start a UTF-8 \
                     character{what}; tk source files are UTF-8",
                    path.display(),
                    e.as_bytes()[at]
                );
                Err(exit::USER)
            }
        },
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", path.display());
            Err(exit::USER)
        }
    }
}

/// Checks one file, printing its diagnostics. Returns the checked program when it has no errors.
fn check_one(path: &Path, choice: ColorChoice) -> Result<tk_compiler::Checked, u8> {
    let src = read(path)?;
    let checked = tk_toolchain::Session::new().check(path, src);
    if !checked.diags.is_empty() {
        let mut err = StandardStream::stderr(choice);
        for d in checked.diags.iter().take(MAX_SHOWN_ERRORS) {
            let _ = d.render_to(&checked.program.sources, &mut err);
        }
        let n = checked.diags.len();
        if n > MAX_SHOWN_ERRORS {
            let _ = writeln!(err, "error: {} more errors not shown", n - MAX_SHOWN_ERRORS);
        }
        let _ = writeln!(err, "error: {}: {n} error{} found", path.display(), if n == 1 { "" } else { "s" });
        return Err(exit::USER);
    }
    Ok(checked)
}

fn check(files: &[PathBuf], choice: ColorChoice) -> u8 {
    let mut code = exit::OK;
    for f in files {
        match check_one(f, choice) {
            Ok(c) => {
                let n = c.kernels.len();
                outln!("{}: ok ({n} kernel{})", f.display(), if n == 1 { "" } else { "s" });
            }
            Err(c) => code = code.max(c),
        }
    }
    code
}

/// The prepared graph of every entry of the files, with distinct names, for a bundle or a
/// library (`what`).
fn distinct_entries(
    files: &[PathBuf],
    what: &str,
    choice: ColorChoice,
) -> Result<Vec<tk_toolchain::bundle::Entry>, u8> {
    let mut entries: Vec<tk_toolchain::bundle::Entry> = Vec::new();
    for f in files {
        let checked = check_one(f, choice)?;
        for k in &checked.kernels {
            let graph = match tk_toolchain::Session::new().prepared(k) {
                Ok(g) => g,
                Err(e) => {
                    eprintln!("error: {}: {e}", f.display());
                    return Err(exit::USER);
                }
            };
            if let Some(other) = entries.iter().find(|e| e.name == k.name) {
                eprintln!(
                    "error: both {} and {} define an entry `{}`; a {what}'s entries need distinct names",
                    other.source,
                    f.display(),
                    k.name
                );
                return Err(exit::USER);
            }
            entries.push(tk_toolchain::bundle::Entry { name: k.name.clone(), source: f.display().to_string(), graph });
        }
    }
    Ok(entries)
}

/// The exit code of a failed build.
fn build_failed(e: tk_runtime::RunError) -> u8 {
    eprintln!("error: {e}");
    match e {
        tk_runtime::RunError::MissingTool { .. } => exit::MISSING_TOOL,
        tk_runtime::RunError::File { .. } | tk_runtime::RunError::Argument { .. } => exit::USER,
        _ => exit::RUNTIME,
    }
}

/// `tk build --emit staticlib`.
fn build_staticlib(
    files: &[PathBuf],
    lib: &Path,
    header: &Path,
    opts: tk_toolchain::target::Options,
    choice: ColorChoice,
) -> u8 {
    let entries = match distinct_entries(files, "library", choice) {
        Ok(e) => e,
        Err(c) => return c,
    };
    let spinner = run::progress(format!("building {}", lib.display()));
    let built = tk_toolchain::clib::build(&entries, &opts, lib, header);
    spinner.finish_and_clear();
    match built {
        Ok(w) => {
            outln!("wrote {} and {}", w.library.display(), w.header.display());
            exit::OK
        }
        Err(e) => build_failed(e),
    }
}

/// `tk build --emit bundle`.
fn build_bundle(
    files: &[PathBuf],
    targets: &[tk_toolchain::target::Target],
    out: &Path,
    opts: tk_toolchain::target::Options,
    choice: ColorChoice,
) -> u8 {
    let entries = match distinct_entries(files, "bundle", choice) {
        Ok(e) => e,
        Err(c) => return c,
    };
    let spinner = run::progress(format!("building {} for {} target(s)", out.display(), targets.len()));
    let built = tk_toolchain::bundle::build(&entries, targets, &opts, out);
    spinner.finish_and_clear();
    match built {
        Ok(w) => {
            outln!(
                "wrote {} ({} bytes): {} entr{} for {}",
                out.display(),
                w.bytes,
                entries.len(),
                if entries.len() == 1 { "y" } else { "ies" },
                w.variants.join(", ")
            );
            exit::OK
        }
        Err(e) => build_failed(e),
    }
}

/// `tk build`.
fn build(
    files: &[PathBuf],
    targets: &[tk_toolchain::target::Target],
    out: &Path,
    verbose: bool,
    opts: tk_toolchain::target::Options,
    choice: ColorChoice,
) -> u8 {
    let mut sources: Vec<tk_toolchain::aot::Source> = Vec::new();
    for f in files {
        let checked = match check_one(f, choice) {
            Ok(c) => c,
            Err(c) => return c,
        };
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        if let Some(other) = sources.iter().find(|s| s.stem == stem) {
            eprintln!(
                "error: {} and {} would both write {stem}.<target>.cubin; build them into different directories",
                other.path.display(),
                f.display()
            );
            return exit::USER;
        }
        let mut entries = Vec::new();
        for k in &checked.kernels {
            match tk_toolchain::Session::new().prepared(k) {
                Ok(graph) => entries.push(tk_toolchain::aot::Entry { name: k.name.clone(), graph }),
                Err(e) => {
                    eprintln!("error: {}: {e}", f.display());
                    return exit::USER;
                }
            }
        }
        sources.push(tk_toolchain::aot::Source { path: f.clone(), stem, entries });
    }
    let spinner = run::progress(format!("building {} file(s) for {} target(s)", sources.len(), targets.len()));
    let built = tk_toolchain::aot::build(&sources, targets, &opts, out);
    spinner.finish_and_clear();
    match built {
        Ok(built) => {
            for f in &built.files {
                outln!("wrote {}", f.display());
            }
            if verbose && !built.resources.is_empty() {
                outln!(
                    "{:<8} {:<32} {:>9} {:>12} {:>11} {:>12}",
                    "TARGET",
                    "KERNEL",
                    "REGISTERS",
                    "SPILL STORES",
                    "SPILL LOADS",
                    "SHARED BYTES"
                );
                for r in &built.resources {
                    outln!(
                        "{:<8} {:<32} {:>9} {:>12} {:>11} {:>12}",
                        r.target,
                        r.kernel,
                        r.registers,
                        r.spill_stores,
                        r.spill_loads,
                        r.shared_bytes
                    );
                }
            }
            if verbose && !built.amd.is_empty() {
                outln!(
                    "{:<14} {:<32} {:>5} {:>5} {:>6} {:>6} {:>9} {:>13} {:>4}",
                    "TARGET",
                    "KERNEL",
                    "VGPRS",
                    "SGPRS",
                    "VSPILL",
                    "SSPILL",
                    "LDS BYTES",
                    "SCRATCH BYTES",
                    "WAVE"
                );
                for (t, k) in &built.amd {
                    outln!(
                        "{:<14} {:<32} {:>5} {:>5} {:>6} {:>6} {:>9} {:>13} {:>4}",
                        t,
                        k.name,
                        k.vgprs,
                        k.sgprs,
                        k.vgpr_spills,
                        k.sgpr_spills,
                        k.lds_bytes,
                        k.scratch_bytes,
                        k.wave_size
                    );
                }
            }
            exit::OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                tk_runtime::RunError::MissingTool { .. } => exit::MISSING_TOOL,
                tk_runtime::RunError::File { .. } => exit::USER,
                _ => exit::RUNTIME,
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Flags {
    fast_math: bool,
    deterministic: bool,
}

fn emit(
    file: &Path,
    stage: Stage,
    target: tk_toolchain::target::Target,
    entry: Option<&str>,
    knobs: Option<&tk_ir::kernel::KnobOverrides>,
    flags: Flags,
    choice: ColorChoice,
) -> u8 {
    let out = match stage {
        Stage::Ast => {
            let src = match read(file) {
                Ok(s) => s,
                Err(c) => return c,
            };
            let (module, diags) = tk_compiler::with_big_stack(|| {
                let mut sources = tk_compiler::diag::SourceMap::default();
                let id = sources.add(file.display().to_string(), src.clone());
                let (m, d) = tk_compiler::parser::parse(id, &src);
                let rendered: Vec<String> = d.iter().map(|d| d.render_plain(&sources)).collect();
                (tk_compiler::pretty::module_to_string(&m), (d, sources, rendered))
            });
            if !diags.0.is_empty() {
                let mut err = StandardStream::stderr(choice);
                for d in &diags.0 {
                    let _ = d.render_to(&diags.1, &mut err);
                }
                return exit::USER;
            }
            module
        }
        Stage::Graph
        | Stage::Schedule
        | Stage::Kernel
        | Stage::Legal
        | Stage::Clif
        | Stage::Ptx
        | Stage::Sass
        | Stage::Llvm
        | Stage::Gcn => {
            let checked = match check_one(file, choice) {
                Ok(c) => c,
                Err(c) => return c,
            };
            let session = tk_toolchain::Session::with_options(tk_toolchain::target::Options {
                knobs: knobs.cloned(),
                deterministic: flags.deterministic,
                split: None,
            });
            use tk_toolchain::emit::{EmitError, Notes, Stage as S};
            let stage = match stage {
                Stage::Graph => S::Graph,
                Stage::Schedule => S::Schedule,
                Stage::Kernel => S::Kernel,
                Stage::Legal => S::Legal,
                Stage::Clif => S::Clif,
                Stage::Ptx => S::Ptx,
                Stage::Sass => S::Sass,
                Stage::Llvm => S::Llvm,
                // Gcn (ast and types are the arms above).
                _ => S::Gcn,
            };
            match session.emit(&checked, stage, target, entry, Notes { fast_math: flags.fast_math }) {
                Ok(s) => s,
                Err(EmitError::Kernel { kernel, message, internal }) => {
                    eprintln!("error: {}: kernel `{kernel}`: {message}", file.display());
                    return if internal { exit::RUNTIME } else { exit::USER };
                }
                Err(EmitError::NoEntry(e)) => {
                    eprintln!("error: {} has no kernel `{e}`", file.display());
                    return exit::USER;
                }
                Err(EmitError::Module(e)) => {
                    eprintln!("error: {}: {e}", file.display());
                    return exit::USER;
                }
                Err(EmitError::Tool(e)) => {
                    eprintln!("error: {e}");
                    return if matches!(e, tk_runtime::RunError::MissingTool { .. }) {
                        exit::MISSING_TOOL
                    } else {
                        exit::RUNTIME
                    };
                }
            }
        }
        Stage::Types => {
            let checked = match check_one(file, choice) {
                Ok(c) => c,
                Err(c) => return c,
            };
            let mut s = String::new();
            let mut found = false;
            for k in &checked.kernels {
                if entry.is_none_or(|e| e == k.name) {
                    found = true;
                    s.push_str(&tk_compiler::tast::print_types(k));
                }
            }
            if let Some(e) = entry
                && !found
            {
                let names: Vec<&str> = checked.kernels.iter().map(|k| k.name.as_str()).collect();
                eprintln!("error: {} has no kernel `{e}`; its kernels are: {}", file.display(), names.join(", "));
                return exit::USER;
            }
            s
        }
    };
    out!("{out}");
    exit::OK
}
