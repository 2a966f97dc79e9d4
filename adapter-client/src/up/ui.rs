//! What `up` shows: on a terminal a spinner per step and a live status line (indicatif, on
//! stderr); otherwise plain lines on stderr; with `--json` one JSON event per line on
//! stdout and nothing else. Also the log writer that keeps log lines from tearing the
//! spinner, and the prompts.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

/// How `up` talks to the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `--json`: events on stdout, no prompts.
    Json,
    /// stderr is a terminal: spinners, a live line, prompts when stdin is a terminal too.
    Terminal,
    /// Plain lines on stderr.
    Plain,
}

impl Mode {
    pub fn detect(json: bool) -> Mode {
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        }
    }

    /// Whether the user can be asked (a terminal on stdin and stderr).
    pub fn can_ask(self) -> bool {
        self == Mode::Terminal && std::io::stdin().is_terminal()
    }
}

/// The spinner on screen, if any: log lines are printed above it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn set_active(bar: Option<ProgressBar>) {
    if let Ok(mut a) = ACTIVE.lock() {
        *a = bar;
    }
}

/// The writer of the log (`tracing`): stderr, above the spinner when one is on screen.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogWriter;

/// One log line being written (emitted when dropped).
pub struct LogLine(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let emit = |b: &[u8]| {
            let _ = std::io::stderr().write_all(b);
        };
        let bar = ACTIVE.lock().ok().and_then(|a| a.clone());
        match bar {
            Some(bar) => bar.suspend(|| emit(&self.0)),
            None => emit(&self.0),
        }
    }
}

/// While the live line is on a terminal, the terminal does not echo `^C`: the echo would
/// land after the line (indicatif keeps the cursor at the right edge) and the line could
/// no longer be cleared. Restored when dropped.
struct NoEchoCtl(Option<nix::sys::termios::Termios>);

impl NoEchoCtl {
    fn new() -> NoEchoCtl {
        use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return NoEchoCtl(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else {
            return NoEchoCtl(None);
        };
        let mut t = saved.clone();
        t.local_flags.remove(LocalFlags::ECHOCTL);
        match tcsetattr(&stdin, SetArg::TCSANOW, &t) {
            Ok(()) => NoEchoCtl(Some(saved)),
            Err(_) => NoEchoCtl(None),
        }
    }
}

impl Drop for NoEchoCtl {
    fn drop(&mut self) {
        if let Some(saved) = self.0.take() {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                &saved,
            );
        }
    }
}

/// The user's view of a command's progress.
pub struct Ui {
    mode: Mode,
    bar: Option<ProgressBar>,
    echo: Option<NoEchoCtl>,
}

const TICK: Duration = Duration::from_millis(120);

impl Ui {
    pub fn new(mode: Mode) -> Ui {
        Ui {
            mode,
            bar: None,
            echo: None,
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    fn spinner(&mut self, text: &str) -> &ProgressBar {
        let bar = self.bar.get_or_insert_with(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner:.cyan} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(TICK);
            set_active(Some(b.clone()));
            b
        });
        bar.set_message(text.to_string());
        bar
    }

    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
            set_active(None);
        }
    }

    /// A step begins (a spinner on a terminal; nothing elsewhere).
    pub fn begin(&mut self, text: &str) {
        if self.mode == Mode::Terminal {
            self.spinner(&format!("{text}…"));
        }
    }

    /// A step is done.
    pub fn done(&mut self, text: &str) {
        match self.mode {
            Mode::Terminal => {
                self.clear();
                eprintln!("\u{2714} {text}");
            }
            Mode::Plain => eprintln!("[ok] {text}"),
            Mode::Json => {}
        }
    }

    /// A step failed (the error itself is reported by the caller).
    pub fn fail(&mut self, text: &str) {
        match self.mode {
            Mode::Terminal => {
                self.clear();
                eprintln!("\u{2718} {text}");
            }
            Mode::Plain => eprintln!("[failed] {text}"),
            Mode::Json => {}
        }
    }

    /// Lines for the user (a table, a notice): above the spinner; not in JSON mode.
    pub fn note(&self, text: &str) {
        if self.mode == Mode::Json {
            return;
        }
        let print = || {
            for l in text.lines() {
                eprintln!("  {l}");
            }
        };
        match &self.bar {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }

    /// A JSON event (JSON mode only), one line on stdout.
    pub fn event(&self, v: Value) {
        if self.mode == Mode::Json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{v}");
            let _ = out.flush();
        }
    }

    /// The live status line: redrawn in place on a terminal, a plain line elsewhere (the
    /// caller decides how often).
    pub fn live(&mut self, line: &str) {
        match self.mode {
            Mode::Terminal => {
                self.echo.get_or_insert_with(NoEchoCtl::new);
                self.spinner(line);
            }
            Mode::Plain => eprintln!("  {line}"),
            Mode::Json => {}
        }
    }

    /// Removes the spinner or live line.
    pub fn end_live(&mut self) {
        self.clear();
        self.echo = None;
    }

    /// Asks a question on the terminal; `None` when stdin ends (or cannot be read).
    pub async fn ask(&mut self, question: &str) -> Option<String> {
        self.clear();
        eprint!("{question}");
        let _ = std::io::stderr().flush();
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            match std::io::stdin().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line.trim().to_string()),
            }
        })
        .await
        .ok()
        .flatten()
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        self.clear();
    }
}
