//! Start-up helpers shared by the two services: logging to the journal and shutdown signals.

/// Logs to stderr (the journal, under systemd) without colours or timestamps; the level comes
/// from `BANGER_LOG` (default `info`).
pub fn init_service_logging() {
    use tracing::level_filters::LevelFilter;
    let level = std::env::var("BANGER_LOG")
        .ok()
        .and_then(|l| l.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .without_time()
        .with_writer(std::io::stderr)
        .init();
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
