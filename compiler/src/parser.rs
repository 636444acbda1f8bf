//! Parsing: source text to [`ast::Module`](crate::ast::Module), with every lexical and syntax error
//! turned into a diagnostic. The parser recovers at item boundaries, so one file can report
//! several errors.

use crate::ast::*;
use crate::diag::{Code, Diag, FileId};
use crate::lexer::{LexErrorKind, Lexer, Tok, UserError};
use lalrpop_util::{ParseError, lalrpop_mod};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens, unused_imports, dead_code)]
    grammar
);

/// The largest source file the front end accepts (documented in docs/language.md).
pub const MAX_SOURCE_BYTES: usize = 64 << 20;

type PErr<'s> = ParseError<usize, Tok<'s>, UserError>;

/// Builds an expression node, refusing trees deeper than [`MAX_NESTING`].
pub fn mk<'s>(kind: ExprKind, l: usize, r: usize) -> Result<Box<Expr>, PErr<'s>> {
    let e = Expr::new(kind, Span::new(l, r));
    if e.depth > MAX_NESTING {
        // A chain of one operator nests each application in the next, although it reads flat.
        if let ExprKind::Binary(op, a, _) = &e.kind
            && matches!(&a.kind, ExprKind::Binary(inner, _, _) if inner == op)
        {
            return Err(ParseError::User { error: UserError::LongChain(e.span, op.symbol()) });
        }
        return Err(ParseError::User { error: UserError::TooDeep(e.span) });
    }
    Ok(Box::new(e))
}

/// One item of `[...]`: an expression (an array literal's element, or a comprehension's index
/// name) or `i in lo..hi` (a comprehension's index with its range).
pub enum BracketItem {
    Expr(Box<Expr>),
    Binder(Binder),
}

/// `[items] => body`: the items must be index names, each with an optional range.
pub fn comprehension<'s>(items: Vec<BracketItem>, body: Box<Expr>, l: usize, r: usize) -> Result<Box<Expr>, PErr<'s>> {
    let mut bs = Vec::with_capacity(items.len());
    for it in items {
        bs.push(match it {
            BracketItem::Binder(b) => b,
            BracketItem::Expr(e) => match e.kind {
                ExprKind::Name(name) => Binder { name, range: None },
                _ => {
                    return Err(ParseError::User {
                        error: UserError::BadBracket(
                            e.span,
                            "a comprehension's head lists index names",
                            "write `[i, j] => ...` or `[i in 0..n] => ...`; an array literal has no `=>`",
                        ),
                    });
                }
            },
        });
    }
    mk(ExprKind::Comprehension(bs, body), l, r)
}

/// `[a, b, c]`: an array literal; its items are expressions.
pub fn array<'s>(items: Vec<BracketItem>, l: usize, r: usize) -> Result<Box<Expr>, PErr<'s>> {
    let mut es = Vec::with_capacity(items.len());
    for it in items {
        match it {
            BracketItem::Expr(e) => es.push(*e),
            BracketItem::Binder(b) => {
                return Err(ParseError::User {
                    error: UserError::BadBracket(
                        b.name.span,
                        "`in` inside brackets belongs to a comprehension's head",
                        "a comprehension needs `=> body` after its head: `[i in 0..n] => x[i]`",
                    ),
                });
            }
        }
    }
    mk(ExprKind::Array(es), l, r)
}

type UseSeg = (Option<Ident>, Option<Vec<Ident>>, Span);

/// Validates the segments of a `use` declaration.
pub fn use_item<'s>(segs: Vec<UseSeg>, span: Span) -> Result<UseItem, PErr<'s>> {
    let bad = |s: Span, m: &str| Err(ParseError::User { error: UserError::BadUse(s, m.to_string()) });
    let n = segs.len();
    if n < 2 {
        return bad(span, "a `use` names a module and an item: `use std::nn::softmax;`");
    }
    let mut path = Vec::new();
    for (i, (name, list, s)) in segs.into_iter().enumerate() {
        let last = i == n - 1;
        match (name, list, last) {
            (Some(id), _, false) => path.push(id),
            (Some(id), _, true) => {
                return Ok(UseItem { path, names: UseNames::Names(vec![id]), span });
            }
            (None, Some(list), true) => {
                if list.is_empty() {
                    return bad(s, "the list of imported names is empty");
                }
                return Ok(UseItem { path, names: UseNames::Names(list), span });
            }
            (None, None, true) => return Ok(UseItem { path, names: UseNames::Glob(s), span }),
            (None, _, false) => return bad(s, "`{...}` and `*` may only end a `use` path"),
        }
    }
    bad(span, "empty `use` declaration")
}

fn describe_expected(expected: &[String]) -> String {
    let mut names: Vec<String> = expected
        .iter()
        .map(|e| {
            let t = e.trim_matches('"');
            match t {
                "identifier" | "integer" | "float literal" => t.to_string(),
                _ => format!("`{t}`"),
            }
        })
        .collect();
    names.sort();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 => format!("expected {}", names[0]),
        n if n <= 8 => format!("expected one of {}", names.join(", ")),
        _ => format!("expected one of {}, ...", names[..8].join(", ")),
    }
}

fn parse_error_diag(file: FileId, src: &str, err: PErr<'_>) -> Diag {
    let src_len = src.len();
    match err {
        ParseError::InvalidToken { location } => {
            Diag::new(Code::InvalidChar, file, Span::new(location, location + 1), "invalid token")
                .label("not a token of the language")
        }
        ParseError::UnrecognizedEof { location, expected } => {
            let loc = location.min(src_len);
            let mut d = Diag::new(Code::UnexpectedEof, file, Span::new(loc, loc), "unexpected end of file")
                .label("the file ends here");
            let exp = describe_expected(&expected);
            if !exp.is_empty() {
                d = d.help(exp);
            }
            d
        }
        ParseError::UnrecognizedToken { token: (l, tok, r), expected } => {
            let exp = describe_expected(&expected);
            let mut d = Diag::new(Code::UnexpectedToken, file, Span::new(l, r), format!("unexpected {tok}"))
                .label(if exp.is_empty() { "unexpected here".to_string() } else { exp.clone() });
            let before = src.get(..l).unwrap_or("").trim_end();
            if let Some(h) = syntax_hint(&tok, &expected, before) {
                d = d.help(h);
            }
            d
        }
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diag::new(Code::UnexpectedToken, file, Span::new(l, r), format!("unexpected {tok}"))
                .label("nothing may follow here")
        }
        ParseError::User { error: UserError::TooDeep(span) } => Diag::new(
            Code::TooDeep,
            file,
            Span::new(span.lo as usize, (span.lo as usize + 1).min(span.hi as usize)),
            format!("expression nested more than {MAX_NESTING} levels deep"),
        )
        .label("this expression is too deeply nested")
        .help("split the expression with `let` bindings"),
        ParseError::User { error: UserError::LongChain(span, op) } => Diag::new(
            Code::TooDeep,
            file,
            Span::new(span.lo as usize, (span.lo as usize + 1).min(span.hi as usize)),
            format!("a chain of more than {MAX_NESTING} `{op}` operations"),
        )
        .label("the chain starts here")
        .help(format!(
            "each `{op}` of a chain like `a {op} b {op} c {op} ...` nests the ones before it, and expressions nest at \
             most {MAX_NESTING} levels: reduce an array instead (`sum`, `prod`, `max` over a stacked or indexed array) \
             or split the chain with `let` bindings"
        )),
        ParseError::User { error: UserError::BadBracket(span, m, help) } => {
            Diag::new(Code::UnexpectedToken, file, span, m).label("here").help(help)
        }
        ParseError::User { error: UserError::BadUse(span, m) } => {
            Diag::new(Code::BadUse, file, span, "malformed `use` declaration")
                .label(m)
                .help("write `use std::nn::{softmax, gelu};`, `use std::nn::softmax;` or `use std::nn::*;`")
        }
    }
}

/// A hint for an unexpected token, from the token, what was expected and the source before it.
fn syntax_hint(tok: &Tok<'_>, expected: &[String], before: &str) -> Option<String> {
    let exp = |s: &str| expected.iter().any(|e| e.trim_matches('"') == s);
    match tok {
        // `y[0] = 1.0`: an assignment into an array.
        Tok::Eq if before.ends_with(']') => Some(
            "arrays are values: tk has no assignment into an array. Build the new array instead, e.g. \
             `let y2 = where(arange(n) == 0, 1.0, y);` (`==` compares)"
                .into(),
        ),
        Tok::Eq if exp("==") => Some("use `==` to compare; `=` only appears in `let` and defaults".into()),
        Tok::If => Some(
            "tk has no `if`: choose elementwise with `where(cond, a, b)`, e.g. `where(x > 0.0, x, 0.0)` (`if` only \
             appears in a loop's `break if`)"
                .into(),
        ),
        Tok::Semi if exp("}") => Some("a block ends with its value, without `;`: `{ let y = f(x); y * 2.0 }`".into()),
        Tok::RBrace if exp(";") => Some("a `let` statement ends with `;`".into()),
        Tok::Ident(_) | Tok::Int(_) | Tok::Float(_) if exp(",") && exp(")") => {
            Some("separate the items of a list with `,`".into())
        }
        _ => None,
    }
}

/// Parses one file. Returns the items that parsed and every error found (lexical errors first).
pub fn parse(file: FileId, src: &str) -> (Module, Vec<Diag>) {
    if src.len() > MAX_SOURCE_BYTES {
        let d = Diag::new(Code::TooLarge, file, Span::new(0, 0), "source file too large")
            .label(format!("this file has {} bytes", src.len()))
            .help(format!("the front end accepts at most {MAX_SOURCE_BYTES} bytes per file; split it into modules"));
        return (Module::default(), vec![d]);
    }
    let mut lexer = Lexer::new(src);
    let mut recovered = Vec::new();
    let result = grammar::ModuleParser::new().parse(&mut recovered, &mut lexer);
    let mut diags: Vec<Diag> = lexer
        .errors
        .iter()
        .map(|e| {
            let span = Span::new(e.start, e.end);
            match e.kind {
                LexErrorKind::InvalidChar => {
                    let text = src.get(e.start..e.end).unwrap_or("");
                    let first = text.chars().next().unwrap_or('?');
                    let (msg, label) = if text.chars().count() > 1 {
                        (
                            format!("invalid characters starting with `{}`", first.escape_debug()),
                            "not part of the language",
                        )
                    } else {
                        (format!("invalid character `{}`", first.escape_debug()), "not part of the language")
                    };
                    let d = Diag::new(Code::InvalidChar, file, span, msg).label(label);
                    match first {
                        '#' => d.help("comments start with `//`"),
                        '.' => {
                            // `x.sum()`: a method call.
                            let prev = src[..e.start].chars().next_back();
                            let method: String =
                                src[e.end..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                            if prev.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ')' || c == ']')
                                && method.chars().next().is_some_and(|c| c.is_alphabetic())
                            {
                                d.help(format!(
                                    "tk has no methods: pass the value as the first argument, `{method}(x)` instead \
                                     of `x.{method}()`"
                                ))
                            } else {
                                d.help("a float literal needs digits after the dot: `2.0`")
                            }
                        }
                        '\'' | '"' => d.help("tk has no string or character literals"),
                        '?' => d.help("tk has no `?` operator; use `where(cond, a, b)`"),
                        _ => d,
                    }
                }
                LexErrorKind::UnterminatedComment => Diag::new(
                    Code::UnterminatedComment,
                    file,
                    Span::new(e.start, e.start + 2),
                    "unterminated block comment",
                )
                .label("this comment is never closed")
                .help("close it with `*/`"),
                LexErrorKind::IntTooLarge => Diag::new(Code::IntTooLarge, file, span, "integer literal too large")
                    .label("does not fit in 64 bits"),
                LexErrorKind::BadFloat => {
                    Diag::new(Code::BadFloat, file, span, "float literal out of range").label("not a finite f64 value")
                }
            }
        })
        .collect();
    let module = match result {
        Ok(m) => m,
        Err(e) => {
            diags.push(parse_error_diag(file, src, e));
            Module::default()
        }
    };
    for r in recovered {
        diags.push(parse_error_diag(file, src, r.error));
    }
    diags.sort_by_key(|d| (d.span.lo, d.span.hi));
    // An invalid character often also produces a syntax error at the same place: keep one.
    diags.dedup_by(|b, a| a.span.lo == b.span.lo);
    (module, diags)
}

/// Parses a single expression (used by tests and the REPL).
pub fn parse_expr(file: FileId, src: &str) -> Result<Expr, Vec<Diag>> {
    let mut lexer = Lexer::new(src);
    let mut recovered = Vec::new();
    let result = grammar::ExprParser::new().parse(&mut recovered, &mut lexer);
    let mut diags: Vec<Diag> = Vec::new();
    if let Some(e) = lexer.errors.first() {
        diags.push(Diag::new(Code::InvalidChar, file, Span::new(e.start, e.end), "invalid input"));
    }
    match result {
        Ok(e) if diags.is_empty() && recovered.is_empty() => Ok(*e),
        Ok(_) => {
            diags.extend(recovered.into_iter().map(|r| parse_error_diag(file, src, r.error)));
            Err(diags)
        }
        Err(e) => {
            diags.push(parse_error_diag(file, src, e));
            Err(diags)
        }
    }
}
