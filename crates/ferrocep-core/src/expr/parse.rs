//! Lexer and recursive-descent parser of the condition language, a port of the oracle's
//! `Expr.Parser` that keeps its exact behaviour: it works on UTF-16 code units with Java's
//! character classes (`Character.isLetter`, `isDigit`, `isWhitespace`), lexes the whole source
//! before parsing (so a lexical error anywhere wins), accepts the same literal forms (`.5`,
//! `1.`, `007`, digits of any script, `\u+041`-style escapes that `Integer.parseInt` takes)
//! and reports the same messages at the same token.
//!
//! Differences, all for inputs Java cannot handle either: nesting is limited to
//! [`MAX_NESTING`] (Java would overflow its stack much later), and a number literal whose
//! `BigDecimal` would be out of range is a `bad number` error (Java throws a bare
//! `NumberFormatException`).

use std::borrow::Cow;

use super::eval::{CmpOp, Node};
use super::unicode::{digit10, digit16, is_digit, is_letter, is_letter_or_digit, is_whitespace};
use super::{ExprError, Fields};
use crate::event::{push_utf16_as_wtf8, Dec, Str, Value};

/// Maximum nesting of parentheses, lists, `!` and comparison chains.
pub const MAX_NESTING: usize = 128;

#[derive(Clone, Debug)]
enum Tok {
    Str(Vec<u16>),
    Num(Value<'static>),
    /// An identifier: `None` for the keywords `true`, `false`, `null`, `in`; else the name
    /// (back-quotes removed).
    Ident(Option<String>),
    Op(&'static str),
    Eof,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    /// The source text of the token (Java `Token.text`).
    text: String,
    /// Position in UTF-16 code units.
    pos: usize,
}

impl Token {
    /// Java `Token.is`: an operator or identifier whose text is `op`.
    fn is(&self, op: &str) -> bool {
        matches!(self.tok, Tok::Op(_) | Tok::Ident(_)) && self.text == op
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.tok, Tok::Op(o) if o == op)
    }

    fn describe(&self) -> String {
        match self.tok {
            Tok::Eof => "end of expression".to_string(),
            _ => format!("'{}'", self.text),
        }
    }
}

/// An error at a UTF-16 position (converted to a char column by the caller).
struct Fail {
    pos: usize,
    msg: String,
}

type PResult<T> = Result<T, Fail>;

fn fail<T>(pos: usize, msg: impl Into<String>) -> PResult<T> {
    Err(Fail {
        pos,
        msg: msg.into(),
    })
}

/// Parses `src`, registering its field paths in `fields` (only when it parses).
pub(crate) fn parse(src: &str, fields: &mut Fields) -> Result<Node, ExprError> {
    let units: Vec<u16> = src.encode_utf16().collect();
    let mut scratch = fields.clone();
    let result = lex(&units).and_then(|toks| {
        let mut p = Parser {
            toks,
            i: 0,
            fields: &mut scratch,
            nesting: 0,
        };
        let (n, _) = p.parse_or()?;
        if !matches!(p.peek().tok, Tok::Eof) {
            let t = p.peek();
            return fail(t.pos, format!("unexpected {}", t.describe()));
        }
        Ok(n)
    });
    match result {
        Ok(n) => {
            *fields = scratch;
            Ok(n)
        }
        Err(f) => Err(ExprError {
            column: char_column(src, f.pos),
            message: f.msg,
        }),
    }
}

/// 1-based column in chars of a UTF-16 position.
fn char_column(src: &str, pos16: usize) -> usize {
    let mut u = 0;
    let mut col = 1;
    for c in src.chars() {
        if u >= pos16 {
            break;
        }
        u += c.len_utf16();
        col += 1;
    }
    col
}

fn to_string(units: &[u16]) -> String {
    String::from_utf16_lossy(units)
}

/// `Integer.parseInt(s, 16)` cast to `char`: optional sign, then hex digits of any script.
fn java_parse_hex(s: &[u16]) -> Option<u16> {
    let (neg, digits) = match s.first() {
        Some(&0x2B) => (false, &s[1..]),
        Some(&0x2D) => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return None;
    }
    let mut v: i32 = 0;
    for &c in digits {
        v = v * 16 + i32::from(digit16(c)?);
    }
    Some(if neg { (-v) as u16 } else { v as u16 })
}

fn lex(src: &[u16]) -> PResult<Vec<Token>> {
    let n = src.len();
    let mut p = 0;
    let mut toks = Vec::new();
    let ch = |i: usize| src[i];
    loop {
        while p < n && is_whitespace(ch(p)) {
            p += 1;
        }
        if p >= n {
            toks.push(Token {
                tok: Tok::Eof,
                text: String::new(),
                pos: p,
            });
            return Ok(toks);
        }
        let c = ch(p);
        let start = p;
        if c == u16::from(b'"') || c == u16::from(b'\'') {
            let mut sb: Vec<u16> = Vec::new();
            p += 1;
            loop {
                if p >= n {
                    return fail(start, "unterminated string");
                }
                let d = ch(p);
                p += 1;
                if d == c {
                    break;
                }
                if d == u16::from(b'\\') {
                    if p >= n {
                        return fail(start, "unterminated string");
                    }
                    let e = ch(p);
                    p += 1;
                    match u8::try_from(e).unwrap_or(0) {
                        b'n' => sb.push(u16::from(b'\n')),
                        b't' => sb.push(u16::from(b'\t')),
                        b'r' => sb.push(u16::from(b'\r')),
                        b'\\' | b'"' | b'\'' | b'`' | b'?' => sb.push(e),
                        b'u' => {
                            if p + 4 > n {
                                return fail(p, "bad \\u escape");
                            }
                            match java_parse_hex(&src[p..p + 4]) {
                                Some(v) => sb.push(v),
                                None => return fail(p, "bad \\u escape"),
                            }
                            p += 4;
                        }
                        _ => {
                            return fail(p - 2, format!("unsupported escape \\{}", to_string(&[e])))
                        }
                    }
                } else {
                    sb.push(d);
                }
            }
            toks.push(Token {
                tok: Tok::Str(sb),
                text: to_string(&src[start..p]),
                pos: start,
            });
        } else if is_digit(c) || (c == u16::from(b'.') && p + 1 < n && is_digit(ch(p + 1))) {
            while p < n && is_digit(ch(p)) {
                p += 1;
            }
            let mut dec = false;
            if p < n && ch(p) == u16::from(b'.') {
                dec = true;
                p += 1;
                while p < n && is_digit(ch(p)) {
                    p += 1;
                }
            }
            if p < n && (ch(p) == u16::from(b'e') || ch(p) == u16::from(b'E')) {
                dec = true;
                p += 1;
                if p < n && (ch(p) == u16::from(b'+') || ch(p) == u16::from(b'-')) {
                    p += 1;
                }
                let ds = p;
                while p < n && is_digit(ch(p)) {
                    p += 1;
                }
                if ds == p {
                    return fail(start, "bad number");
                }
            }
            if p < n && (is_letter(ch(p)) || ch(p) == u16::from(b'_')) {
                return fail(start, "bad number");
            }
            // BigDecimal(text): digits of any script, normalised to ASCII here.
            let ascii: String = src[start..p]
                .iter()
                .map(|&u| match digit10(u) {
                    Some(d) => char::from(b'0' + d),
                    None => char::from(u8::try_from(u).unwrap_or(b'?')),
                })
                .collect();
            let Some(d) = Dec::from_cow(Cow::Owned(ascii.clone())) else {
                return fail(start, "bad number");
            };
            let v = if dec {
                Value::Dec(d)
            } else {
                // longValueExact() of an integer literal (leading zeros allowed)
                match ascii.parse::<i64>() {
                    Ok(i) => Value::Int(i),
                    Err(_) => Value::Dec(d),
                }
            };
            toks.push(Token {
                tok: Tok::Num(v),
                text: to_string(&src[start..p]),
                pos: start,
            });
        } else if is_letter(c) || c == u16::from(b'_') {
            while p < n && (is_letter_or_digit(ch(p)) || ch(p) == u16::from(b'_')) {
                p += 1;
            }
            let text = to_string(&src[start..p]);
            let kw = matches!(text.as_str(), "true" | "false" | "null" | "in");
            let name = if kw { None } else { Some(text.clone()) };
            toks.push(Token {
                tok: Tok::Ident(name),
                text,
                pos: start,
            });
        } else if c == u16::from(b'`') {
            let Some(rel) = src[p + 1..].iter().position(|&u| u == u16::from(b'`')) else {
                return fail(start, "unterminated `quoted` field name");
            };
            let end = p + 1 + rel;
            let name = to_string(&src[p + 1..end]);
            p = end + 1;
            toks.push(Token {
                tok: Tok::Ident(Some(name)),
                text: to_string(&src[start..p]),
                pos: start,
            });
        } else {
            let two = if p + 1 < n {
                to_string(&src[p..p + 2])
            } else {
                String::new()
            };
            const TWO: [&str; 6] = ["==", "!=", "<=", ">=", "&&", "||"];
            const ONE: [&str; 10] = ["<", ">", "!", "(", ")", "[", "]", ",", ".", "-"];
            if let Some(op) = TWO.iter().find(|&&o| o == two) {
                toks.push(Token {
                    tok: Tok::Op(op),
                    text: two,
                    pos: start,
                });
                p += 2;
            } else if let Some(op) = ONE.iter().find(|&&o| o.encode_utf16().next() == Some(c)) {
                toks.push(Token {
                    tok: Tok::Op(op),
                    text: (*op).to_string(),
                    pos: start,
                });
                p += 1;
            } else if c == u16::from(b'=') {
                return fail(start, "'=' is not an operator; use '=='");
            } else {
                // A lone surrogate prints as '?' (Java's UTF-8 encoder), as in the oracle.
                let shown = if (0xD800..0xE000).contains(&c) {
                    "?".to_string()
                } else {
                    to_string(&[c])
                };
                return fail(start, format!("unexpected character '{shown}'"));
            }
        }
    }
}

struct Parser<'f> {
    toks: Vec<Token>,
    i: usize,
    fields: &'f mut Fields,
    nesting: usize,
}

/// A parsed node with the depth of its tree.
type Parsed = (Node, usize);

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The token list always ends with EOF and the index never passes it when peeking.
        &self.toks[self.i.min(self.toks.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let t = self.peek().clone();
        self.i += 1;
        t
    }

    fn error<T>(&self, msg: impl Into<String>) -> PResult<T> {
        let pos = match self.toks.get(self.i) {
            Some(t) => t.pos,
            None => self.toks.last().map_or(0, |t| t.pos),
        };
        fail(pos, msg)
    }

    fn expect(&mut self, op: &str) -> PResult<()> {
        if !self.peek().is(op) {
            let found = self.peek().describe();
            return self.error(format!("expected '{op}' but found {found}"));
        }
        self.i += 1;
        Ok(())
    }

    fn enter(&mut self) -> PResult<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return self.error("expression nested too deeply");
        }
        Ok(())
    }

    fn check_depth(&self, depth: usize) -> PResult<()> {
        if depth > MAX_NESTING {
            return self.error("expression nested too deeply");
        }
        Ok(())
    }

    fn parse_or(&mut self) -> PResult<Parsed> {
        let (first, mut depth) = self.parse_and()?;
        let mut items = vec![first];
        while self.peek().is_op("||") {
            self.i += 1;
            let (n, d) = self.parse_and()?;
            depth = depth.max(d);
            items.push(n);
        }
        Ok(if items.len() == 1 {
            (items.pop().unwrap_or(Node::Lit(Value::Null)), depth)
        } else {
            (Node::Or(items), depth + 1)
        })
    }

    fn parse_and(&mut self) -> PResult<Parsed> {
        let (first, mut depth) = self.parse_rel()?;
        let mut items = vec![first];
        while self.peek().is_op("&&") {
            self.i += 1;
            let (n, d) = self.parse_rel()?;
            depth = depth.max(d);
            items.push(n);
        }
        Ok(if items.len() == 1 {
            (items.pop().unwrap_or(Node::Lit(Value::Null)), depth)
        } else {
            (Node::And(items), depth + 1)
        })
    }

    fn parse_rel(&mut self) -> PResult<Parsed> {
        let (mut n, mut depth) = self.parse_unary()?;
        loop {
            let t = self.peek();
            let op = match (&t.tok, t.text.as_str()) {
                (Tok::Op(_), "==") => CmpOp::Eq,
                (Tok::Op(_), "!=") => CmpOp::Ne,
                (Tok::Op(_), "<") => CmpOp::Lt,
                (Tok::Op(_), "<=") => CmpOp::Le,
                (Tok::Op(_), ">") => CmpOp::Gt,
                (Tok::Op(_), ">=") => CmpOp::Ge,
                (Tok::Ident(None), "in") => CmpOp::In,
                _ => return Ok((n, depth)),
            };
            self.i += 1;
            let (b, d) = self.parse_unary()?;
            depth = depth.max(d) + 1;
            self.check_depth(depth)?;
            n = Node::cmp(op, n, b);
        }
    }

    fn parse_unary(&mut self) -> PResult<Parsed> {
        if self.peek().is_op("!") {
            self.i += 1;
            self.enter()?;
            let (a, d) = self.parse_unary()?;
            self.nesting -= 1;
            return Ok((Node::Not(Box::new(a)), d + 1));
        }
        if self.peek().is_op("-") {
            self.i += 1;
            let t = self.next();
            let Tok::Num(v) = t.tok else {
                self.i -= 1;
                return self.error("unary minus is only supported before a number literal");
            };
            let neg = match v {
                Value::Int(i) => Value::Int(-i),
                Value::Dec(d) => Value::Dec(d.negate()),
                other => other,
            };
            return Ok((Node::Lit(neg), 1));
        }
        self.parse_primary()
    }

    fn parse_primary(&mut self) -> PResult<Parsed> {
        let t = self.next();
        match t.tok {
            Tok::Str(units) => {
                let mut b = Vec::with_capacity(units.len());
                push_utf16_as_wtf8(&mut b, &units);
                Ok((Node::Lit(Value::Str(Str::from_wtf8(Cow::Owned(b)))), 1))
            }
            Tok::Num(v) => Ok((Node::Lit(v), 1)),
            Tok::Ident(None) => match t.text.as_str() {
                "true" => Ok((Node::Lit(Value::Bool(true)), 1)),
                "false" => Ok((Node::Lit(Value::Bool(false)), 1)),
                "null" => Ok((Node::Lit(Value::Null), 1)),
                _ => {
                    self.i -= 1;
                    self.error(format!("unexpected '{}'", t.text))
                }
            },
            Tok::Ident(Some(first)) => {
                let mut segs = vec![first];
                while self.peek().is_op(".") {
                    self.i += 1;
                    let s = self.next();
                    match s.tok {
                        Tok::Ident(Some(name)) => segs.push(name),
                        _ => {
                            self.i -= 1;
                            return self.error("expected a field name after '.'");
                        }
                    }
                }
                if self.peek().is_op("(") {
                    return self.error("function calls are not supported");
                }
                Ok((Node::Field(self.fields.slot(&segs)), 1))
            }
            Tok::Op("(") => {
                self.enter()?;
                let (n, d) = self.parse_or()?;
                self.expect(")")?;
                self.nesting -= 1;
                Ok((n, d))
            }
            Tok::Op("[") => {
                self.enter()?;
                let mut items = Vec::new();
                let mut depth = 0;
                if !self.peek().is("]") {
                    let (n, d) = self.parse_or()?;
                    items.push(n);
                    depth = d;
                    while self.peek().is_op(",") {
                        self.i += 1;
                        if self.peek().is("]") {
                            break; // trailing comma
                        }
                        let (n, d) = self.parse_or()?;
                        items.push(n);
                        depth = depth.max(d);
                    }
                }
                self.expect("]")?;
                self.nesting -= 1;
                // A list of constants is a constant.
                if items.iter().all(|n| matches!(n, Node::Lit(_))) {
                    let vals = items
                        .into_iter()
                        .map(|n| match n {
                            Node::Lit(v) => v,
                            _ => Value::Null,
                        })
                        .collect();
                    return Ok((Node::Lit(Value::List(vals)), 1));
                }
                Ok((Node::List(items), depth + 1))
            }
            Tok::Op(_) => {
                self.i -= 1;
                self.error(format!("unexpected {}", t.describe()))
            }
            Tok::Eof => {
                self.i -= 1;
                self.error("unexpected end of expression")
            }
        }
    }
}
