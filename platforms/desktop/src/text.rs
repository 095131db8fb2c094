//! Words on the terminal: capabilities as users type them, numbers grouped for reading aloud,
//! and peer-supplied text made safe to print.

use lifeline_core::consent::{Capability, CapabilitySet};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;

/// The word typed after `/request`, `/allow`, `/deny`, `/revoke`.
pub(crate) fn capability_word(capability: Capability) -> &'static str {
    match capability {
        Capability::ViewScreen => "view",
        Capability::RemoteControl => "control",
        Capability::FileTransfer => "files",
        Capability::Diagnostics => "diagnostics",
        Capability::Unattended => "unattended",
        Capability::RemoteConsole => "console",
        _ => "other",
    }
}

/// The capability a typed word names.
pub(crate) fn parse_capability(word: &str) -> Option<Capability> {
    Capability::ALL.into_iter().find(|capability| capability_word(*capability).eq_ignore_ascii_case(word.trim()))
}

/// The words users can type, for help texts.
pub(crate) fn capability_words() -> String {
    Capability::ALL.map(capability_word).join("|")
}

/// What a provider asks to do, completing "Ada asks to …".
pub(crate) fn capability_request(capability: Capability) -> &'static str {
    match capability {
        Capability::ViewScreen => "view your screen",
        Capability::RemoteControl => "control your mouse and keyboard",
        Capability::FileTransfer => "transfer files to and from your computer",
        Capability::Diagnostics => "collect diagnostic information",
        Capability::Unattended => "keep access for unattended support after this session",
        Capability::RemoteConsole => "use the remote console",
        _ => "do something new",
    }
}

/// A set as a readable list ("view screen, remote control"), or "nothing".
pub(crate) fn capability_list(set: CapabilitySet) -> String {
    let names: Vec<&str> = set.iter().map(Capability::name).collect();
    if names.is_empty() { "nothing".to_owned() } else { names.join(", ") }
}

/// "Provider" / "Customer".
pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::Provider => "Provider",
        Role::Customer => "Customer",
        _ => "Member",
    }
}

/// A content type for messages about data that is not chat.
pub(crate) fn content_name(content: ContentType) -> &'static str {
    match content {
        ContentType::Chat => "chat",
        ContentType::Screen => "screen data",
        ContentType::Input => "remote input",
        ContentType::File => "file data",
        ContentType::Diagnostics => "diagnostics",
        ContentType::Console => "console data",
        _ => "data",
    }
}

/// Digits in groups of `size` from the left ("123 456 789", "1234 5678"), easier to read aloud.
pub(crate) fn group_digits(digits: &str, size: usize) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / size.max(1));
    for (index, ch) in digits.chars().enumerate() {
        if index > 0 && index.is_multiple_of(size.max(1)) {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

/// What is wrong with a server's certificate, in words, from the TLS library's name for it
/// (`UnknownIssuer`, `NotValidForNameContext { .. }`, `invalid peer certificate: Expired`).
pub(crate) fn certificate_problem(detail: &str) -> &'static str {
    if detail.contains("UnknownIssuer") {
        "it was not issued by a certificate authority this computer was told to trust"
    } else if detail.contains("NotValidForName") {
        "it was issued for another server name"
    } else if detail.contains("NotValidYet") {
        "it is not valid yet (or this computer's clock is wrong)"
    } else if detail.contains("Expired") {
        "it has expired (or this computer's clock is wrong)"
    } else if detail.contains("Revoked") {
        "it has been revoked"
    } else if detail.contains("BadSignature") {
        "it is not signed by a certificate authority this computer was told to trust (another CA of \
         the same name, or a forgery)"
    } else if detail.contains("BadEncoding") {
        "it is damaged"
    } else {
        "it could not be verified"
    }
}

/// A count and its noun, singular for one: "1 record", "146 records".
pub(crate) fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// Text from another endpoint (chat, names) made safe for the terminal: control characters
/// (escape sequences could rewrite the screen or forge a prompt) become `�`, line breaks
/// become spaces.
pub(crate) fn sanitize(text: &str) -> String {
    text.chars()
        .map(|ch| match ch {
            '\n' | '\r' | '\t' => ' ',
            ch if ch.is_control() => '\u{FFFD}',
            // Bidirectional overrides can make a line read differently from its bytes.
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => '\u{FFFD}',
            ch => ch,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_words_round_trip() {
        for capability in Capability::ALL {
            assert_eq!(parse_capability(capability_word(capability)), Some(capability));
        }
        assert_eq!(parse_capability(" View "), Some(Capability::ViewScreen));
        assert_eq!(parse_capability("everything"), None);
        assert_eq!(capability_list(CapabilitySet::EMPTY), "nothing");
    }

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits("123456789", 3), "123 456 789");
        assert_eq!(group_digits("12345678", 4), "1234 5678");
        assert_eq!(group_digits("", 3), "");
    }

    #[test]
    fn certificate_problems_in_words() {
        assert!(certificate_problem("invalid peer certificate: UnknownIssuer").contains("not issued by"));
        assert!(certificate_problem("NotValidForNameContext { expected: x }").contains("another server name"));
        assert!(certificate_problem("ExpiredContext { time: 1 }").contains("expired"));
        assert!(certificate_problem("NotValidYetContext { time: 1 }").contains("not valid yet"));
        assert!(certificate_problem("invalid peer certificate: BadSignature").contains("not signed by"));
        assert_eq!(certificate_problem("Other(..)"), "it could not be verified");
    }

    #[test]
    fn counts_agree_with_their_noun() {
        assert_eq!(count(0, "record"), "0 records");
        assert_eq!(count(1, "record"), "1 record");
        assert_eq!(count(146, "record"), "146 records");
        assert_eq!(count(1, "section"), "1 section");
    }

    #[test]
    fn escape_sequences_are_neutralised() {
        assert_eq!(sanitize("hi\x1b[2Jthere\nnext"), "hi\u{FFFD}[2Jthere next");
        assert_eq!(sanitize("a\u{202E}b"), "a\u{FFFD}b");
        assert_eq!(sanitize("Ada (Helpdesk) ü"), "Ada (Helpdesk) ü");
    }
}
