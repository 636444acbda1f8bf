//! Loading a program: the root file, the files it imports with relative `use`, and the standard
//! library modules (`use std::...`), each parsed once.

use crate::ast::{self, Item, Span, UseNames};
use crate::diag::{Code, Diag, FileId, SourceMap};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub type ModId = usize;

/// One parsed module and the names it defines and imports.
pub struct Module {
    pub file: FileId,
    /// `std::nn` or the file path, for messages.
    pub name: String,
    pub ast: ast::Module,
    /// Where relative imports of this module are resolved (None for stdlib modules).
    pub dir: Option<PathBuf>,
    /// Items defined here, by name: index into `ast.items`.
    pub defs: HashMap<String, usize>,
    /// Imported names: local name -> (module, item index in that module, span of the import).
    pub imports: HashMap<String, (ModId, usize, Span)>,
}

/// A whole program: every module reachable from the root, and every diagnostic from loading.
pub struct Program {
    pub sources: SourceMap,
    pub modules: Vec<Module>,
    pub diags: Vec<Diag>,
}

enum Key {
    Std(String),
    File(PathBuf),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Std(s) => format!("std::{s}"),
            Key::File(p) => p.display().to_string(),
        }
    }
}

/// The builtin constants: `inf` and `nan` are float literals that take the float dtype of their
/// context, like `1.5`. Items may not reuse these names either.
pub const BUILTIN_CONSTS: &[(&str, f64)] = &[("inf", f64::INFINITY), ("nan", f64::NAN)];

/// Names the language reserves for builtins; items may not reuse them.
pub const BUILTINS: &[&str] = &[
    "exp",
    "exp2",
    "log",
    "log2",
    "sqrt",
    "rsqrt",
    "sin",
    "cos",
    "tanh",
    "erf",
    "floor",
    "ceil",
    "round",
    "abs",
    "pow",
    "fma",
    "min",
    "max",
    "where",
    "scatter_add",
    "sum",
    "prod",
    "mean",
    "argmax",
    "argmin",
    "cumsum",
    "cumprod",
    "reshape",
    "permute",
    "transpose",
    "expand",
    "broadcast_to",
    "flip",
    "pad",
    "cat",
    "stack",
    "zeros",
    "ones",
    "full",
    "arange",
];

struct Loader {
    prog: Program,
    by_key: HashMap<String, ModId>,
}

/// Loads a program whose root is the file `path` with contents `src`.
pub fn load(path: &Path, src: String) -> Program {
    let mut l = Loader {
        prog: Program { sources: SourceMap::default(), modules: Vec::new(), diags: Vec::new() },
        by_key: HashMap::new(),
    };
    let dir = path.parent().map(|p| p.to_path_buf()).unwrap_or_default();
    let key = Key::File(path.to_path_buf());
    l.add_module(key, path.display().to_string(), src, Some(dir));
    l.prog
}

impl Loader {
    fn add_module(&mut self, key: Key, display: String, src: String, dir: Option<PathBuf>) -> ModId {
        let file = self.prog.sources.add(display.clone(), src);
        let (ast, diags) = crate::parser::parse(file, self.prog.sources.source(file));
        self.prog.diags.extend(diags);
        let id = self.prog.modules.len();
        self.by_key.insert(key.text(), id);
        let mut defs: HashMap<String, usize> = HashMap::new();
        for (i, item) in ast.items.iter().enumerate() {
            let name = match item {
                Item::Use(_) => continue,
                Item::Const(c) => &c.name,
                Item::Fn(f) => &f.name,
            };
            if BUILTINS.contains(&name.name.as_str()) || BUILTIN_CONSTS.iter().any(|(c, _)| *c == name.name) {
                self.prog.diags.push(
                    Diag::new(Code::ShadowsBuiltin, file, name.span, format!("`{}` is a builtin", name.name))
                        .label("a builtin has this name")
                        .help("choose another name; builtins cannot be redefined"),
                );
                continue;
            }
            if crate::types::DType::parse(&name.name).is_some() {
                self.prog.diags.push(
                    Diag::new(Code::ShadowsBuiltin, file, name.span, format!("`{}` is a dtype", name.name))
                        .label("a dtype has this name")
                        .help("choose another name"),
                );
                continue;
            }
            if let Some(&prev) = defs.get(&name.name) {
                let prev_span: Span = ast.items[prev].span();
                self.prog.diags.push(
                    Diag::new(Code::DuplicateItem, file, name.span, format!("`{}` is defined twice", name.name))
                        .label("redefined here")
                        .secondary(file, prev_span, "first defined here")
                        .help("rename one of the definitions"),
                );
                continue;
            }
            defs.insert(name.name.clone(), i);
        }
        let uses: Vec<ast::UseItem> = ast
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Use(u) => Some(u.clone()),
                _ => None,
            })
            .collect();
        self.prog.modules.push(Module { file, name: display, ast, dir: dir.clone(), defs, imports: HashMap::new() });
        for u in uses {
            self.resolve_use(id, &u);
        }
        id
    }

    fn resolve_use(&mut self, id: ModId, u: &ast::UseItem) {
        let file = self.prog.modules[id].file;
        let path_span = u.path.first().map(|f| f.span).unwrap_or(u.span);
        let path_span = u.path.iter().fold(path_span, |s, p| s.to(p.span));
        let segs: Vec<&str> = u.path.iter().map(|p| p.name.as_str()).collect();
        let target = if segs[0] == "std" {
            let name = segs[1..].join("::");
            if let Some(&m) = self.by_key.get(&format!("std::{name}")) {
                Some(m)
            } else if let Some(src) = tk_stdlib::module(&name) {
                Some(self.add_module(Key::Std(name.clone()), format!("<std>/{name}.tk"), src.to_string(), None))
            } else {
                let known: Vec<String> = tk_stdlib::module_names().map(|m| format!("std::{m}")).collect();
                self.prog.diags.push(
                    Diag::new(Code::UnknownModule, file, path_span, format!("unknown module `{}`", segs.join("::")))
                        .label("no such standard module")
                        .help(format!("the standard modules are {}", known.join(", "))),
                );
                None
            }
        } else {
            match self.prog.modules[id].dir.clone() {
                None => {
                    self.prog.diags.push(
                        Diag::new(Code::UnknownModule, file, path_span, "relative import inside the standard library")
                            .label("standard modules can only import `std::...`"),
                    );
                    None
                }
                Some(dir) => {
                    let mut p = dir.clone();
                    for s in &segs {
                        p.push(s);
                    }
                    p.set_extension("tk");
                    let canon = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
                    if let Some(&m) = self.by_key.get(&Key::File(canon.clone()).text()) {
                        Some(m)
                    } else {
                        match std::fs::read_to_string(&p) {
                            Ok(src) => {
                                let d = p.parent().map(|x| x.to_path_buf());
                                Some(self.add_module(Key::File(canon), p.display().to_string(), src, d))
                            }
                            Err(e) => {
                                self.prog.diags.push(
                                    Diag::new(Code::UnknownModule, file, path_span, format!("cannot load module `{}`", segs.join("::")))
                                        .label(format!("`{}`: {e}", p.display()))
                                        .help("a relative `use a::b::{f}` reads `a/b.tk` next to this file; standard modules start with `std::`"),
                                );
                                None
                            }
                        }
                    }
                }
            }
        };
        let Some(target) = target else { return };
        let names: Vec<(String, Span)> = match &u.names {
            UseNames::Names(ns) => ns.iter().map(|n| (n.name.clone(), n.span)).collect(),
            UseNames::Glob(s) => {
                let mut v: Vec<(String, Span)> =
                    self.prog.modules[target].defs.keys().map(|k| (k.clone(), *s)).collect();
                v.sort_by(|a, b| a.0.cmp(&b.0));
                v
            }
        };
        for (name, span) in names {
            let tm = &self.prog.modules[target];
            match tm.defs.get(&name) {
                Some(&idx) => {
                    let m = &mut self.prog.modules[id];
                    if m.defs.contains_key(&name) || m.imports.contains_key(&name) {
                        let d = Diag::new(Code::DuplicateItem, file, span, format!("`{name}` is defined twice"))
                            .label("imported here, but the name is already taken")
                            .help(format!("remove the import or rename the local `{name}`"));
                        self.prog.diags.push(d);
                    } else {
                        m.imports.insert(name, (target, idx, span));
                    }
                }
                None => {
                    let mut candidates: Vec<&String> = tm.defs.keys().collect();
                    candidates.sort();
                    let mut d = Diag::new(
                        Code::UnknownImport,
                        file,
                        span,
                        format!("`{name}` is not defined in `{}`", segs.join("::")),
                    )
                    .label("not found in this module");
                    if let Some(s) = crate::diag::suggest(&name, candidates.iter().map(|s| s.as_str())) {
                        d = d.help(format!("did you mean `{s}`?"));
                    } else {
                        let list: Vec<&str> = candidates.iter().map(|s| s.as_str()).collect();
                        d = d.help(format!("`{}` defines: {}", segs.join("::"), list.join(", ")));
                    }
                    self.prog.diags.push(d);
                }
            }
        }
    }
}
