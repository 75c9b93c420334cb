//! Tokens of the EQL-style query language, each with its byte offset so that
//! errors can point at the exact column.

use super::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A field name, keyword or function name (`process.name`, `and`, `like~`).
    Ident(String),
    Str(String),
    Int(i64),
    /// A number with a unit, as in `maxspan=15s`.
    Duration(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Colon,
    Question,
    Assign,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub tok: Tok,
    pub offset: usize,
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, QueryError> {
    let bytes = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let simple = |tok| Token { tok, offset: start };
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = src[i + 2..]
                    .find("*/")
                    .ok_or_else(|| QueryError::new(start, "unterminated comment"))?;
                i += end + 4;
                continue;
            }
            b'(' => out.push(simple(Tok::LParen)),
            b')' => out.push(simple(Tok::RParen)),
            b'[' => out.push(simple(Tok::LBracket)),
            b']' => out.push(simple(Tok::RBracket)),
            b',' => out.push(simple(Tok::Comma)),
            b':' => out.push(simple(Tok::Colon)),
            b'?' => out.push(simple(Tok::Question)),
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                out.push(simple(Tok::Eq));
                i += 1;
            }
            b'=' => out.push(simple(Tok::Assign)),
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                out.push(simple(Tok::Ne));
                i += 1;
            }
            b'<' if bytes.get(i + 1) == Some(&b'=') => {
                out.push(simple(Tok::Le));
                i += 1;
            }
            b'<' => out.push(simple(Tok::Lt)),
            b'>' if bytes.get(i + 1) == Some(&b'=') => {
                out.push(simple(Tok::Ge));
                i += 1;
            }
            b'>' => out.push(simple(Tok::Gt)),
            b'"' | b'\'' => {
                let (text, next) = lex_string(src, i)?;
                out.push(Token {
                    tok: Tok::Str(text),
                    offset: start,
                });
                i = next;
                continue;
            }
            b'0'..=b'9' | b'-' if c != b'-' || bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let num_end = i;
                while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                    i += 1;
                }
                let tok = if i > num_end {
                    Tok::Duration(src[start..i].to_string())
                } else {
                    Tok::Int(
                        src[start..i]
                            .parse()
                            .map_err(|_| QueryError::new(start, "number out of range"))?,
                    )
                };
                out.push(Token { tok, offset: start });
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b'@' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'@'))
                {
                    i += 1;
                }
                // `like~`, `in~`, `startswith~`: the tilde belongs to the word.
                if bytes.get(i) == Some(&b'~') {
                    i += 1;
                }
                out.push(Token {
                    tok: Tok::Ident(src[start..i].to_string()),
                    offset: start,
                });
                continue;
            }
            _ => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(QueryError::new(
                    start,
                    format!("unexpected character {ch:?}"),
                ));
            }
        }
        i += 1;
    }
    out.push(Token {
        tok: Tok::Eof,
        offset: src.len(),
    });
    Ok(out)
}

/// Lexes `"..."`, `'...'` or the raw `"""..."""`, returning the text and the
/// offset after the closing quote.
fn lex_string(src: &str, start: usize) -> Result<(String, usize), QueryError> {
    let rest = &src[start..];
    if let Some(raw) = rest.strip_prefix("\"\"\"") {
        let end = raw
            .find("\"\"\"")
            .ok_or_else(|| QueryError::new(start, "unterminated raw string"))?;
        return Ok((raw[..end].to_string(), start + 6 + end));
    }
    let quote = rest.as_bytes()[0] as char;
    let mut out = String::new();
    let mut chars = rest.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + i + 1)),
            '\\' => {
                let (j, esc) = chars
                    .next()
                    .ok_or_else(|| QueryError::new(start + i, "unterminated escape"))?;
                match esc {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    // The rest of JSON's escapes: `eql_list` quotes with JSON.
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    '"' | '\'' | '\\' | '/' => out.push(esc),
                    'u' => {
                        let hex = rest.get(j + 1..j + 5).ok_or_else(|| {
                            QueryError::new(start + i, "\\u needs four hex digits")
                        })?;
                        // `from_str_radix` alone would accept a sign (`\u+041`).
                        let code = (hex.bytes().all(|b| b.is_ascii_hexdigit()))
                            .then(|| u32::from_str_radix(hex, 16).ok())
                            .flatten()
                            .and_then(char::from_u32)
                            .ok_or_else(|| QueryError::new(start + i, "invalid \\u escape"))?;
                        out.push(code);
                        for _ in 0..4 {
                            chars.next();
                        }
                    }
                    other => {
                        return Err(QueryError::new(
                            start + i,
                            format!("unknown escape \\{other}"),
                        ))
                    }
                }
            }
            c => out.push(c),
        }
    }
    Err(QueryError::new(start, "unterminated string"))
}
