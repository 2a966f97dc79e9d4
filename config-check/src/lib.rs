//! `check-config` for every program of the workspace: reads a TOML config file and reports
//! **every** problem at once — syntax, unknown keys, wrong types, and whatever the program
//! itself checks afterwards (addresses, files it names, ranges) — each with the file, the
//! line and the key, without starting anything.
//!
//! ```no_run
//! # #[derive(serde::Deserialize, Default)] #[serde(deny_unknown_fields)]
//! # struct FileConfig { listen: Option<String> }
//! let mut c = config_check::Checker::<FileConfig>::read("/etc/x.toml".as_ref(), 65536, &["token"]);
//! if c.config().is_some_and(|cfg| cfg.listen.as_deref() == Some("")) {
//!     c.problem("listen", "must not be empty");
//! }
//! let report = c.finish();
//! print!("{report}");
//! std::process::exit(report.exit_code().into());
//! ```
//!
//! Values are never quoted in a problem of a key listed as secret (the file may hold a
//! token), nor in a syntax error.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// One problem of a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line of the key (or of the syntax error), when known.
    pub line: Option<usize>,
    /// The key (dotted for nested tables); empty for problems of the whole file.
    pub key: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// 0 when the file is fine, 1 when it has problems.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.is_ok())
    }
}

/// One line per problem, `FILE:LINE: key `k`: message`, then a summary line; or
/// `FILE: OK`.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        if self.problems.is_empty() {
            return writeln!(f, "{file}: OK");
        }
        for p in &self.problems {
            match p.line {
                Some(l) => write!(f, "{file}:{l}: ")?,
                None => write!(f, "{file}: ")?,
            }
            if p.key.is_empty() {
                writeln!(f, "{}", p.message)?;
            } else {
                writeln!(f, "key `{}`: {}", p.key, p.message)?;
            }
        }
        let n = self.problems.len();
        writeln!(f, "{file}: {n} problem{}", if n == 1 { "" } else { "s" })
    }
}

/// Collects the problems of one file. `T` is the program's file config: a struct with
/// `#[serde(deny_unknown_fields)]` whose fields are all optional, so that each key can be
/// checked on its own.
pub struct Checker<T> {
    file: PathBuf,
    text: String,
    config: Option<T>,
    problems: Vec<Problem>,
}

impl<T: DeserializeOwned> Checker<T> {
    /// Reads `path` (at most `max_bytes`) and checks its syntax and every key against `T`.
    /// The values of `secret_keys` are never shown.
    pub fn read(path: &Path, max_bytes: u64, secret_keys: &[&str]) -> Self {
        match read_text(path, max_bytes) {
            Ok(text) => Self::parse(path, text, secret_keys),
            Err(message) => Self {
                file: path.to_path_buf(),
                text: String::new(),
                config: None,
                problems: vec![Problem {
                    line: None,
                    key: String::new(),
                    message,
                }],
            },
        }
    }

    /// [`Checker::read`] on text already read; `path` names it in the report.
    pub fn parse(path: &Path, text: String, secret_keys: &[&str]) -> Self {
        let mut c = Self {
            file: path.to_path_buf(),
            text,
            config: None,
            problems: Vec::new(),
        };
        let table: toml::Table = match c.text.parse() {
            Ok(t) => t,
            Err(e) => {
                let e: toml::de::Error = e;
                let line = e.span().map(|s| line_of(&c.text, s.start));
                c.problems.push(Problem {
                    line,
                    key: String::new(),
                    message: format!("TOML syntax error: {}", syntax_message(e.message())),
                });
                return c;
            }
        };
        // Each key on its own, so that one bad key does not hide the next.
        for (key, value) in &table {
            let mut one = toml::Table::new();
            one.insert(key.clone(), value.clone());
            if let Err(e) = toml::Value::Table(one).try_into::<T>() {
                let message = e.message().to_string();
                let message = if message.starts_with("unknown field") {
                    "unknown key".to_string()
                } else if secret_keys.contains(&key.as_str()) {
                    "invalid value (not shown: it may be a secret)".to_string()
                } else {
                    message.trim().replace('\n', "; ")
                };
                c.problem(key, message);
            }
        }
        if c.problems.is_empty() {
            match toml::Value::Table(table).try_into::<T>() {
                Ok(cfg) => c.config = Some(cfg),
                Err(e) => {
                    let message = if secret_keys.is_empty() {
                        e.message().trim().to_string()
                    } else {
                        "the keys do not fit together".to_string()
                    };
                    c.problems.push(Problem {
                        line: None,
                        key: String::new(),
                        message,
                    });
                }
            }
        }
        c
    }
}

impl<T> Checker<T> {
    /// The parsed config when syntax, keys and types are all right; the program's own
    /// checks then add their problems with [`Checker::problem`].
    pub fn config(&self) -> Option<&T> {
        self.config.as_ref()
    }

    /// The file's directory (to resolve relative paths as the program does).
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Records a problem of `key` (its line is looked up in the file).
    pub fn problem(&mut self, key: &str, message: impl fmt::Display) {
        let line = key_line(&self.text, key);
        self.problems.push(Problem {
            line,
            key: key.to_string(),
            message: message.to_string(),
        });
    }

    /// Checks that the file named by `key` can be opened for reading.
    pub fn readable_file(&mut self, key: &str, path: &Path) {
        if let Err(e) = std::fs::File::open(path) {
            self.problem(key, format!("cannot read {}: {e}", path.display()));
        }
    }

    /// Checks the value of `key`, when given, with the program's own `check` (a parser, a
    /// name rule); its error is the problem. Gives what `check` returns when it passes.
    pub fn check<V: ?Sized, R, E: fmt::Display>(
        &mut self,
        key: &str,
        value: Option<&V>,
        check: impl FnOnce(&V) -> Result<R, E>,
    ) -> Option<R> {
        match check(value?) {
            Ok(r) => Some(r),
            Err(e) => {
                self.problem(key, e);
                None
            }
        }
    }

    /// Two keys that exclude each other (a value and the file holding it): when both are
    /// given, a problem of `b`.
    pub fn not_both(&mut self, (a, a_given): (&str, bool), (b, b_given): (&str, bool)) {
        if a_given && b_given {
            self.problem(b, format!("give {a} or {b}, not both"));
        }
    }

    /// A count that must not be 0 (an interval, a timeout); `unit` (e.g. "seconds"), when not
    /// empty, is named in the problem.
    pub fn at_least_one(&mut self, key: &str, value: Option<u64>, unit: &str) {
        if value != Some(0) {
            return;
        }
        if unit.is_empty() {
            self.problem(key, "must be at least 1");
        } else {
            self.problem(key, format!("must be at least 1 ({unit})"));
        }
    }

    /// Checks the file named by `key` that holds one value on its first line (a token, a
    /// password). `read` is the program's own reading of the file at `path` (its error is the
    /// problem); `value` takes the value out of the first line as the program does (e.g.
    /// [`str::trim`]); no value is the problem "`path` is empty".
    pub fn first_line_file<E: fmt::Display>(
        &mut self,
        key: &str,
        path: &Path,
        read: Result<String, E>,
        value: impl Fn(&str) -> &str,
    ) {
        match read {
            Ok(text) if text.lines().next().is_some_and(|l| !value(l).is_empty()) => {}
            Ok(_) => self.problem(key, format!("{} is empty", path.display())),
            Err(e) => self.problem(key, e),
        }
    }

    pub fn finish(mut self) -> Report {
        self.problems.sort_by_key(|p| p.line.unwrap_or(0));
        Report {
            file: self.file,
            problems: self.problems,
        }
    }
}

fn read_text(path: &Path, max: u64) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read the file: {e}"))?;
    let mut buf = Vec::new();
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    String::from_utf8(buf).map_err(|_| "not UTF-8 text".to_string())
}

fn line_of(text: &str, offset: usize) -> usize {
    let at = offset.min(text.len());
    text.get(..at).unwrap_or_default().matches('\n').count() + 1
}

/// The line where a top-level `key = …` is written (bare or quoted key).
fn key_line(text: &str, key: &str) -> Option<usize> {
    if key.is_empty() {
        return None;
    }
    let quoted = format!("\"{key}\"");
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            let rest = l
                .strip_prefix(key)
                .or_else(|| l.strip_prefix(quoted.as_str()));
            rest.is_some_and(|r| r.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

/// toml's syntax messages name keys (``duplicate key `x` ``) but may quote values: keep
/// the message up to its first line, drop anything between backticks after "key".
fn syntax_message(message: &str) -> String {
    let first = message.lines().next().unwrap_or_default();
    let mut out = String::new();
    let mut rest = first;
    while let Some(i) = rest.find('`') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('`') {
            Some(j) => {
                out.push('…');
                rest = &after[j + 1..];
            }
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        listen: Option<String>,
        port: Option<u16>,
        token: Option<String>,
        flag: Option<bool>,
    }

    fn check(text: &str) -> Checker<Cfg> {
        Checker::parse(Path::new("/etc/x.toml"), text.to_string(), &["token"])
    }

    #[test]
    fn every_problem_with_line_and_key() {
        let text = "listen = \"a\"\nbogus = 1\nport = 70000\ntoken = 5\n\"flag\" = \"yes\"\n";
        let r = check(text).finish();
        let got: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.line, p.key.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(2), "bogus"),
                (Some(3), "port"),
                (Some(4), "token"),
                (Some(5), "flag")
            ],
            "{r}"
        );
        assert_eq!(r.problems[0].message, "unknown key");
        assert!(r.problems[2].message.contains("not shown"), "{r}");
        let shown = r.to_string();
        assert!(shown.contains("/etc/x.toml:3: key `port`: "), "{shown}");
        assert!(shown.ends_with("/etc/x.toml: 4 problems\n"), "{shown}");
        assert_eq!(r.exit_code(), 1);
    }

    #[test]
    fn good_file_gives_the_config_and_program_checks_add_problems() {
        let mut c = check("# comment\nlisten = \"\"\nport = 80\n");
        let cfg = c.config().expect("parsed");
        assert_eq!(cfg.port, Some(80));
        assert!(cfg.token.is_none() && cfg.flag.is_none());
        if c.config().and_then(|c| c.listen.as_deref()) == Some("") {
            c.problem("listen", "must not be empty");
        }
        let r = c.finish();
        assert_eq!(
            r.to_string(),
            "/etc/x.toml:2: key `listen`: must not be empty\n/etc/x.toml: 1 problem\n"
        );
        let ok = check("port = 1\n").finish();
        assert!(ok.is_ok());
        assert_eq!(ok.to_string(), "/etc/x.toml: OK\n");
        assert_eq!(ok.exit_code(), 0);
    }

    #[test]
    fn syntax_error_has_a_line_and_no_value() {
        let r = check("port = 1\ntoken = \"sec ret\n").finish();
        assert_eq!(r.problems.len(), 1, "{r}");
        assert_eq!(r.problems[0].line, Some(2));
        assert!(r.problems[0].message.starts_with("TOML syntax error"));
        assert!(!r.to_string().contains("sec ret"), "{r}");
        let r = check("port = 1\nport = 2\n").finish();
        assert_eq!(r.problems.len(), 1, "{r}");
        assert!(!r.is_ok());
    }

    #[test]
    fn value_checks_report_the_program_error_on_the_key_line() {
        let mut c = check("port = 0\nlisten = \"x y\"\ntoken = \"t\"\n");
        let no_space = |v: &str| {
            if v.contains(' ') {
                Err(format!("`{v}` has a space"))
            } else {
                Ok(v.len())
            }
        };
        assert_eq!(c.check("listen", Some("x y"), no_space), None);
        assert_eq!(c.check("listen", Some("xy"), no_space), Some(2));
        assert_eq!(c.check("listen", None::<&str>, no_space), None);
        c.not_both(("token", true), ("listen", false));
        c.not_both(("token", false), ("listen", true));
        c.not_both(("listen", true), ("token", true));
        c.at_least_one("port", Some(0), "seconds");
        c.at_least_one("port", Some(1), "seconds");
        c.at_least_one("port", None, "seconds");
        c.at_least_one("flag", Some(0), "");
        let r = c.finish();
        let got: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.line, p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (None, "flag", "must be at least 1"),
                (Some(1), "port", "must be at least 1 (seconds)"),
                (Some(2), "listen", "`x y` has a space"),
                (Some(3), "token", "give listen or token, not both"),
            ],
            "{r}"
        );
    }

    #[test]
    fn first_line_file_needs_a_value_on_the_first_line() {
        let mut c = check("token = \"t\"\nport = 1\n");
        let p = Path::new("/etc/tok");
        let ok = |s: &str| Ok::<_, String>(s.to_string());
        c.first_line_file("token", p, ok("tok\n"), str::trim);
        c.first_line_file("token", p, ok(" tok \nmore"), |l| l);
        c.first_line_file("port", p, ok("  \ntok\n"), |l| l);
        c.first_line_file("token", p, ok("  \ntok\n"), str::trim);
        c.first_line_file("token", p, ok(""), |l| l);
        c.first_line_file("port", p, Err("cannot read /etc/tok: denied"), str::trim);
        let r = c.finish();
        let got: Vec<_> = r
            .problems
            .iter()
            .map(|p| (p.line, p.key.as_str(), p.message.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                (Some(1), "token", "/etc/tok is empty"),
                (Some(1), "token", "/etc/tok is empty"),
                (Some(2), "port", "cannot read /etc/tok: denied"),
            ],
            "{r}"
        );
    }

    #[test]
    fn unreadable_and_oversized_files() {
        let r = Checker::<Cfg>::read(Path::new("/nonexistent/x.toml"), 100, &[]).finish();
        assert_eq!(r.problems.len(), 1);
        assert!(
            r.problems[0].message.starts_with("cannot read the file"),
            "{r}"
        );
        let dir = std::env::temp_dir().join(format!("config-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let big = dir.join("big.toml");
        std::fs::write(&big, "port = 1\n".repeat(20)).expect("write");
        let r = Checker::<Cfg>::read(&big, 50, &[]).finish();
        assert_eq!(r.problems[0].message, "larger than 50 bytes");
        let r = Checker::<Cfg>::read(&big, 1000, &[]).finish();
        assert_eq!(r.problems.len(), 1, "duplicate key: {r}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
