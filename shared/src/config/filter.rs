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
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            b'(' => {
                out.push(Token::LParen);
                i += 1
            }
            b')' => {
                out.push(Token::RParen);
                i += 1
            }
            b',' => {
                out.push(Token::Comma);
                i += 1
            }
            b'=' | b'!' | b'<' | b'>' => {
                let two = b.get(i + 1).copied();
                let (op, len) = match (c, two) {
                    (b'=', Some(b'=')) => (CmpOp::Eq, 2),
                    (b'=', _) => (CmpOp::Eq, 1),
                    (b'!', Some(b'=')) => (CmpOp::NotEq, 2),
                    (b'<', Some(b'>')) => (CmpOp::NotEq, 2),
                    (b'<', Some(b'=')) => (CmpOp::LtEq, 2),
                    (b'<', _) => (CmpOp::Lt, 1),
                    (b'>', Some(b'=')) => (CmpOp::GtEq, 2),
                    (b'>', _) => (CmpOp::Gt, 1),
                    _ => return Err(format!("unexpected `{}` at position {}", c as char, i + 1)),
                };
                out.push(Token::Op(op));
                i += len;
            }
            b'\'' | b'"' => {
                let quote = c;
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
                out.push(Token::Lit(Value::Str(text)));
                i = j;
            }
            b'0'..=b'9' | b'-' | b'.' => {
                let start = i;
                i += 1;
                while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E')) {
                    i += 1;
                }
                let text = &s[start..i];
                let v = if let Ok(v) = text.parse::<i64>() {
                    Value::Int(v)
                } else if let Ok(v) = text.parse::<f64>() {
                    Value::Float(v)
                } else {
                    return Err(format!("`{text}` is not a number"));
                };
                out.push(Token::Lit(v));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = &s[start..i];
                match word.to_ascii_lowercase().as_str() {
                    "true" => out.push(Token::Lit(Value::Bool(true))),
                    "false" => out.push(Token::Lit(Value::Bool(false))),
                    _ => out.push(Token::Ident(word.to_string())),
                }
            }
            _ => {
                let ch = s[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected `{ch}` at position {}", i + 1));
            }
        }
    }
    Ok(out)
}

fn is_kw(t: Option<&Token>, kw: &str) -> bool {
    matches!(t, Some(Token::Ident(w)) if w.eq_ignore_ascii_case(kw))
}

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
        let test = match it.next() {
            Some(Token::Op(op)) => match it.next() {
                Some(Token::Lit(v)) => Test::Cmp(op, v),
                _ => {
                    return Err(format!(
                        "expected a literal after the comparison on `{field}`"
                    ));
                }
            },
            Some(Token::Ident(w)) if w.eq_ignore_ascii_case("is") => {
                let not = is_kw(it.peek(), "not");
                if not {
                    it.next();
                }
                if !is_kw(it.next().as_ref(), "null") {
                    return Err(format!("expected `null` after `{field} is`"));
                }
                if not { Test::IsNotNull } else { Test::IsNull }
            }
            Some(Token::Ident(w))
                if w.eq_ignore_ascii_case("in") || w.eq_ignore_ascii_case("not") =>
            {
                let not = w.eq_ignore_ascii_case("not");
                if not && !is_kw(it.next().as_ref(), "in") {
                    return Err(format!("expected `in` after `{field} not`"));
                }
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
                if not {
                    Test::NotIn(values)
                } else {
                    Test::In(values)
                }
            }
            _ => {
                return Err(format!(
                    "expected a comparison after `{field}` (=, !=, <, <=, >, >=, is null, in (...))"
                ));
            }
        };
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
    fn refuses_what_it_cannot_do() {
        assert!(parse("").is_err());
        assert!(parse("a = 1 or b = 2").unwrap_err().contains("`or`"));
        assert!(parse("a = ").is_err());
        assert!(parse("a = 'x").is_err());
        assert!(parse("a in (1,").is_err());
        assert!(parse("= 1").is_err());
    }
}
