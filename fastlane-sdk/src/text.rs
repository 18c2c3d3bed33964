//! Text helpers plugins share.

/// `text` cut to at most `max` bytes on a character boundary, with a line
/// saying how much was cut; and whether it was cut.
pub fn truncate(text: &str, max: usize) -> (String, bool) {
    if text.len() <= max {
        return (text.to_owned(), false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (
        format!(
            "{}\n[truncated: {} more bytes]",
            &text[..end],
            text.len() - end
        ),
        true,
    )
}

/// `err` and its causes, `: `-separated, each cause once (skipped when the
/// text already says it): the cause of a connection failure (refused, a
/// certificate not trusted) is usually a few levels down.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        assert_eq!(
            truncate("héllo", 2),
            ("h\n[truncated: 5 more bytes]".to_owned(), true)
        );
        assert_eq!(truncate("short", 10), ("short".to_owned(), false));
    }
}
