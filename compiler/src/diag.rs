//! Diagnostics: every error has a stable code (documented in docs/errors.md), a primary label at
//! the offending span, optional secondary labels, and a `help:` line when a fix is known.

use crate::ast::Span;
use codespan_reporting::diagnostic::{Diagnostic as CsDiagnostic, Label, LabelStyle};
use codespan_reporting::files::SimpleFiles;
use codespan_reporting::term;
use std::fmt::Write as _;
use std::ops::Range;

/// Source lines longer than this are shown clipped to a window around the place.
const LONG_LINE: usize = 240;
/// The bytes of a long line shown around a span.
const WINDOW: usize = 120;

/// A source file known to the compiler.
pub type FileId = usize;

/// All source files of one compilation (the user's files, imported files and stdlib modules).
#[derive(Default)]
pub struct SourceMap {
    pub files: SimpleFiles<String, String>,
}

impl SourceMap {
    pub fn add(&mut self, name: impl Into<String>, src: impl Into<String>) -> FileId {
        self.files.add(name.into(), src.into())
    }
    pub fn source(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.source().as_str()).unwrap_or("")
    }
    pub fn name(&self, id: FileId) -> &str {
        self.files.get(id).map(|f| f.name().as_str()).unwrap_or("<unknown>")
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal : $title:literal,)*) => {
        /// A stable error code. `docs/errors.md` has a section for each, and `tests/ui` a case.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code { $($variant,)* }
        impl Code {
            /// Every code, in order.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];
            /// `E0001` etc.
            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }
            /// A one-line title, as used in docs/errors.md.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    InvalidChar = "E0001": "invalid character",
    UnterminatedComment = "E0002": "unterminated block comment",
    IntTooLarge = "E0003": "integer literal too large",
    UnexpectedToken = "E0004": "unexpected token",
    UnexpectedEof = "E0005": "unexpected end of file",
    TooDeep = "E0006": "nesting too deep",
    BadUse = "E0007": "malformed `use` declaration",
    TooLarge = "E0008": "source file too large",
    BadFloat = "E0009": "float literal out of range",

    UnknownName = "E0100": "unknown name",
    UnknownFunction = "E0101": "unknown function",
    DuplicateItem = "E0102": "duplicate definition",
    UnknownModule = "E0103": "unknown module",
    UnknownImport = "E0104": "item not found in module",
    DuplicateParam = "E0105": "duplicate parameter or binding",
    Recursion = "E0106": "recursive function",
    UnknownType = "E0107": "unknown type",
    NotAValue = "E0108": "name is not a value",
    ShadowsBuiltin = "E0109": "item shadows a builtin",
    NotCallable = "E0110": "name cannot be called",

    DtypeMismatch = "E0200": "mismatched dtypes",
    OpNotSupported = "E0201": "operation not defined for this dtype",
    LiteralOutOfRange = "E0202": "literal out of range for its dtype",
    NotBool = "E0203": "expected a bool condition",
    NeedsFloat = "E0204": "function needs a float argument",
    DeclaredDtype = "E0205": "value does not have the declared dtype",
    ArgCount = "E0206": "wrong number of arguments",
    UnknownKeyword = "E0207": "unknown keyword argument",
    MissingArg = "E0208": "missing argument",
    NotConstant = "E0209": "expected a compile-time constant",
    TupleMismatch = "E0210": "tuple arity mismatch",
    FloatForInt = "E0211": "float literal where an integer is needed",
    DuplicateKeyword = "E0212": "keyword argument given twice",
    IndexNotInt = "E0213": "index is not an integer",
    TupleAsArray = "E0214": "tuple used as an array",
    NotATuple = "E0215": "value is not a tuple",
    BadConst = "E0216": "invalid constant",

    Broadcast = "E0300": "shapes cannot be broadcast",
    AxisOutOfRange = "E0301": "axis out of range",
    MatmulInner = "E0302": "matrix product inner dimensions differ",
    DeclaredShape = "E0303": "value does not have the declared shape",
    UnboundDim = "E0304": "unbound dimension",
    ReshapeCount = "E0305": "reshape changes the number of elements",
    OutOfBounds = "E0306": "index may be out of bounds",
    TooManyIndices = "E0307": "too many indices",
    UnknownExtent = "E0308": "cannot infer the extent of an index variable",
    ComprehensionRank = "E0309": "comprehension rank differs from its result",
    BadDim = "E0310": "invalid dimension expression",
    MatmulScalar = "E0311": "matrix product of a scalar",
    DuplicateAxis = "E0312": "axis given twice",
    JoinShape = "E0313": "arrays to join have different shapes",
    BadPermutation = "E0314": "invalid permutation",
    BadSlice = "E0315": "invalid slice",
    BadPad = "E0316": "invalid padding",
    BadShape = "E0317": "invalid shape argument",
    ArrayLiteralSize = "E0318": "array literal too large",

    OutputCount = "E0400": "wrong number of kernel outputs",
    BreakOutsideLoop = "E0401": "`break if` outside a loop body",
    LoopArity = "E0402": "loop body does not match its carried values",
    ParamNeedsType = "E0403": "kernel parameter needs a type",
    DuplicateOutput = "E0404": "duplicate output name",
    BadDefault = "E0405": "invalid parameter default",
    InlineTooDeep = "E0406": "inlining too deep",
    LoopCarriedType = "E0407": "loop changes a carried value's type",
    TwoBreaks = "E0408": "more than one `break if`",
    ExplicitDimCall = "E0409": "explicit dimension not given at a call",
    KindParam = "E0410": "compile-time parameter kind in a kernel",
    Unsupported = "E0411": "not supported by the compiler yet",

    ArgMismatch = "E0500": "argument does not match the kernel's signature",
    IndexOutOfRange = "E0501": "index out of range at run time",
    BadRuntimeDim = "E0502": "invalid size at run time",
    DeviceFault = "E0503": "a device kernel faulted",
}

/// One error or warning.
#[derive(Clone, Debug)]
pub struct Diag {
    pub code: Code,
    pub message: String,
    pub file: FileId,
    pub span: Span,
    pub label: String,
    pub secondary: Vec<(FileId, Span, String)>,
    pub help: Option<String>,
    pub notes: Vec<String>,
}

impl Diag {
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Diag {
        Diag {
            code,
            message: message.into(),
            file,
            span,
            label: String::new(),
            secondary: Vec::new(),
            help: None,
            notes: Vec::new(),
        }
    }
    /// Where the diagnostic points: the file's name, and the 1-based line and column (in
    /// characters) of the start of its span.
    pub fn location(&self, sources: &SourceMap) -> Option<(String, usize, usize)> {
        use codespan_reporting::files::Files;
        let name = sources.files.name(self.file).ok()?;
        let lo = self.span.lo as usize;
        let line = sources.files.line_index(self.file, lo).ok()?;
        let column = sources.files.column_number(self.file, line, lo).ok()?;
        Some((name, line + 1, column))
    }
    pub fn label(mut self, l: impl Into<String>) -> Diag {
        self.label = l.into();
        self
    }
    pub fn secondary(mut self, file: FileId, span: Span, l: impl Into<String>) -> Diag {
        self.secondary.push((file, span, l.into()));
        self
    }
    pub fn help(mut self, h: impl Into<String>) -> Diag {
        self.help = Some(h.into());
        self
    }
    pub fn note(mut self, n: impl Into<String>) -> Diag {
        self.notes.push(n.into());
        self
    }

    fn to_codespan(&self, files: &SourceMap) -> CsDiagnostic<FileId> {
        let clamp = |file: FileId, span: Span| -> Range<usize> {
            let len = files.source(file).len();
            let lo = (span.lo as usize).min(len);
            let hi = (span.hi as usize).clamp(lo, len);
            lo..hi
        };
        let mut labels = vec![
            Label::new(LabelStyle::Primary, self.file, clamp(self.file, self.span)).with_message(self.label.clone()),
        ];
        for (f, s, m) in &self.secondary {
            labels.push(Label::new(LabelStyle::Secondary, *f, clamp(*f, *s)).with_message(m.clone()));
        }
        let mut notes = Vec::new();
        if let Some(h) = &self.help {
            notes.push(format!("help: {h}"));
        }
        notes.extend(self.notes.iter().map(|n| format!("note: {n}")));
        CsDiagnostic::error()
            .with_code(self.code.as_str())
            .with_message(self.message.clone())
            .with_labels(labels)
            .with_notes(notes)
    }

    /// Renders without color (for tests and files).
    pub fn render_plain(&self, files: &SourceMap) -> String {
        if self.has_long_line(files) {
            return self.render_clipped(files);
        }
        let config = term::Config::default();
        term::emit_into_string(&config, &files.files, &self.to_codespan(files))
            .unwrap_or_else(|e| format!("error[{}]: {} ({e})\n", self.code.as_str(), self.message))
    }

    /// Renders to a terminal stream, in color when the stream supports it.
    pub fn render_to(&self, files: &SourceMap, out: &mut dyn term::termcolor::WriteColor) -> std::io::Result<()> {
        if self.has_long_line(files) {
            return out.write_all(self.render_clipped(files).as_bytes());
        }
        let config = term::Config::default();
        term::emit_to_write_style(out, &config, &files.files, &self.to_codespan(files)).map_err(std::io::Error::other)
    }

    /// The lines the labels point into, as (file, byte range of the line).
    fn label_lines(&self, files: &SourceMap) -> Vec<(FileId, Range<usize>, Span, String)> {
        let mut v = vec![(self.file, self.span, self.label.clone())];
        v.extend(self.secondary.iter().cloned());
        v.into_iter()
            .map(|(f, span, label)| {
                let src = files.source(f);
                let lo = (span.lo as usize).min(src.len());
                let start = src[..lo].rfind('\n').map_or(0, |i| i + 1);
                let end = src[lo..].find('\n').map_or(src.len(), |i| lo + i);
                (f, start..end, span, label)
            })
            .collect()
    }

    fn has_long_line(&self, files: &SourceMap) -> bool {
        self.label_lines(files).iter().any(|(_, r, _, _)| r.len() > LONG_LINE)
    }

    /// A diagnostic whose source lines are too long to show whole: each label's line is shown
    /// clipped to a window around its span (as rustc does), so the output stays small.
    fn render_clipped(&self, files: &SourceMap) -> String {
        let mut s = format!("error[{}]: {}\n", self.code.as_str(), self.message);
        for (k, (f, line, span, label)) in self.label_lines(files).into_iter().enumerate() {
            let src = files.source(f);
            let lo = (span.lo as usize).clamp(line.start, line.end);
            let hi = (span.hi as usize).clamp(lo, line.end);
            let line_no = src[..line.start].matches('\n').count() + 1;
            let col = src[line.start..lo].chars().count() + 1;
            // A window of about WINDOW bytes around the span, on character boundaries.
            let floor = |mut i: usize| {
                while !src.is_char_boundary(i) {
                    i -= 1;
                }
                i
            };
            let from = floor(lo.saturating_sub(WINDOW / 2).max(line.start));
            // At most WINDOW bytes of the span itself, then context.
            let span_end = hi.max(lo + 1).min(lo + WINDOW);
            let to = floor((span_end + WINDOW / 2).min(line.end).max(from));
            let shown_hi = hi.min(to).max(lo);
            let pre = if from > line.start { "..." } else { "" };
            let post = if to < line.end { "..." } else { "" };
            let text = src[from..to].replace('\t', " ");
            // The layout of codespan's rendering, which the other diagnostics use.
            let arrow = if k == 0 { "┌─" } else { "·" };
            let num = line_no.to_string();
            let gutter = " ".repeat(num.len());
            let _ = writeln!(s, "{gutter} {arrow} {}:{line_no}:{col}", files.name(f));
            let _ = writeln!(s, "{gutter} │");
            let _ = writeln!(s, "{num} │ {pre}{text}{post}");
            let pad = pre.len() + src[from..lo].chars().count();
            let carets = src[lo..shown_hi].chars().count().max(1);
            let mark = if k == 0 { "^" } else { "-" };
            let _ = writeln!(s, "{gutter} │ {}{} {label}", " ".repeat(pad), mark.repeat(carets));
            let _ = writeln!(s, "{gutter} │");
        }
        if let Some(h) = &self.help {
            let _ = writeln!(s, "  = help: {h}");
        }
        for n in &self.notes {
            let _ = writeln!(s, "  = note: {n}");
        }
        let _ = writeln!(s, "  = note: the line is long; a window around the place is shown");
        s.push('\n');
        s
    }
}

/// The error a library call returns when the user's program has errors: all diagnostics, sorted.
#[derive(Debug, thiserror::Error)]
#[error("{} error(s) in the program", .0.len())]
pub struct Diagnostics(pub Vec<Diag>);

/// The closest candidate by edit distance, if close enough to suggest.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= (name.len().max(2) / 3).max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

/// Edits (insert, delete, substitute, or swap two neighbours: `scael` is one edit from `scale`)
/// between two names.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut before: Vec<usize> = Vec::new();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(before[j - 2] + 1);
            }
        }
        before = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}
