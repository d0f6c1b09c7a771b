//! Writing to stdout. Client commands stop quietly when the reader goes
//! away (`eddy topic list | head -1`) instead of panicking on a broken pipe.

use std::io::Write;

/// Writes one line to stdout; exits with success if stdout is closed.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{args}")
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` for client commands; see [`line`].
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
