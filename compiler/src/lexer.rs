//! The `.tk` lexer (logos). Invalid characters are reported and skipped so that the parser can
//! go on and report more than one error per file.

use logos::Logos;
use std::fmt;

/// Why a piece of the input is not a token.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum LexErrorKind {
    #[default]
    InvalidChar,
    UnterminatedComment,
    IntTooLarge,
    BadFloat,
}

fn block_comment<'a>(lex: &mut logos::Lexer<'a, Tok<'a>>) -> Result<logos::Skip, LexErrorKind> {
    let rest = lex.remainder();
    match rest.find("*/") {
        Some(end) => {
            lex.bump(end + 2);
            Ok(logos::Skip)
        }
        None => {
            lex.bump(rest.len());
            Err(LexErrorKind::UnterminatedComment)
        }
    }
}

fn int_lit<'a>(lex: &mut logos::Lexer<'a, Tok<'a>>) -> Result<u64, LexErrorKind> {
    let s: String = lex.slice().chars().filter(|c| *c != '_').collect();
    let r = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(h, 16)
    } else if let Some(b) = s.strip_prefix("0b").or_else(|| s.strip_prefix("0B")) {
        u64::from_str_radix(b, 2)
    } else {
        s.parse::<u64>()
    };
    r.map_err(|_| LexErrorKind::IntTooLarge)
}

fn float_lit<'a>(lex: &mut logos::Lexer<'a, Tok<'a>>) -> Result<f64, LexErrorKind> {
    let s: String = lex.slice().chars().filter(|c| *c != '_').collect();
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(LexErrorKind::BadFloat),
    }
}

/// A token. Identifiers borrow from the source.
#[derive(Logos, Debug, Clone, PartialEq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
#[logos(error = LexErrorKind)]
pub enum Tok<'s> {
    #[token("/*", block_comment)]
    BlockComment,

    #[regex(r"[0-9][0-9_]*|0[xX][0-9a-fA-F][0-9a-fA-F_]*|0[bB][01][01_]*", int_lit)]
    Int(u64),
    #[regex(r"[0-9][0-9_]*\.[0-9][0-9_]*([eE][+-]?[0-9]+)?|[0-9][0-9_]*[eE][+-]?[0-9]+", float_lit)]
    Float(f64),
    #[regex(r"[A-Za-z_][A-Za-z0-9_]*", |lex| lex.slice())]
    Ident(&'s str),

    #[token("use")]
    Use,
    #[token("const")]
    Const,
    #[token("fn")]
    Fn,
    #[token("kernel")]
    Kernel,
    #[token("let")]
    Let,
    #[token("as")]
    As,
    #[token("in")]
    In,
    #[token("loop")]
    Loop,
    #[token("with")]
    With,
    #[token("break")]
    Break,
    #[token("if")]
    If,
    #[token("true")]
    True,
    #[token("false")]
    False,
    #[token("new")]
    New,

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token(",")]
    Comma,
    #[token(";")]
    Semi,
    #[token(":")]
    Colon,
    #[token("::")]
    PathSep,
    #[token("..")]
    DotDot,
    #[token("->")]
    Arrow,
    #[token("=>")]
    FatArrow,
    #[token("=")]
    Eq,

    #[token("+")]
    Plus,
    #[token("-")]
    Minus,
    #[token("*")]
    Star,
    #[token("**")]
    StarStar,
    #[token("/")]
    Slash,
    #[token("%")]
    Percent,
    #[token("@")]
    At,
    #[token("&")]
    Amp,
    #[token("&&")]
    AmpAmp,
    #[token("|")]
    Pipe,
    #[token("||")]
    PipePipe,
    #[token("^")]
    Caret,
    #[token("!")]
    Bang,
    #[token("<<")]
    Shl,
    #[token(">>")]
    Shr,
    #[token("==")]
    EqEq,
    #[token("!=")]
    Ne,
    #[token("<")]
    Lt,
    #[token("<=")]
    Le,
    #[token(">")]
    Gt,
    #[token(">=")]
    Ge,
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Tok::BlockComment => "comment",
            Tok::Int(v) => return write!(f, "integer `{v}`"),
            Tok::Float(v) => return write!(f, "float `{v:?}`"),
            Tok::Ident(s) => return write!(f, "identifier `{s}`"),
            Tok::Use => "`use`",
            Tok::Const => "`const`",
            Tok::Fn => "`fn`",
            Tok::Kernel => "`kernel`",
            Tok::Let => "`let`",
            Tok::As => "`as`",
            Tok::In => "`in`",
            Tok::Loop => "`loop`",
            Tok::With => "`with`",
            Tok::Break => "`break`",
            Tok::If => "`if`",
            Tok::True => "`true`",
            Tok::False => "`false`",
            Tok::New => "`new`",
            Tok::LParen => "`(`",
            Tok::RParen => "`)`",
            Tok::LBracket => "`[`",
            Tok::RBracket => "`]`",
            Tok::LBrace => "`{`",
            Tok::RBrace => "`}`",
            Tok::Comma => "`,`",
            Tok::Semi => "`;`",
            Tok::Colon => "`:`",
            Tok::PathSep => "`::`",
            Tok::DotDot => "`..`",
            Tok::Arrow => "`->`",
            Tok::FatArrow => "`=>`",
            Tok::Eq => "`=`",
            Tok::Plus => "`+`",
            Tok::Minus => "`-`",
            Tok::Star => "`*`",
            Tok::StarStar => "`**`",
            Tok::Slash => "`/`",
            Tok::Percent => "`%`",
            Tok::At => "`@`",
            Tok::Amp => "`&`",
            Tok::AmpAmp => "`&&`",
            Tok::Pipe => "`|`",
            Tok::PipePipe => "`||`",
            Tok::Caret => "`^`",
            Tok::Bang => "`!`",
            Tok::Shl => "`<<`",
            Tok::Shr => "`>>`",
            Tok::EqEq => "`==`",
            Tok::Ne => "`!=`",
            Tok::Lt => "`<`",
            Tok::Le => "`<=`",
            Tok::Gt => "`>`",
            Tok::Ge => "`>=`",
        };
        f.write_str(s)
    }
}

/// A lexical error at a byte range.
#[derive(Debug, Clone, PartialEq)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub start: usize,
    pub end: usize,
}

/// The token stream the parser consumes: invalid input is recorded in `errors` and skipped.
pub struct Lexer<'s> {
    inner: logos::Lexer<'s, Tok<'s>>,
    pub errors: Vec<LexError>,
}

impl<'s> Lexer<'s> {
    pub fn new(src: &'s str) -> Self {
        Lexer { inner: Tok::lexer(src), errors: Vec::new() }
    }
}

/// Lexer items never fail: errors are collected on the side.
/// Errors raised from the parser's grammar actions; the token stream carries the same error type,
/// as lalrpop requires.
#[derive(Clone, Debug, PartialEq)]
pub enum UserError {
    TooDeep(crate::ast::Span),
    /// Too deep because of a long chain of one operator (`a + b + c + ...`), named.
    LongChain(crate::ast::Span, &'static str),
    BadUse(crate::ast::Span, String),
    /// A bracketed list that is neither a comprehension head nor an array literal: the place and
    /// what is wrong.
    BadBracket(crate::ast::Span, &'static str, &'static str),
}

pub type Spanned<'s> = Result<(usize, Tok<'s>, usize), UserError>;

impl<'s> Iterator for Lexer<'s> {
    type Item = Spanned<'s>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let tok = self.inner.next()?;
            let span = self.inner.span();
            match tok {
                Ok(Tok::BlockComment) => continue,
                Ok(t) => return Some(Ok((span.start, t, span.end))),
                Err(kind) => {
                    // Merge runs of invalid characters into one error.
                    if let Some(last) = self.errors.last_mut()
                        && last.kind == LexErrorKind::InvalidChar
                        && kind == LexErrorKind::InvalidChar
                        && last.end == span.start
                    {
                        last.end = span.end;
                        continue;
                    }
                    self.errors.push(LexError { kind, start: span.start, end: span.end });
                }
            }
        }
    }
}
