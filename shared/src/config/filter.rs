//! The `filter` of a windowed table: a small, closed condition language evaluated by the
//! stream stage on Arrow batches, so it needs no SQL engine on the hot path.
//!
//! ```text
//! condition  := comparison ( "and" comparison )*
//! comparison := field op literal | field "is" ["not"] "null" | field ["not"] "in" "(" literal, ... ")"
//! op         := = | == | != | <> | < | <= | > | >=
//! literal    := 123 | -4.5 | 'text' | "text" | true | false
//! ```
//!
//! Keywords are case-insensitive. A comparison with a NULL field is false, as in SQL.

use std::fmt;

/// A parsed filter: every comparison must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub all: Vec<Comparison>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub field: String,
    pub test: Test,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    Cmp(CmpOp, Value),
    IsNull,
    IsNotNull,
    In(Vec<Value>),
    NotIn(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "'{v}'"),
            Value::Bool(v) => write!(f, "{v}"),
        }
    }
}

impl Filter {
    /// The same condition in SQL (field names quoted, strings single-quoted), which the
    /// stages evaluate with DataFusion.
    pub fn to_sql(&self) -> String {
        let parts: Vec<String> = self.all.iter().map(Comparison::to_sql).collect();
        parts.join(" AND ")
    }
}

impl Comparison {
    fn to_sql(&self) -> String {
        let field = format!("\"{}\"", self.field.replace('"', "\"\""));
        let list = |vs: &[Value]| vs.iter().map(Value::to_sql).collect::<Vec<_>>().join(", ");
        match &self.test {
            Test::Cmp(op, v) => format!("{field} {} {}", op.as_sql(), v.to_sql()),
            Test::IsNull => format!("{field} IS NULL"),
            Test::IsNotNull => format!("{field} IS NOT NULL"),
            // An empty list: nothing is in it, everything is not.
            Test::In(vs) if vs.is_empty() => "FALSE".into(),
            Test::NotIn(vs) if vs.is_empty() => "TRUE".into(),
            Test::In(vs) => format!("{field} IN ({})", list(vs)),
            Test::NotIn(vs) => format!("{field} NOT IN ({})", list(vs)),
        }
    }
}

impl CmpOp {
    fn as_sql(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "<>",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

impl Value {
    fn to_sql(&self) -> String {
        match self {
            Value::Str(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Float(f) => format!("{f:?}"),
            other => other.to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Op(CmpOp),
    Lit(Value),
    LParen,
    RParen,
    Comma,
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let (token, len) = match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => (Token::LParen, 1),
            b')' => (Token::RParen, 1),
            b',' => (Token::Comma, 1),
            b'=' | b'!' | b'<' | b'>' => lex_op(b, i)?,
            b'\'' | b'"' => lex_string(s, i)?,
            b'0'..=b'9' | b'-' | b'.' => lex_number(s, i)?,
            c if c.is_ascii_alphabetic() || c == b'_' => lex_word(s, i),
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected `{ch}` at position {}", i + 1));
            }
        };
        out.push(token);
        i += len;
    }
    Ok(out)
}

/// The operator at `i` (`=`, `==`, `!=`, `<>`, `<`, `<=`, `>`, `>=`) and its length.
fn lex_op(b: &[u8], i: usize) -> Result<(Token, usize), String> {
    let (op, len) = match (b[i], b.get(i + 1).copied()) {
        (b'=', Some(b'=')) => (CmpOp::Eq, 2),
        (b'=', _) => (CmpOp::Eq, 1),
        (b'!', Some(b'=')) => (CmpOp::NotEq, 2),
        (b'<', Some(b'>')) => (CmpOp::NotEq, 2),
        (b'<', Some(b'=')) => (CmpOp::LtEq, 2),
        (b'<', _) => (CmpOp::Lt, 1),
        (b'>', Some(b'=')) => (CmpOp::GtEq, 2),
        (b'>', _) => (CmpOp::Gt, 1),
        (c, _) => return Err(format!("unexpected `{}` at position {}", c as char, i + 1)),
    };
    Ok((Token::Op(op), len))
}

/// The string quoted at `i` (by `'` or `"`, the quote doubled inside) and its length.
fn lex_string(s: &str, i: usize) -> Result<(Token, usize), String> {
    let b = s.as_bytes();
    let quote = b[i];
    let mut text = String::new();
    let mut j = i + 1;
    loop {
        match b.get(j) {
            None => {
                return Err(format!(
                    "unterminated string starting at position {}",
                    i + 1
                ));
            }
            Some(&q) if q == quote => {
                if b.get(j + 1) == Some(&quote) {
                    text.push(quote as char);
                    j += 2;
                } else {
                    j += 1;
                    break;
                }
            }
            Some(_) => {
                let ch = s[j..].chars().next().unwrap_or('\u{FFFD}');
                text.push(ch);
                j += ch.len_utf8();
            }
        }
    }
    Ok((Token::Lit(Value::Str(text)), j - i))
}

/// The number at `i` (an integer, else a float) and its length.
fn lex_number(s: &str, i: usize) -> Result<(Token, usize), String> {
    let b = s.as_bytes();
    let mut end = i + 1;
    while end < b.len() && (b[end].is_ascii_digit() || matches!(b[end], b'.' | b'e' | b'E')) {
        end += 1;
    }
    let text = &s[i..end];
    let v = if let Ok(v) = text.parse::<i64>() {
        Value::Int(v)
    } else if let Ok(v) = text.parse::<f64>() {
        Value::Float(v)
    } else {
        return Err(format!("`{text}` is not a number"));
    };
    Ok((Token::Lit(v), end - i))
}

/// The word at `i`: `true` or `false` (any case), else a name; and its length.
fn lex_word(s: &str, i: usize) -> (Token, usize) {
    let b = s.as_bytes();
    let mut end = i;
    while end < b.len() && (b[end].is_ascii_alphanumeric() || b[end] == b'_') {
        end += 1;
    }
    let word = &s[i..end];
    let token = match word.to_ascii_lowercase().as_str() {
        "true" => Token::Lit(Value::Bool(true)),
        "false" => Token::Lit(Value::Bool(false)),
        _ => Token::Ident(word.to_string()),
    };
    (token, end - i)
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Ident(w)) if w.eq_ignore_ascii_case(kw))
}

type Tokens = std::iter::Peekable<std::vec::IntoIter<Token>>;

/// Parses a filter condition.
pub fn parse(s: &str) -> Result<Filter, String> {
    let tokens = tokenize(s)?;
    let mut it = tokens.into_iter().peekable();
    let mut all = Vec::new();
    loop {
        let field = match it.next() {
            Some(Token::Ident(f)) => f,
            Some(t) => return Err(format!("expected a field name, found {t:?}")),
            None => return Err("expected a condition such as `status >= 400`".into()),
        };
        let test = parse_test(&mut it, &field)?;
        all.push(Comparison { field, test });
        match it.next() {
            None => break,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("and") => continue,
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("or") => {
                return Err(
                    "`or` is not supported: a table filter is a list of conditions joined by `and`"
                        .into(),
                );
            }
            Some(t) => return Err(format!("expected `and` or the end, found {t:?}")),
        }
    }
    Ok(Filter { all })
}

/// What follows `field`: `op literal`, `is [not] null` or `[not] in (literal, ...)`.
fn parse_test(it: &mut Tokens, field: &str) -> Result<Test, String> {
    match it.next() {
        Some(Token::Op(op)) => match it.next() {
            Some(Token::Lit(v)) => Ok(Test::Cmp(op, v)),
            _ => Err(format!(
                "expected a literal after the comparison on `{field}`"
            )),
        },
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("is") => {
            let not = is_kw(it.peek(), "not");
            if not {
                it.next();
            }
            if !is_kw(it.next().as_ref(), "null") {
                return Err(format!("expected `null` after `{field} is`"));
            }
            Ok(if not { Test::IsNotNull } else { Test::IsNull })
        }
        Some(Token::Ident(w)) if w.eq_ignore_ascii_case("in") || w.eq_ignore_ascii_case("not") => {
            let not = w.eq_ignore_ascii_case("not");
            if not && !is_kw(it.next().as_ref(), "in") {
                return Err(format!("expected `in` after `{field} not`"));
            }
            let values = parse_list(it, field)?;
            Ok(if not {
                Test::NotIn(values)
            } else {
                Test::In(values)
            })
        }
        _ => Err(format!(
            "expected a comparison after `{field}` (=, !=, <, <=, >, >=, is null, in (...))"
        )),
    }
}

/// `(literal, ...)` after `field in`.
fn parse_list(it: &mut Tokens, field: &str) -> Result<Vec<Value>, String> {
    if it.next() != Some(Token::LParen) {
        return Err(format!("expected `(` after `{field} in`"));
    }
    let mut values = Vec::new();
    loop {
        match it.next() {
            Some(Token::Lit(v)) => values.push(v),
            _ => return Err(format!("expected a literal in the list of `{field} in`")),
        }
        match it.next() {
            Some(Token::Comma) => continue,
            Some(Token::RParen) => break,
            _ => {
                return Err(format!("expected `,` or `)` in the list of `{field} in`"));
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conditions() {
        let f =
            parse("status >= 400 and method = 'GET' and path is not null and status in (200, 304)")
                .unwrap();
        assert_eq!(f.all.len(), 4);
        assert_eq!(
            f.all[0],
            Comparison {
                field: "status".into(),
                test: Test::Cmp(CmpOp::GtEq, Value::Int(400))
            }
        );
        assert_eq!(
            f.all[1].test,
            Test::Cmp(CmpOp::Eq, Value::Str("GET".into()))
        );
        assert_eq!(f.all[2].test, Test::IsNotNull);
        assert_eq!(
            f.all[3].test,
            Test::In(vec![Value::Int(200), Value::Int(304)])
        );
        assert_eq!(
            parse("x <> 'it''s'").unwrap().all[0].test,
            Test::Cmp(CmpOp::NotEq, Value::Str("it's".into()))
        );
        assert_eq!(
            parse("x not in (1.5)").unwrap().all[0].test,
            Test::NotIn(vec![Value::Float(1.5)])
        );
    }

    #[test]
    fn the_lexer_names_what_it_cannot_read() {
        assert_eq!(parse("a ! 1").unwrap_err(), "unexpected `!` at position 3");
        assert_eq!(parse("a = #").unwrap_err(), "unexpected `#` at position 5");
        assert_eq!(
            parse("a = 'x").unwrap_err(),
            "unterminated string starting at position 5"
        );
        assert_eq!(parse("a = 1.2.3").unwrap_err(), "`1.2.3` is not a number");
        let f = parse("a == \"é\"\"x\" AND b<=-2e3 and c = TRUE").unwrap();
        assert_eq!(
            f.all.iter().map(|c| c.test.clone()).collect::<Vec<_>>(),
            [
                Test::Cmp(CmpOp::Eq, Value::Str("é\"x".into())),
                Test::Cmp(CmpOp::LtEq, Value::Float(-2000.0)),
                Test::Cmp(CmpOp::Eq, Value::Bool(true)),
            ]
        );
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        assert!(parse("").is_err());
        assert!(parse("a = 1 or b = 2").unwrap_err().contains("`or`"));
        assert!(parse("a = ").is_err());
        assert!(parse("a = 'x").is_err());
        assert!(parse("a in (1,").is_err());
        assert!(parse("= 1").is_err());
    }
}
