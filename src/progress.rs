//! A progress bar on stderr for sweeps and long verifications. It stays
//! hidden for the first second, so quick runs print nothing, and it is never
//! drawn when the caller disables it (quiet, or output that is not a
//! terminal).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// How long work runs before the bar appears.
const DELAY: Duration = Duration::from_secs(1);

pub struct Bar {
    bar: ProgressBar,
    /// What is counted ("points", "prefixes").
    unit: &'static str,
    /// Dropping it tells the waiting thread the work is over.
    finished: Option<mpsc::Sender<()>>,
    waiter: Option<JoinHandle<()>>,
}

impl Bar {
    /// A bar over `len` points, labelled `label`; `enabled = false` gives a
    /// bar that never draws.
    pub fn new(len: usize, label: &str, enabled: bool) -> Bar {
        Bar::counting(len, "points", label, enabled)
    }

    /// A bar over `len` things called `unit`.
    pub fn counting(len: usize, unit: &'static str, label: &str, enabled: bool) -> Bar {
        let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::hidden());
        if let Ok(style) =
            ProgressStyle::with_template("{prefix} [{bar:24}] {pos}/{len} {msg} ({elapsed})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(label.to_string());
        bar.set_message(unit);
        if !enabled {
            return Bar {
                bar,
                unit,
                finished: None,
                waiter: None,
            };
        }
        let (finished, wait) = mpsc::channel::<()>();
        let shown = bar.clone();
        let waiter = thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(DELAY) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                shown.enable_steady_tick(Duration::from_millis(250));
            }
        });
        Bar {
            bar,
            unit,
            finished: Some(finished),
            waiter: Some(waiter),
        }
    }

    /// A line with no known length, for work such as building a model: after
    /// a second it shows `label`, the time so far and `status()`, refreshed
    /// four times a second (the LP log, for the build).
    pub fn spinner(
        label: &str,
        enabled: bool,
        status: impl Fn() -> String + Send + 'static,
    ) -> Bar {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        if let Ok(style) = ProgressStyle::with_template("{prefix} {spinner} {msg} ({elapsed})") {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_string());
        if !enabled {
            return Bar {
                bar,
                unit: "",
                finished: None,
                waiter: None,
            };
        }
        let (finished, wait) = mpsc::channel::<()>();
        let shown = bar.clone();
        let waiter = thread::spawn(move || {
            if let Err(RecvTimeoutError::Timeout) = wait.recv_timeout(DELAY) {
                shown.set_draw_target(ProgressDrawTarget::stderr());
                while let Err(RecvTimeoutError::Timeout) =
                    wait.recv_timeout(Duration::from_millis(250))
                {
                    shown.set_message(status());
                    shown.tick();
                }
            }
        });
        Bar {
            bar,
            unit: "",
            finished: Some(finished),
            waiter: Some(waiter),
        }
    }

    /// The point now running.
    pub fn start(&self, what: String) {
        self.bar.set_message(format!("{}, at {what}", self.unit));
    }

    pub fn done(&self) {
        self.bar.inc(1);
    }

    /// `done` of the `len` things are finished.
    pub fn set(&self, done: usize) {
        self.bar.set_position(done as u64);
    }

    /// Remove the bar (if it was ever drawn).
    pub fn finish(mut self) {
        drop(self.finished.take());
        if let Some(w) = self.waiter.take() {
            let _ = w.join();
        }
        self.bar.finish_and_clear();
    }
}
