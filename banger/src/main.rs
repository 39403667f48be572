//! banger, the command-line client. All logic lives in `cli/`; this only sets the exit code.

mod cli;

fn main() {
    default_sigpipe();
    std::process::exit(cli::main());
}

/// A reader that stops early (`banger vm list | head -n 1`) ends banger quietly, as it ends
/// other command-line tools, instead of a panic about a broken pipe. The bus connection is
/// unaffected: it writes with `MSG_NOSIGNAL`.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: runs first, before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
