//! Exit codes and the failures that lead to them.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | the session ran and ended (closed here or by the other side) |
//! | 1 | internal error |
//! | 2 | usage error (bad command line) |
//! | 3 | configuration error: bad `--dev` folder, unreadable CA file, invalid ticket, relay address or proxy |
//! | 4 | the relay (after the retry budget) or the broker could not be reached, or the connection was lost for good |
//! | 5 | the relay's or the broker's TLS certificate is not trusted |
//! | 6 | refused: by the relay (ticket invalid, expired or for another session; session full) or by the broker (login refused, no open session with that number, too many attempts) |
//! | 7 | the PIN was not accepted |
//! | 8 | the PIN has expired (too many wrong attempts) |
//! | 9 | the session could not be joined or was lost (join timed out, provider lost, removed) |

use std::fmt;

/// Why `lifeline` stops with a non-zero exit code. The message is for the user's terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    Internal(String),
    Config(String),
    Unreachable(String),
    Certificate(String),
    Refused(String),
    WrongPin,
    PinExpired,
    Session(String),
}

/// The table above, for `--help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  the session ran and ended (closed here or by the other side)
  1  internal error
  2  usage error
  3  configuration error (bad --dev folder, CA file, ticket, relay address or proxy)
  4  relay (after retries) or broker unreachable, or the connection was lost for good
  5  the relay's or the broker's certificate is not trusted
  6  refused by the relay (bad or expired ticket, session full) or by the broker (login
     refused, no open session with that number, too many attempts)
  7  the PIN was not accepted
  8  the PIN has expired (too many wrong attempts)
  9  the session could not be joined or was lost";

impl Failure {
    /// The process exit code.
    pub(crate) fn code(&self) -> u8 {
        match self {
            Failure::Internal(_) => 1,
            Failure::Config(_) => 3,
            Failure::Unreachable(_) => 4,
            Failure::Certificate(_) => 5,
            Failure::Refused(_) => 6,
            Failure::WrongPin => 7,
            Failure::PinExpired => 8,
            Failure::Session(_) => 9,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Internal(message) => write!(f, "internal error: {message}"),
            Failure::Config(message)
            | Failure::Unreachable(message)
            | Failure::Certificate(message)
            | Failure::Refused(message)
            | Failure::Session(message) => f.write_str(message),
            Failure::WrongPin => f.write_str("the PIN was not accepted. Check it with the provider and try again."),
            Failure::PinExpired => {
                f.write_str("the PIN has expired after too many wrong attempts. Ask the provider for a new session.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let failures = [
            Failure::Internal(String::new()),
            Failure::Config(String::new()),
            Failure::Unreachable(String::new()),
            Failure::Certificate(String::new()),
            Failure::Refused(String::new()),
            Failure::WrongPin,
            Failure::PinExpired,
            Failure::Session(String::new()),
        ];
        let mut codes: Vec<u8> = failures.iter().map(Failure::code).collect();
        for code in &codes {
            assert!(EXIT_CODES_HELP.contains(&format!("\n  {code}  ")), "code {code} is in the help");
        }
        codes.dedup();
        assert_eq!(codes.len(), failures.len());
        assert!(Failure::WrongPin.to_string().contains("the PIN was not accepted"));
    }

    #[test]
    fn the_user_guide_has_the_same_table() {
        let guide = include_str!("../../../docs/user-guide.md");
        let rows: Vec<&str> = include_str!("exit.rs").lines().filter_map(|line| line.strip_prefix("//! | ")).collect();
        assert_eq!(rows.len(), 11, "the header and ten codes");
        for row in rows {
            assert!(guide.contains(&format!("| {row}")), "docs/user-guide.md lacks the exit-code row | {row}");
        }
    }
}
