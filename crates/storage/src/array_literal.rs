//! PostgreSQL array literals (`{"a","b"}`, `{1,2}`): a whole column bound as one text value.
//!
//! The ledger binds each column of a batch as an array and `UNNEST`s them. Bound through
//! SeaORM as `Value::Array`, every element is a `Value` of its own (a boxed copy of the
//! string), which SeaORM copies once more before sqlx encodes it: at full speed those copies
//! of the batches being committed were a fifth of the consumer's peak memory. One literal per
//! column is one string, built straight from the rows and cast by PostgreSQL itself
//! (`$1::text[]`, its I/O conversion of text to any type), so the rows are not copied per
//! element at all.
//!
//! Quoting follows PostgreSQL's `array_in`: every text element is double-quoted, with `"` and
//! `\` escaped by a backslash, so no content (spaces, braces, commas, `NULL`, control
//! characters) is reinterpreted. NUL, which PostgreSQL's text cannot hold at all, the contract
//! refuses before.

use std::fmt::{Display, Write};

/// `{"a","b"}` from text elements.
pub fn text<'a, I>(items: I) -> String
where
    I: IntoIterator<Item = &'a str>,
    I::IntoIter: Clone,
{
    let items = items.into_iter();
    // Sized up front: a column of long descriptions would otherwise be reallocated as it
    // grows, briefly twice its size (only escapes can still make it grow).
    let size: usize = items.clone().map(|item| item.len() + 3).sum();
    let mut literal = String::with_capacity(2 + size);
    literal.push('{');
    for (i, item) in items.enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if matches!(c, '"' | '\\') {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

/// `{1,-2}` from integers.
pub fn integers<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let items = items.into_iter();
    let mut literal = String::with_capacity(2 + 8 * items.size_hint().0);
    literal.push('{');
    for (i, item) in items.enumerate() {
        if i > 0 {
            literal.push(',');
        }
        // Writing to a String cannot fail.
        let _ = write!(literal, "{item}");
    }
    literal.push('}');
    literal
}

/// `{t,f}` from booleans.
pub fn flags(items: impl IntoIterator<Item = bool>) -> String {
    integers(items.into_iter().map(|flag| if flag { 't' } else { 'f' }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_elements_are_quoted_and_escaped() {
        assert_eq!(text([]), "{}");
        assert_eq!(text([""]), r#"{""}"#);
        assert_eq!(
            text(["a b", "NULL", r#"say "hi""#, r"back\slash", "{,}", "é"]),
            r#"{"a b","NULL","say \"hi\"","back\\slash","{,}","é"}"#
        );
    }

    #[test]
    fn flags_are_letters() {
        assert_eq!(flags([]), "{}");
        assert_eq!(flags([true, false, true]), "{t,f,t}");
    }

    #[test]
    fn integers_are_plain() {
        assert_eq!(integers(Vec::<i64>::new()), "{}");
        assert_eq!(
            integers([i64::MIN, 0, i64::MAX]),
            format!("{{{},0,{}}}", i64::MIN, i64::MAX)
        );
    }
}
