//! Exit codes, and the one place that maps an error to one of them.
//!
//! The codes are the AWS CLI's, so scripts written for `aws ec2-instance-connect` keep working.

use std::fmt;

/// Bad parameters: nothing was sent anywhere.
pub const USAGE: i32 = 252;
/// Configuration: no region, no credentials, `ssh` not found.
pub(crate) const CONFIG: i32 = 253;
/// An AWS API (or the endpoint's WebSocket service) returned an error.
pub(crate) const AWS: i32 = 254;
/// Any other failure.
pub(crate) const OTHER: i32 = 255;
/// Interrupted by Ctrl-C (SIGINT).
pub(crate) const INTERRUPTED: i32 = 130;

/// An error that knows its exit code; anything else in an `anyhow` chain is [`OTHER`].
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: i32,
    pub(crate) message: String,
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

/// An AWS service's refusal that may pass by itself: HTTP 429, the service is at a limit (an
/// endpoint allows 20 tunnels at once). Exits as [`AWS`].
#[derive(Debug)]
pub(crate) struct Busy(pub String);

impl fmt::Display for Busy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Busy {}

/// Whether `error` is (or was caused by) a [`Busy`] refusal.
pub(crate) fn is_busy(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.is::<Busy>())
}

fn exit(code: i32, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Exit { code, message: message.into() })
}

/// Bad parameters (252).
pub(crate) fn usage(message: impl Into<String>) -> anyhow::Error {
    exit(USAGE, message)
}

/// Missing or broken configuration (253).
pub(crate) fn config(message: impl Into<String>) -> anyhow::Error {
    exit(CONFIG, message)
}

/// An error answered by an AWS service (254).
pub(crate) fn aws(message: impl Into<String>) -> anyhow::Error {
    exit(AWS, message)
}

/// Interrupted by the user (130).
pub(crate) fn interrupted() -> anyhow::Error {
    exit(INTERRUPTED, "interrupted")
}

/// The exit code for an error: the outermost [`Exit`] in its chain decides, else 255.
pub fn exit_code(error: &anyhow::Error) -> i32 {
    let code = |e: &(dyn std::error::Error + 'static)| {
        e.downcast_ref::<Exit>().map(|e| e.code).or(e.is::<Busy>().then_some(AWS))
    };
    error.chain().find_map(code).unwrap_or(OTHER)
}

/// Text from the network (a close reason, an error message, a tag) made safe for a terminal:
/// control characters, and the invisible ones that reorder or hide what is shown (bidirectional
/// controls, zero-width characters: "Trojan Source"), are shown escaped (`\u{1b}`, `\u{202e}`),
/// never sent as they are.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if hidden(c) { c.escape_default().to_string() } else { c.to_string() })
        .collect()
}

/// Whether `c` would act on the terminal, or change or hide what it shows, rather than show.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Zero-width space, non-joiner, joiner; left-to-right and right-to-left marks.
            '\u{200b}'..='\u{200f}'
            // Embeddings, overrides and their pop (LRE, RLE, PDF, LRO, RLO).
            | '\u{202a}'..='\u{202e}'
            // Isolates and their pop (LRI, RLI, FSI, PDI).
            | '\u{2066}'..='\u{2069}'
            // The Arabic letter mark (the other bidirectional mark), the word joiner and the
            // zero-width no-break space: invisible too.
            | '\u{061c}' | '\u{2060}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn outermost_classified_error_decides() {
        assert_eq!(exit_code(&anyhow::anyhow!("boom")), OTHER);
        assert_eq!(exit_code(&usage("bad")), USAGE);
        let wrapped =
            Err::<(), _>(config("no region")).context("loading configuration").unwrap_err();
        assert_eq!(exit_code(&wrapped), CONFIG);
        assert_eq!(exit_code(&interrupted()), INTERRUPTED);
        assert_eq!(exit_code(&aws("denied")), AWS);
    }

    #[test]
    fn control_bidi_and_zero_width_characters_are_shown_escaped() {
        for (raw, shown) in [
            ("plain text, é ü", "plain text, é ü"),
            ("\x1b[2J\x1b]0;pwned\x07", "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"),
            ("two\r\nlines\0", "two\\r\\nlines\\u{0}"),
            ("\u{9b}31m", "\\u{9b}31m"),
            // A right-to-left override that would show `exe.txt` for `txt.exe`.
            ("\u{202e}txt.exe", "\\u{202e}txt.exe"),
            ("\u{202a}\u{202b}\u{202c}\u{202d}", "\\u{202a}\\u{202b}\\u{202c}\\u{202d}"),
            ("\u{2066}a\u{2067}b\u{2068}c\u{2069}", "\\u{2066}a\\u{2067}b\\u{2068}c\\u{2069}"),
            (
                "i-0\u{200b}1\u{200c}\u{200d}\u{200e}\u{200f}",
                "i-0\\u{200b}1\\u{200c}\\u{200d}\\u{200e}\\u{200f}",
            ),
            ("\u{61c}\u{2060}\u{feff}", "\\u{61c}\\u{2060}\\u{feff}"),
            // Their neighbours, and right-to-left text itself, are shown as they are.
            ("\u{200a}\u{2010}\u{202f}\u{2070} שלום", "\u{200a}\u{2010}\u{202f}\u{2070} שלום"),
        ] {
            assert_eq!(printable(raw), shown);
        }
    }
}
