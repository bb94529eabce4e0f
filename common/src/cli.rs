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
