//! Command-line conventions shared by `p` and `c`: usage errors exit with status 64 (EX_USAGE)
//! and name the flag at fault.

use clap::Parser;

/// Exit status for a bad command line or a bad flag value (sysexits.h EX_USAGE).
pub const EX_USAGE: i32 = 64;

/// Parse the command line; `--help` and `--version` exit 0, anything wrong exits 64.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(args) => args,
        Err(err) => {
            let code = if err.use_stderr() { EX_USAGE } else { 0 };
            // Printing can only fail if stderr is gone; the exit status still says what happened.
            let _ = err.print();
            std::process::exit(code);
        }
    }
}

/// Report a flag whose value parsed but cannot be used, and exit 64.
pub fn usage_error(flag: &str, message: impl std::fmt::Display) -> ! {
    eprintln!("error: invalid value for {flag}: {message}");
    std::process::exit(EX_USAGE);
}

/// A flag whose value cannot be used, and why; `main` reports it and exits 64.
#[derive(Debug)]
pub struct UsageError {
    pub flag: &'static str,
    pub message: String,
}

pub fn usage(flag: &'static str, message: impl std::fmt::Display) -> UsageError {
    UsageError { flag, message: message.to_string() }
}

/// The token given explicitly with `--token` or `--token-file`, if either was.
pub fn explicit_token(
    token: Option<&str>,
    token_file: Option<&std::path::Path>,
) -> Result<Option<crate::Secret>, UsageError> {
    match (token, token_file) {
        (Some(t), _) if t.trim().is_empty() => Err(usage("--token", "the token is empty")),
        (Some(t), _) => Ok(Some(crate::Secret::new(t.trim()))),
        (None, Some(path)) => crate::certs::read_token_file(path).map(Some).map_err(|e| usage("--token-file", e)),
        (None, None) => Ok(None),
    }
}
