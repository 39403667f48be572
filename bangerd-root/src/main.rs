//! bangerd-root: see the library documentation.

use clap::Parser;

fn main() {
    let args = bangerd_root::service::Args::parse();
    match bangerd_root::service::main(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bangerd-root: {e:#}");
            std::process::exit(1);
        }
    }
}
