//! [`normalize`]: a pattern's text as consolidation compares it.

/// Text reduced for comparison: lower case; placeholders (`[X]`, `{topic}`, `<n>`) and numbers
/// become one token each; other punctuation dropped; words separated by one space.
#[cfg(test)]
pub(crate) fn normalize(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    normalize_into(text, &mut out);
    out
}

/// [`normalize`], appended to `out` (which the caller clears).
pub(super) fn normalize_into(text: &str, out: &mut String) {
    // A separator is owed before the next word; the last thing written was a number token.
    let (mut gap, mut after_number) = (false, false);
    let mut depth = 0usize;
    let token = |out: &mut String, gap: &mut bool, word: &str| {
        if *gap && !out.is_empty() {
            out.push(' ');
        }
        *gap = false;
        out.push_str(word);
    };
    for c in text.chars() {
        match c {
            '[' | '{' | '<' => {
                if depth == 0 {
                    gap = true;
                    token(out, &mut gap, "_slot_");
                    gap = true;
                    after_number = false;
                }
                depth += 1;
            }
            ']' | '}' | '>' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_ascii_digit() => {
                if !after_number {
                    gap = true;
                    token(out, &mut gap, "_num_");
                    gap = true;
                    after_number = true;
                }
            }
            c if c.is_alphanumeric() => {
                if gap && !out.is_empty() {
                    out.push(' ');
                }
                gap = false;
                if c.is_ascii() {
                    out.push(c.to_ascii_lowercase());
                } else {
                    out.extend(c.to_lowercase());
                }
                after_number = false;
            }
            '\'' | '’' => {}
            _ => {
                gap = true;
                after_number = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::normalize;

    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/reference_normalize.rs"
    ));

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn invariant_normalize_equals_the_reference(
            text in prop_oneof![
                any::<String>(),
                "[0-9 a-zA-Zé'’\\[\\]{}<>_.!\u{a0}İ٣-]{0,24}",
            ],
        ) {
            prop_assert_eq!(normalize(&text), reference_normalize(&text));
        }
    }
}
