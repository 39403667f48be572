//! bangerd: see the library documentation.

use clap::Parser;

fn main() {
    let args = bangerd::service::Args::parse();
    match bangerd::service::main(args) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bangerd: {e:#}");
            std::process::exit(1);
        }
    }
}
