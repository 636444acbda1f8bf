//! `tk repl`: define `fn`s and `kernel`s, bind arrays with `let`, and evaluate expressions on
//! the current device.
//!
//! An expression is evaluated by wrapping it in a kernel whose parameters are the REPL variables
//! it mentions, with their concrete shapes: `let y = x * 2.0` with `x: f32[10]` compiles
//! `kernel __repl(x: f32[10]) -> f32[10] { x * 2.0 }` (its result type found by checking the
//! expression first) and runs it. Every definition entered so far is part of that program.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tk_runtime::{Device, HostArray};

/// The REPL's state: definitions, variables and the device.
pub struct Session {
    defs: Vec<String>,
    vars: BTreeMap<String, HostArray>,
    device: Arc<dyn Device>,
    counter: usize,
    print: crate::run::Print,
    /// The generator of `rand`, `randn` and `randint` (`:seed N` restarts it).
    rng: tk_runtime::array::ChaCha8Rng,
}

const HELP: &str = "\
Enter an item (fn, kernel, use, const) to define it (defining a name again replaces it),
`let NAME = EXPR` to bind an array, or an expression to evaluate it (its value is then `_`).
Lines with unclosed brackets continue on the next line.

In the REPL, rand(SHAPE) (uniform in [0, 1)), randn(SHAPE) (standard normal) and
randint(LO, HI, SHAPE) (i32 in [LO, HI)) make random arrays; SHAPE is a size or a tuple of sizes.

Commands:
  :type EXPR          the type of an expression
  :emit STAGE NAME    print a compiler stage (types, graph, schedule, kernel, clif) of kernel NAME
  :time EXPR          evaluate and print the compile and run times
  :load FILE          load the items of a .tk file, or bind a .npy file to its name (`:load x.npy` binds x)
  :load NAME FILE     bind a .npy file to NAME
  :save NAME FILE     write variable NAME to a .npy file
  :seed N             restart the generator of rand, randn and randint
  :reset              forget every definition and variable
  :device NAME        switch device (`tk devices` lists them)
  :vars               list the variables
  :print full|short   print every element of results, or elide the middle of large ones (default)
  :help               this text
  :quit               leave (also Ctrl-D; Ctrl-C stops a run, not the session)

Example:
  let x = arange(10) as f32
  kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }
  saxpy(2.0, x, x)
";

fn is_item(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    matches!(first, "fn" | "kernel" | "use" | "const" | "pub")
}

/// Splits at the commas outside brackets.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' | '[' => depth += 1,
            ')' | ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if !s[start..].trim().is_empty() || !out.is_empty() {
        out.push(&s[start..]);
    }
    out
}

/// The names an input defines (`fn NAME`, `kernel NAME`, `const NAME`).
fn item_names(s: &str) -> Vec<String> {
    let w = idents(s);
    w.windows(2).filter(|p| matches!(p[0], "fn" | "kernel" | "const")).map(|p| p[1].to_string()).collect()
}

fn idents(s: &str) -> Vec<&str> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect()
}

/// Whether the brackets of an input are balanced (so it is complete).
pub fn complete(s: &str) -> bool {
    let mut depth = 0i64;
    let mut in_comment = false;
    let mut prev = ' ';
    for c in s.chars() {
        if in_comment {
            if c == '\n' {
                in_comment = false;
            }
        } else if c == '/' && prev == '/' {
            in_comment = true;
        } else if "([{".contains(c) {
            depth += 1;
        } else if ")]}".contains(c) {
            depth -= 1;
        }
        prev = c;
    }
    depth <= 0
}

impl Session {
    pub fn new(device: Arc<dyn Device>) -> Session {
        Session {
            defs: Vec::new(),
            vars: BTreeMap::new(),
            device,
            counter: 0,
            print: crate::run::Print::Short,
            rng: tk_runtime::array::rng(0),
        }
    }

    /// Names for tab completion: builtins, commands, defined items and variables.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = tk_compiler::load::BUILTINS.iter().map(|s| s.to_string()).collect();
        v.extend(tk_compiler::load::BUILTIN_CONSTS.iter().map(|(c, _)| c.to_string()));
        for c in [
            ":type", ":emit", ":time", ":load", ":save", ":seed", ":reset", ":device", ":vars", ":print", ":help",
            ":quit",
        ] {
            v.push(c.to_string());
        }
        for d in &self.defs {
            let w = idents(d);
            if let [kind, name, ..] = w.as_slice()
                && matches!(*kind, "fn" | "kernel" | "const")
            {
                v.push(name.to_string());
            }
        }
        v.extend(self.vars.keys().cloned());
        // The standard library's fns (completing one reminds of its name; `use` imports it) and
        // the keywords that start an input.
        v.extend(tk_stdlib::items().into_iter().map(|i| i.name));
        v.extend(
            ["kernel", "fn", "let", "use", "const", "std::nn::", "std::math::", "std::linalg::"].map(String::from),
        );
        v.retain(|n| !n.starts_with("__"));
        v.sort();
        v.dedup();
        v
    }

    fn program(&self, extra: &str) -> String {
        let mut s = self.defs.join("\n");
        s.push('\n');
        s.push_str(extra);
        s
    }

    /// Checks a program; returns the checked result or the rendered diagnostics.
    fn check(&self, src: String) -> Result<tk_compiler::Checked, String> {
        let c = tk_toolchain::Session::new().check(Path::new("<repl>"), src);
        if c.is_ok() { Ok(c) } else { Err(c.render_plain()) }
    }

    /// The parameters for the variables an expression mentions.
    fn params(&self, expr: &str) -> (Vec<String>, Vec<HostArray>) {
        let mut seen = Vec::new();
        let mut params = Vec::new();
        let mut args = Vec::new();
        for w in idents(expr) {
            if let Some(a) = self.vars.get(w)
                && !seen.contains(&w)
            {
                seen.push(w);
                let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
                let ty =
                    if dims.is_empty() { a.dtype.to_string() } else { format!("{}[{}]", a.dtype, dims.join(", ")) };
                params.push(format!("{w}: {ty}"));
                args.push(a.clone());
            }
        }
        (params, args)
    }

    /// The type of an expression, as the checker prints it.
    pub fn type_of(&mut self, expr: &str) -> Result<String, String> {
        let (params, _) = self.params(expr);
        let probe =
            // The expression on lines of its own, so that a diagnostic shows what the user typed.
            format!("kernel __repl_type({}) -> bool {{\n    let __value =\n{expr}\n;\n    true\n}}\n", params.join(", "));
        let c = self.check(self.program(&probe))?;
        c.kernels
            .iter()
            .find(|k| k.name == "__repl_type")
            .and_then(|k| k.lets.iter().find(|(n, _)| n == "__value"))
            .map(|(_, t)| t.to_string())
            .ok_or_else(|| "cannot type the expression".to_string())
    }

    /// Evaluates an expression: its values (one per tuple element) and compile/run times.
    pub fn eval(&mut self, expr: &str) -> Result<(Vec<HostArray>, String), String> {
        let (expr, temps) = self.expand_random(expr)?;
        let r = self.eval_expanded(&expr);
        for t in temps {
            self.vars.remove(&t);
        }
        r
    }

    /// Replaces each `rand(SHAPE)`, `randn(SHAPE)` and `randint(LO, HI, SHAPE)` of an expression
    /// by a temporary variable holding such an array; returns the expression and the temporaries.
    fn expand_random(&mut self, expr: &str) -> Result<(String, Vec<String>), String> {
        let mut out = String::new();
        let mut temps = Vec::new();
        let mut rest = expr;
        loop {
            let found = ["randint(", "randn(", "rand("]
                .iter()
                .filter_map(|f| {
                    rest.match_indices(f)
                        .find(|(i, _)| {
                            rest[..*i].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
                        })
                        .map(|(i, _)| (i, *f))
                })
                .min_by_key(|(i, f)| (*i, std::cmp::Reverse(f.len())));
            let Some((at, f)) = found else { break };
            let open = at + f.len();
            let mut depth = 1;
            let mut close = None;
            for (k, c) in rest[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = Some(open + k);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let close = close.ok_or_else(|| format!("error: `{}` has no closing `)`\n", &f[..f.len() - 1]))?;
            let args = split_top(&rest[open..close]);
            let name = &f[..f.len() - 1];
            let a = self.random_array(name, &args)?;
            self.counter += 1;
            let t = format!("__rand{}", self.counter);
            self.vars.insert(t.clone(), a);
            out.push_str(&rest[..at]);
            out.push_str(&t);
            temps.push(t);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        Ok((out, temps))
    }

    fn random_array(&mut self, f: &str, args: &[&str]) -> Result<HostArray, String> {
        let usage = || {
            format!(
                "error: {f}: write {}\n",
                if f == "randint" {
                    "randint(LO, HI, SHAPE), e.g. randint(0, 10, (4, 8))"
                } else {
                    "rand(SHAPE), e.g. rand((4, 8)) or rand(16)"
                }
            )
        };
        let shape = |s: &str| -> Option<Vec<usize>> {
            let s = s.trim();
            let inner = s.strip_prefix('(').and_then(|s| s.strip_suffix(')')).unwrap_or(s);
            inner.split(',').map(str::trim).filter(|p| !p.is_empty()).map(|p| p.parse::<usize>().ok()).collect()
        };
        let too_big = |e: String| format!("error: {f}: {e}\n");
        match (f, args) {
            ("rand" | "randn", [s]) => {
                let dims = shape(s).ok_or_else(usage)?;
                let dist =
                    if f == "rand" { tk_runtime::array::Random::Uniform } else { tk_runtime::array::Random::Normal };
                HostArray::try_random(tk_ir::dtype::DType::F32, dims, dist, &mut self.rng).map_err(too_big)
            }
            ("randint", [lo, hi, s]) => {
                let (Ok(lo), Ok(hi)) = (lo.trim().parse::<i32>(), hi.trim().parse::<i32>()) else {
                    return Err(usage());
                };
                if lo >= hi {
                    return Err(format!("error: randint({lo}, {hi}, ...): LO must be below HI\n"));
                }
                let dims = shape(s).ok_or_else(usage)?;
                HostArray::try_randint(tk_ir::dtype::DType::I32, i64::from(lo), i64::from(hi), dims, &mut self.rng)
                    .map_err(too_big)
            }
            _ => Err(usage()),
        }
    }

    fn eval_expanded(&mut self, expr: &str) -> Result<(Vec<HostArray>, String), String> {
        let t0 = Instant::now();
        // A literal alone (`2`, `0.5`) is untyped; as a value it takes the language's default
        // dtypes, i32 and f32 (docs/language.md 6.2).
        let ty = self.type_of(expr)?.replace("{integer}", "i32").replace("{float}", "f32");
        let (params, args) = self.params(expr);
        self.counter += 1;
        let name = format!("__repl{}", self.counter);
        let src = format!("kernel {name}({}) -> {ty} {{\n{expr}\n}}\n", params.join(", "));
        let c = self.check(self.program(&src))?;
        let k = c.kernels.iter().find(|k| k.name == name).ok_or("internal error: the expression kernel is missing")?;
        let session = tk_toolchain::Session::new();
        let g = session.prepared(k).map_err(|e| format!("error: {}", e.message))?;
        let compiled = session.compile(self.device.as_ref(), &name, &g).map_err(|e| format!("error: {e}"))?;
        let t1 = Instant::now();
        let outs = compiled
            .run(self.device.as_ref(), &args, &HashMap::new())
            .map_err(|e| crate::run::render_plain(&e, &c.program.sources))?;
        let t2 = Instant::now();
        let times = format!(
            "time: compile {:.3} ms ({} device kernel{}), run {:.3} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            compiled.kernels.len(),
            if compiled.kernels.len() == 1 { "" } else { "s" },
            (t2 - t1).as_secs_f64() * 1e3
        );
        Ok((outs, times))
    }

    fn show(&self, values: &[HostArray], name: &str) -> String {
        if values.len() == 1 {
            return crate::run::show(name, &values[0], self.print);
        }
        values.iter().enumerate().map(|(i, v)| crate::run::show(&format!("{name}.{i}"), v, self.print)).collect()
    }

    /// Handles one complete input; returns what to print (errors included) and whether to quit.
    pub fn handle(&mut self, input: &str) -> (String, bool) {
        // A Ctrl-C pressed before this command (at the prompt, or after the last run ended) is
        // not for it.
        tk_abi::interrupt::clear();
        let line = input.trim();
        if line.is_empty() {
            return (String::new(), false);
        }
        if let Some(cmd) = line.strip_prefix(':') {
            let (c, rest) = cmd.split_once(char::is_whitespace).unwrap_or((cmd, ""));
            let rest = rest.trim();
            return match c {
                "q" | "quit" | "exit" => (String::new(), true),
                "help" | "h" => (HELP.to_string(), false),
                "print" => match rest {
                    "full" => {
                        self.print = crate::run::Print::Full;
                        ("results print every element\n".to_string(), false)
                    }
                    "short" => {
                        self.print = crate::run::Print::Short;
                        ("results of more than 1000 elements print their ends only\n".to_string(), false)
                    }
                    _ => ("error: :print full or :print short\n".to_string(), false),
                },
                "vars" => {
                    let v: Vec<String> = self
                        .vars
                        .iter()
                        .map(|(n, a)| {
                            let d: Vec<String> = a.shape.iter().map(|x| x.to_string()).collect();
                            format!("{n}: {}[{}]\n", a.dtype, d.join(", "))
                        })
                        .collect();
                    (v.concat(), false)
                }
                "type" => match self.type_of(rest) {
                    Ok(t) => (format!("{t}\n"), false),
                    Err(e) => (e, false),
                },
                "time" if rest.is_empty() => {
                    ("error: :time EXPR times an expression, e.g. `:time x * x`\n".into(), false)
                }
                "reset" => {
                    self.defs.clear();
                    self.vars.clear();
                    ("forgot every definition and variable\n".to_string(), false)
                }
                "time" => match self.eval(rest) {
                    Ok((v, t)) => (format!("{}{t}\n", self.show(&v, "_")), false),
                    Err(e) => (e, false),
                },
                "device" if rest.is_empty() => {
                    (format!("device: {} ({})\n", self.device.name(), self.device.target()), false)
                }
                "device" => match tk_toolchain::open(rest) {
                    Ok(d) => {
                        self.device = d;
                        (format!("device: {rest}\n"), false)
                    }
                    Err(e) => (format!("error: {e}\n"), false),
                },
                "seed" => match rest.parse::<u64>() {
                    Ok(n) => {
                        self.rng = tk_runtime::array::rng(n);
                        (format!("seed {n}\n"), false)
                    }
                    Err(_) => ("error: :seed N takes a non-negative integer\n".into(), false),
                },
                "save" => {
                    let (name, file) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    match self.vars.get(name) {
                        None => (format!("error: no variable `{name}`; :vars lists them\n"), false),
                        Some(_) if file.trim().is_empty() => ("error: :save NAME FILE.npy\n".into(), false),
                        Some(a) => match a.write_npy(Path::new(file.trim())) {
                            Ok(()) => (format!("wrote {}\n", file.trim()), false),
                            Err(e) => (format!("error: {e}\n"), false),
                        },
                    }
                }
                "load" if rest.ends_with(".npy") || rest.split_whitespace().count() == 2 => {
                    let (name, file) = match rest.split_once(char::is_whitespace) {
                        Some((n, f)) => (n.to_string(), f.trim()),
                        None => {
                            let stem = Path::new(rest).file_stem().map(|s| s.to_string_lossy().into_owned());
                            (stem.unwrap_or_default(), rest)
                        }
                    };
                    if name.is_empty() || !name.chars().all(|c| c.is_alphanumeric() || c == '_') {
                        return (format!("error: `{name}` is not a variable name: use :load NAME {file}\n"), false);
                    }
                    match HostArray::read_npy_any(Path::new(file)) {
                        Ok(a) => {
                            let out = crate::run::show(&name, &a, self.print);
                            self.vars.insert(name, a);
                            (out, false)
                        }
                        Err(e) => (format!("error: {e}\n"), false),
                    }
                }
                "load" => match std::fs::read_to_string(rest) {
                    Ok(src) => {
                        // Checked alone first, so that its diagnostics name the file.
                        let alone = tk_toolchain::Session::new().check(Path::new(rest), src.clone());
                        let before = self.defs.len();
                        self.defs.push(src);
                        match self.check(self.program("")) {
                            Ok(c) => {
                                let names: Vec<String> = c.kernels.iter().map(|k| k.name.clone()).collect();
                                (format!("loaded {rest}: kernels {}\n", names.join(", ")), false)
                            }
                            Err(e) => {
                                self.defs.truncate(before);
                                (if alone.is_ok() { e } else { alone.render_plain() }, false)
                            }
                        }
                    }
                    Err(e) => (format!("error: cannot read {rest}: {e}\n"), false),
                },
                "emit" => {
                    let (stage, name) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
                    (self.emit(stage, name.trim()), false)
                }
                other => (format!("error: unknown command `:{other}`; :help lists the commands\n"), false),
            };
        }
        if is_item(line) {
            // Defining a name again replaces the earlier definition (when that was one item).
            let names = item_names(line);
            let before = self.defs.clone();
            self.defs.retain(|d| {
                let old = item_names(d);
                !(old.len() == 1 && names.contains(&old[0]))
            });
            // `use` and `const` need no `;` at the prompt, as `let` does not.
            let first = line.split_whitespace().next().unwrap_or("");
            let line = if matches!(first, "use" | "const") && !line.ends_with(';') {
                format!("{line};")
            } else {
                line.to_string()
            };
            self.defs.push(line);
            if let Err(e) = self.check(self.program("")) {
                self.defs = before;
                return (e, false);
            }
            return (String::new(), false);
        }
        // `let NAME = EXPR` binds; anything else is an expression.
        if let Some(rest) = line.strip_prefix("let ")
            && let Some((name, expr)) = rest.split_once('=')
            && !expr.starts_with('=')
        {
            let name = name.trim().trim_end_matches(|c: char| c == ':' || c.is_whitespace());
            let name = name.split(':').next().unwrap_or(name).trim();
            if !name.chars().all(|c| c.is_alphanumeric() || c == '_') || name.is_empty() {
                return (format!("error: `{name}` is not a variable name\n"), false);
            }
            return match self.eval(expr.trim().trim_end_matches(';')) {
                Ok((mut v, _)) if v.len() == 1 => {
                    let a = v.remove(0);
                    let out = crate::run::show(name, &a, self.print);
                    self.vars.insert(name.to_string(), a);
                    (out, false)
                }
                Ok(_) => (format!("error: `{name}` would be a tuple; bind one element at a time\n"), false),
                Err(e) => (e, false),
            };
        }
        match self.eval(line.trim_end_matches(';')) {
            Ok((v, _)) => {
                let out = self.show(&v, "_");
                // The value of the last expression is `_` (when it is one array).
                if let [a] = v.as_slice() {
                    self.vars.insert("_".to_string(), a.clone());
                }
                (out, false)
            }
            Err(e) => (e, false),
        }
    }

    fn emit(&mut self, stage: &str, name: &str) -> String {
        const STAGES: [&str; 5] = ["types", "graph", "schedule", "kernel", "clif"];
        if !STAGES.contains(&stage) {
            return format!(
                "error: unknown stage `{stage}`; the stages are {} (other stages and targets: `tk emit FILE --stage \
                 ... --target ...`)\n",
                STAGES.join(", ")
            );
        }
        let src = self.program("");
        let c = match self.check(src) {
            Ok(c) => c,
            Err(e) => return e,
        };
        let Some(k) = c.kernels.iter().find(|k| k.name == name) else {
            let names: Vec<&str> =
                c.kernels.iter().map(|k| k.name.as_str()).filter(|n| !n.starts_with("__repl")).collect();
            if names.is_empty() {
                return format!(
                    "error: no kernel `{name}`: :emit shows the kernels defined in this session, and there are none \
                     yet (wrap a fn in one: `kernel k(x: f32[n]) -> f32[n] {{ {name}(x) }}`)\n"
                );
            }
            return format!("error: no kernel `{name}`; the kernels are: {}\n", names.join(", "));
        };
        if stage == "types" {
            return tk_compiler::tast::print_types(k);
        }
        let session = tk_toolchain::Session::new();
        let g = match session.graph(k) {
            Ok(g) => g,
            Err(e) => return format!("error: {}\n", e.message),
        };
        match stage {
            "graph" => tk_ir::graph::text::print(&session.optimized(&g), name),
            "schedule" | "kernel" | "clif" => {
                let g = session.prepare(&g);
                let compiled = match session.compile(self.device.as_ref(), name, &g) {
                    Ok(c) => c,
                    Err(e) => return format!("error: {e}\n"),
                };
                match stage {
                    "schedule" => tk_ir::schedule::print(&compiled.schedule, name),
                    "kernel" => compiled.kernels.iter().map(tk_ir::kernel::print).collect(),
                    _ => compiled
                        .kernels
                        .iter()
                        .map(|k| session.clif(k).unwrap_or_else(|e| format!("error: {e}\n")))
                        .collect(),
                }
            }
            other => format!("error: unknown stage `{other}`; the stages are types, graph, schedule, kernel, clif\n"),
        }
    }
}

/// Tab completion of names.
struct Helper {
    names: Vec<String>,
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;
    fn complete(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let start = line[..pos].rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).map_or(0, |i| i + 1);
        let word = &line[start..pos];
        Ok((start, self.names.iter().filter(|n| n.starts_with(word)).cloned().collect()))
    }
}
impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {
    fn validate(
        &self,
        ctx: &mut rustyline::validate::ValidationContext<'_>,
    ) -> rustyline::Result<rustyline::validate::ValidationResult> {
        Ok(if complete(ctx.input()) {
            rustyline::validate::ValidationResult::Valid(None)
        } else {
            rustyline::validate::ValidationResult::Incomplete
        })
    }
}
impl rustyline::Helper for Helper {}

/// Makes Ctrl-C (SIGINT) interrupt the run in progress instead of ending the process: the
/// devices stop at their next check ([`tk_abi::interrupt`]) and the command reports that it was
/// interrupted. A second Ctrl-C before the first is taken (a device that does not check, such as
/// a real GPU's queue) ends the process, with the shell's status for an interrupt.
fn catch_interrupts() {
    #[cfg(unix)]
    {
        let handler = || {
            if tk_abi::interrupt::requested() {
                signal_hook::low_level::exit(i32::from(crate::exit::INTERRUPTED));
            }
            tk_abi::interrupt::request();
        };
        // SAFETY: the handler only loads and stores an atomic, or calls `_exit`: both
        // async-signal-safe.
        if let Err(e) = unsafe { signal_hook::low_level::register(signal_hook::consts::SIGINT, handler) } {
            eprintln!("warning: Ctrl-C will end the session, not only the run: {e}");
        }
    }
}

/// Runs the REPL: interactive with line editing on a terminal, else reading stdin line by line.
pub fn run(device: &str) -> u8 {
    let dev = match tk_toolchain::open(device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, tk_runtime::RunError::Argument { .. }) {
                crate::exit::USAGE
            } else {
                crate::exit::RUNTIME
            };
        }
    };
    let mut s = Session::new(dev);
    catch_interrupts();
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        let mut pending = String::new();
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            pending.push_str(&line);
            pending.push('\n');
            if !complete(&pending) {
                continue;
            }
            let (out, quit) = s.handle(&pending);
            pending.clear();
            out!("{out}");
            // A script has no prompt to come back to: an interrupt ends it, as a shell's would.
            if tk_abi::interrupt::requested() {
                return crate::exit::INTERRUPTED;
            }
            if quit {
                break;
            }
        }
        return crate::exit::OK;
    }
    let config = rustyline::Config::builder().auto_add_history(true).build();
    let mut ed: rustyline::Editor<Helper, rustyline::history::DefaultHistory> =
        match rustyline::Editor::with_config(config) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("error: cannot start the line editor: {e}");
                return crate::exit::RUNTIME;
            }
        };
    let history = dirs::data_dir().map(|d| d.join("tk").join("history"));
    if let Some(h) = &history {
        let _ = ed.load_history(h);
    }
    outln!("tk {} REPL on {} (:help for help, Ctrl-D to leave)", env!("CARGO_PKG_VERSION"), device);
    loop {
        ed.set_helper(Some(Helper { names: s.names() }));
        match ed.readline("tk> ") {
            Ok(line) => {
                let (out, quit) = s.handle(&line);
                out!("{out}");
                if quit {
                    break;
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(_) => break,
        }
    }
    if let Some(h) = &history {
        if let Some(p) = h.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = ed.save_history(h);
    }
    crate::exit::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustyline::completion::Completer;

    #[test]
    fn tab_completes_builtins_stdlib_fns_commands_and_variables() {
        let mut s = Session::new(tk_toolchain::open("cpu").expect("cpu"));
        let _ = s.handle("let logits = arange(4) as f32");
        let h = Helper { names: s.names() };
        let history = rustyline::history::DefaultHistory::new();
        let ctx = rustyline::Context::new(&history);
        let complete = |line: &str| h.complete(line, line.len(), &ctx).expect("completes");
        assert!(complete("let y = sof").1.contains(&"softmax".to_string()));
        assert_eq!(complete("let y = sof").0, 8, "the word starts after the space");
        assert!(complete("exp(log").1.contains(&"logits".to_string()));
        assert!(complete(":pr").1.contains(&":print".to_string()));
        assert!(complete("tan").1.contains(&"tanh".to_string()));
        assert!(complete("__").1.is_empty(), "internal names are not offered");
    }
}
