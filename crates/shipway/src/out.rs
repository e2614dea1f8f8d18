//! Standard output that a closed pipe does not crash: `shipway run ... | head` and
//! `shipway get pods | head -1` stop printing when the reader goes, instead of panicking as
//! `println!` does, and the command finishes normally (a running workflow still ends its steps).

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write failed: nothing more is printed.
static CLOSED: AtomicBool = AtomicBool::new(false);

pub(crate) fn write(args: fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    if io::stdout().lock().write_fmt(args).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!`, through [`write`] (in scope crate-wide through `#[macro_use]`).
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!`, through [`write`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}
