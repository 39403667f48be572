//! The live byte count of long commands (`banger update`, `banger image pull`): an indicatif bar
//! on stderr, drawn only when stderr is a terminal that can redraw a line (not `TERM=dumb`),
//! never with `--json` or `--quiet`. It is the only thing banger colours, and not when
//! `NO_COLOR` is set. The commands' lines for people are printed through it, so that a line
//! never lands in the middle of the bar.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Whether `banger --quiet` asked for results and errors only.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Prints no progress and no stage lines from now on (`banger --quiet`).
pub fn set_quiet(on: bool) {
    QUIET.store(on, Ordering::Relaxed);
}

/// Whether `--quiet` was given.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Where a command's lines for people go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// Standard output (`banger update`: its stages are its output).
    Stdout,
    /// Standard error (`banger image pull`: stdout carries only the result).
    Stderr,
}

/// Whether a bar may be drawn: not quiet, and `is_terminal` for stderr, with a `term` that
/// can redraw a line.
fn may_draw(quiet: bool, is_terminal: bool, term: Option<&str>) -> bool {
    !quiet && is_terminal && term != Some("dumb")
}

/// Whether colour is allowed: `NO_COLOR` unset or empty (as no-color.org says).
fn colour_allowed(no_color: Option<&str>) -> bool {
    no_color.is_none_or(str::is_empty)
}

/// The bar's template: `what`, the bar, bytes, rate and time left; a spinner when the total is
/// not known.
fn template(known_total: bool, colour: bool) -> &'static str {
    match (known_total, colour) {
        (true, true) => {
            "{msg} [{bar:30.cyan/blue}] {bytes}/{total_bytes} ({percent}%) {binary_bytes_per_sec}, {eta} left"
        }
        (true, false) => {
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({percent}%) {binary_bytes_per_sec}, {eta} left"
        }
        (false, _) => "{msg} {spinner} {bytes} {binary_bytes_per_sec}",
    }
}

fn style(known_total: bool, colour: bool) -> ProgressStyle {
    ProgressStyle::with_template(template(known_total, colour))
        .expect("the progress templates are valid")
        .progress_chars("=> ")
}

/// A command's progress: lines for people, and a byte bar while bytes move.
pub struct Progress {
    lines: Lines,
    draw: bool,
    colour: bool,
    bar: Option<(ProgressBar, bool)>,
}

impl Progress {
    /// Progress for a command whose lines go to `lines`; `json` commands draw nothing.
    pub fn new(lines: Lines, json: bool) -> Self {
        let term = std::env::var("TERM").ok();
        let no_color = std::env::var("NO_COLOR").ok();
        Progress {
            lines,
            draw: !json && may_draw(quiet(), std::io::stderr().is_terminal(), term.as_deref()),
            colour: colour_allowed(no_color.as_deref()),
            bar: None,
        }
    }

    /// Shows `done` of `total` bytes (`total` 0: not known) after `what`.
    pub fn bytes(&mut self, what: &str, done: u64, total: u64) {
        if !self.draw {
            return;
        }
        let known = total > 0;
        let (bar, styled_known) = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(style(known, self.colour));
            (bar, known)
        });
        if *styled_known != known {
            bar.set_style(style(known, self.colour));
            *styled_known = known;
        }
        if known {
            bar.set_length(total);
        }
        bar.set_message(what.to_string());
        bar.set_position(done);
    }

    /// Takes the bar off the screen (the next bytes draw a new one).
    pub fn clear(&mut self) {
        if let Some((bar, _)) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints `line` for people, above the bar while one is drawn.
    pub fn line(&self, line: &str) {
        let print = || match self.lines {
            Lines::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Lines::Stderr => eprintln!("{line}"),
        };
        match &self.bar {
            Some((bar, _)) => bar.suspend(print),
            None => print(),
        }
    }
}

impl Drop for Progress {
    /// A bar left drawn is cleared, so that an error printed next starts on its own line.
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_needs_a_terminal_that_redraws_and_no_quiet() {
        assert!(may_draw(false, true, Some("xterm-256color")));
        assert!(may_draw(false, true, None));
        assert!(!may_draw(false, false, Some("xterm")), "not a terminal");
        assert!(!may_draw(false, true, Some("dumb")), "TERM=dumb");
        assert!(!may_draw(true, true, Some("xterm")), "--quiet");
    }

    #[test]
    fn no_color_set_and_not_empty_means_no_colour() {
        assert!(colour_allowed(None));
        assert!(colour_allowed(Some("")));
        assert!(!colour_allowed(Some("1")));
    }

    #[test]
    fn only_the_coloured_template_names_colours() {
        for known in [true, false] {
            for colour in [true, false] {
                let t = template(known, colour);
                // Every template is valid for indicatif.
                let _ = style(known, colour);
                assert!(t.starts_with("{msg} "), "{t}");
                assert!(t.contains("{bytes}"), "{t}");
                assert_eq!(t.contains(".cyan"), known && colour, "{t}");
                assert_eq!(t.contains("{total_bytes}"), known, "{t}");
            }
        }
    }
}
