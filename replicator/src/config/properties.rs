//! Java `.properties` syntax, as `java.util.Properties.load(Reader)` reads it.
//!
//! - Natural lines end at `\n`, `\r` or `\r\n`. A line whose first non-blank character is
//!   `#` or `!` is a comment; blank lines are skipped.
//! - A line ending in an odd number of backslashes continues on the next line, whose
//!   leading blanks (space, tab, form feed) are dropped.
//! - The key runs to the first unescaped `=`, `:` or blank; then blanks, at most one `=`
//!   or `:`, and blanks are skipped; the rest is the value (trailing blanks kept).
//! - Escapes: `\t`, `\n`, `\r`, `\f`, `\uXXXX` (malformed ones are errors, as in Java);
//!   a backslash before any other character yields that character.

/// One `key = value` pair with the 1-based line where its logical line starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyLine {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// A syntax error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\u{c}')
}

/// Splits text into natural lines, keeping 1-based line numbers.
fn natural_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i, mut line) = (0usize, 0usize, 1usize);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push((line, &text[start..i]));
                i += 1;
                start = i;
                line += 1;
            }
            b'\r' => {
                out.push((line, &text[start..i]));
                i += 1;
                if i < bytes.len() && bytes[i] == b'\n' {
                    i += 1;
                }
                start = i;
                line += 1;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        out.push((line, &text[start..]));
    }
    out
}

fn ends_with_odd_backslashes(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Parses properties text; duplicate keys are all returned, in order.
pub fn parse(text: &str) -> Result<Vec<PropertyLine>, SyntaxError> {
    let lines = natural_lines(text);
    let mut out = Vec::new();
    let mut idx = 0;
    while idx < lines.len() {
        let (line_no, raw) = lines[idx];
        idx += 1;
        let trimmed = raw.trim_start_matches(is_blank);
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with('!') {
            continue;
        }
        // Join continuation lines.
        let mut logical = String::from(trimmed);
        while ends_with_odd_backslashes(&logical) {
            logical.pop();
            match lines.get(idx) {
                Some((_, next)) => {
                    logical.push_str(next.trim_start_matches(is_blank));
                    idx += 1;
                }
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        out.push(PropertyLine {
            key: unescape(key).map_err(|message| SyntaxError {
                line: line_no,
                message,
            })?,
            value: unescape(value).map_err(|message| SyntaxError {
                line: line_no,
                message,
            })?,
            line: line_no,
        });
    }
    Ok(out)
}

/// Splits a logical line (leading blanks removed) into raw key and raw value.
fn split_key_value(line: &str) -> (&str, &str) {
    let mut key_end = line.len();
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '=' | ':' => {
                key_end = i;
                let value = line[i + 1..].trim_start_matches(is_blank);
                return (&line[..key_end], value);
            }
            c if is_blank(c) => {
                key_end = i;
                break;
            }
            _ => {}
        }
    }
    let rest = line[key_end..].trim_start_matches(is_blank);
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(':'))
        .map(|r| r.trim_start_matches(is_blank))
        .unwrap_or(rest);
    (&line[..key_end], rest)
}

fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .ok_or_else(|| format!("malformed \\uxxxx encoding `\\u{hex}`"))?;
                // Surrogate halves cannot be represented; Java would keep them as UTF-16.
                out.push(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
            }
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(text: &str) -> Vec<(String, String)> {
        parse(text)
            .unwrap()
            .into_iter()
            .map(|p| (p.key, p.value))
            .collect()
    }

    #[test]
    fn separators_and_comments() {
        let text = "# comment\n! also\n  a=1\nb : 2\nc 3\nd\ne=\n  \nf = x = y\ng\\ h=4\n";
        assert_eq!(
            kv(text),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("c".into(), "3".into()),
                ("d".into(), "".into()),
                ("e".into(), "".into()),
                ("f".into(), "x = y".into()),
                ("g h".into(), "4".into()),
            ]
        );
    }

    #[test]
    fn continuations_escapes_and_line_numbers() {
        let text = "k = a,\\\n     b,\\\r\n  c\r\nx=\\u0041\\tz\\\\\ny=ends\\\\\nz=1";
        let parsed = parse(text).unwrap();
        assert_eq!(parsed[0].value, "a,b,c");
        assert_eq!(parsed[0].line, 1);
        assert_eq!(parsed[1].value, "A\tz\\");
        assert_eq!(parsed[1].line, 4);
        assert_eq!(parsed[2].value, "ends\\");
        assert_eq!(parsed[3].line, 6);
        assert!(parse("a=\\u12").is_err());
        assert_eq!(parse("a=\\u12zz").unwrap_err().line, 1);
        // A comment line ending in a backslash does not continue.
        assert_eq!(kv("# c \\\nk=v"), vec![("k".into(), "v".into())]);
        // Trailing continuation at end of input.
        assert_eq!(kv("k=v\\"), vec![("k".into(), "v".into())]);
        // Key with escaped separators.
        assert_eq!(kv("a\\=b\\:c=d"), vec![("a=b:c".into(), "d".into())]);
    }
}
