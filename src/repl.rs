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
}

const HELP: &str = "\
Enter an item (fn, kernel, use, const) to define it (defining a name again replaces it),
`let NAME = EXPR` to bind an array, or an expression to evaluate it (its value is then `_`).
Lines with unclosed brackets continue on the next line.

Commands:
  :type EXPR          the type of an expression
  :emit STAGE NAME    print a compiler stage (types, graph, schedule, kernel, clif) of kernel NAME
  :time EXPR          evaluate and print the compile and run times
  :load FILE          load the items of a .tk file
  :reset              forget every definition and variable
  :device NAME        switch device (`tk devices` lists them)
  :vars               list the variables
  :print full|short   print every element of results, or elide the middle of large ones (default)
  :help               this text
  :quit               leave (also Ctrl-D)

Example:
  let x = arange(10) as f32
  kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }
  saxpy(2.0, x, x)
";

fn is_item(s: &str) -> bool {
    let first = s.split_whitespace().next().unwrap_or("");
    matches!(first, "fn" | "kernel" | "use" | "const" | "pub")
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
        Session { defs: Vec::new(), vars: BTreeMap::new(), device, counter: 0, print: crate::run::Print::Short }
    }

    /// Names for tab completion: builtins, commands, defined items and variables.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = tk_compiler::load::BUILTINS.iter().map(|s| s.to_string()).collect();
        for c in [":type", ":emit", ":time", ":load", ":reset", ":device", ":vars", ":print", ":help", ":quit"] {
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
            format!("kernel __repl_type({}) -> bool {{\n    let __value = {expr};\n    true\n}}\n", params.join(", "));
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
        let t0 = Instant::now();
        let ty = self.type_of(expr)?;
        let (params, args) = self.params(expr);
        self.counter += 1;
        let name = format!("__repl{}", self.counter);
        let src = format!("kernel {name}({}) -> {ty} {{\n    {expr}\n}}\n", params.join(", "));
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
                "device" => match tk_runtime::open(rest) {
                    Ok(d) => {
                        self.device = d;
                        (format!("device: {rest}\n"), false)
                    }
                    Err(e) => (format!("error: {e}\n"), false),
                },
                "load" => match std::fs::read_to_string(rest) {
                    Ok(src) => {
                        let before = self.defs.len();
                        self.defs.push(src);
                        match self.check(self.program("")) {
                            Ok(c) => {
                                let names: Vec<String> = c.kernels.iter().map(|k| k.name.clone()).collect();
                                (format!("loaded {rest}: kernels {}\n", names.join(", ")), false)
                            }
                            Err(e) => {
                                self.defs.truncate(before);
                                (e, false)
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

/// Runs the REPL: interactive with line editing on a terminal, else reading stdin line by line.
pub fn run(device: &str) -> u8 {
    let dev = match tk_runtime::open(device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return if matches!(e, tk_runtime::RunError::Argument { .. }) {
                crate::exit::USER
            } else {
                crate::exit::RUNTIME
            };
        }
    };
    let mut s = Session::new(dev);
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
