//! The bounded line reader of the management socket (also used for OpenVPN's output).
//!
//! Rules (issue 11, item 12):
//! - a line is the bytes before `\n`, with one trailing `\r` removed; invalid UTF-8 is
//!   replaced (U+FFFD);
//! - a line longer than [`MAX_LINE`] is dropped **whole**: it is read to its `\n` without
//!   being kept and reported as [`ReadItem::TooLong`];
//! - bytes after the last `\n` at end of stream are never a line: they are reported as
//!   [`ReadItem::Unterminated`] (a half-written `>BYTECOUNT:` must not be billed);
//! - memory stays bounded by [`MAX_LINE`] whatever the peer sends.
//!
//! Neither report carries the dropped bytes, so a caller that logs them cannot leak what
//! the line held.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::MAX_LINE;

/// One item read from the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadItem {
    /// A complete line (without `\n` and one trailing `\r`).
    Line(String),
    /// A line longer than [`MAX_LINE`], dropped whole; `len` = its length in bytes
    /// (saturating), without the `\n`.
    TooLong { len: usize },
    /// The stream ended in the middle of a line of `len` bytes; that line is not used.
    /// The next read returns `None`.
    Unterminated { len: usize },
}

/// Reads [`ReadItem`]s from a buffered stream, keeping at most [`MAX_LINE`] bytes.
///
/// [`LineReader::next`] is cancel-safe: all progress lives in the reader, so a `next()`
/// dropped in a `select!` loses nothing.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes seen of the current line (also when it is being dropped).
    len: usize,
    /// The current line is longer than the limit and is being skipped to its end.
    dropping: bool,
    /// End of stream reached.
    eof: bool,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            len: 0,
            dropping: false,
            eof: false,
        }
    }

    /// The next item, or `None` at end of stream.
    pub async fn next(&mut self) -> std::io::Result<Option<ReadItem>> {
        if self.eof {
            return Ok(None);
        }
        loop {
            let chunk = self.inner.fill_buf().await?;
            if chunk.is_empty() {
                self.eof = true;
                if self.len == 0 {
                    return Ok(None);
                }
                let len = self.len;
                self.reset();
                return Ok(Some(ReadItem::Unterminated { len }));
            }
            let (content, used, done) = match chunk.iter().position(|b| *b == b'\n') {
                Some(i) => (&chunk[..i], i + 1, true),
                None => (chunk, chunk.len(), false),
            };
            self.len = self.len.saturating_add(content.len());
            if !self.dropping {
                if self.len > MAX_LINE {
                    self.dropping = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(content);
                }
            }
            self.inner.consume(used);
            if done {
                let item = if self.dropping {
                    ReadItem::TooLong { len: self.len }
                } else {
                    let bytes = self.buf.strip_suffix(b"\r").unwrap_or(&self.buf);
                    ReadItem::Line(String::from_utf8_lossy(bytes).into_owned())
                };
                self.reset();
                return Ok(Some(item));
            }
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.len = 0;
        self.dropping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::{parse_line, Line};

    async fn read_all(data: &[u8], capacity: usize) -> Vec<ReadItem> {
        let mut r = LineReader::new(tokio::io::BufReader::with_capacity(capacity, data));
        let mut out = Vec::new();
        while let Some(item) = r.next().await.expect("io") {
            out.push(item);
        }
        assert_eq!(r.next().await.expect("io"), None, "stays at end of stream");
        out
    }

    fn line(s: &str) -> ReadItem {
        ReadItem::Line(s.to_string())
    }

    /// The reader's table: input bytes → items, with small and large read buffers (a line
    /// split over many reads must give the same result).
    #[tokio::test]
    async fn reader_table() {
        let exact = "x".repeat(MAX_LINE);
        let over = "x".repeat(MAX_LINE + 1);
        let table: Vec<(Vec<u8>, Vec<ReadItem>)> = vec![
            (b"".to_vec(), vec![]),
            (b"a\n".to_vec(), vec![line("a")]),
            (b"a\r\nb\n".to_vec(), vec![line("a"), line("b")]),
            (b"\n\n".to_vec(), vec![line(""), line("")]),
            (b"a\r\r\n".to_vec(), vec![line("a\r")]),
            (b"\xff\xfeok\n".to_vec(), vec![line("\u{fffd}\u{fffd}ok")]),
            (
                b"done\npartial".to_vec(),
                vec![line("done"), ReadItem::Unterminated { len: 7 }],
            ),
            (
                format!("{exact}\n").into_bytes(),
                vec![ReadItem::Line(exact.clone())],
            ),
            (
                format!("{over}\nnext\n").into_bytes(),
                vec![ReadItem::TooLong { len: MAX_LINE + 1 }, line("next")],
            ),
            (
                format!("a\n{over}").into_bytes(),
                vec![line("a"), ReadItem::Unterminated { len: MAX_LINE + 1 }],
            ),
        ];
        for (input, want) in table {
            for cap in [1, 7, 64, 64 * 1024] {
                assert_eq!(
                    read_all(&input, cap).await,
                    want,
                    "input {:?} with a {cap}-byte buffer",
                    String::from_utf8_lossy(&input[..input.len().min(40)])
                );
            }
        }
    }

    /// Moved from adapter-server's monitor (`line_reader_limits`), with the new rule for the
    /// unfinished last line (it was returned as a line before).
    #[tokio::test]
    async fn line_reader_limits() {
        let mut data = Vec::new();
        data.extend_from_slice(b"short\r\n");
        data.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
        data.extend_from_slice(b"\nnext\npartial");
        assert_eq!(
            read_all(&data, 64).await,
            vec![
                line("short"),
                ReadItem::TooLong { len: MAX_LINE + 10 },
                line("next"),
                ReadItem::Unterminated { len: 7 },
            ]
        );
    }

    /// Moved from adapter-client's mgmt (`bounded_reader_cuts_long_lines`): a long line is
    /// now dropped whole instead of cut, and the unfinished `b` is not a line.
    #[tokio::test]
    async fn bounded_reader_drops_long_lines() {
        let long = "x".repeat(MAX_LINE * 2);
        let input = format!("a\r\n{long}\nb");
        assert_eq!(
            read_all(input.as_bytes(), 64).await,
            vec![
                line("a"),
                ReadItem::TooLong { len: MAX_LINE * 2 },
                ReadItem::Unterminated { len: 1 },
            ]
        );
    }

    /// Regression (issue 11, item 12): `>BYTECOUNT:0,000…` longer than the limit was cut and
    /// the kept part parsed as a count of 0. It is dropped whole; the next line is read.
    #[tokio::test]
    async fn overlong_bytecount_is_not_parsed_as_zero() {
        let mut long = String::from(">BYTECOUNT:0,");
        long.push_str(&"0".repeat(MAX_LINE));
        long.push_str("123\n>BYTECOUNT:5,6\n");
        let items = read_all(long.as_bytes(), 8 * 1024).await;
        assert_eq!(items.len(), 2, "{items:?}");
        assert!(matches!(items[0], ReadItem::TooLong { .. }), "{items:?}");
        let ReadItem::Line(l) = &items[1] else {
            panic!("{items:?}")
        };
        assert_eq!(
            parse_line(l),
            Ok(Line::ByteCount {
                bytes_in: 5,
                bytes_out: 6
            })
        );
    }

    /// Regression (issue 11, item 12): a last line without its newline (OpenVPN killed in
    /// the middle of a write) was parsed as complete, so `>BYTECOUNT:1,2` cut from
    /// `>BYTECOUNT:1,2345` was billed as 2. It is reported and never parsed.
    #[tokio::test]
    async fn unterminated_last_line_is_not_parsed() {
        let items = read_all(b">BYTECOUNT:1,1\n>BYTECOUNT:1,2", 64).await;
        assert_eq!(
            items,
            vec![
                line(">BYTECOUNT:1,1"),
                ReadItem::Unterminated {
                    len: ">BYTECOUNT:1,2".len()
                }
            ]
        );
    }

    /// Progress survives a cancelled `next()` (used inside `select!`).
    #[tokio::test]
    async fn next_is_cancel_safe() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = LineReader::new(tokio::io::BufReader::new(rx));
        use tokio::io::AsyncWriteExt;
        tx.write_all(b">BYTECOUNT:12").await.expect("write");
        let first = tokio::time::timeout(std::time::Duration::from_millis(50), r.next()).await;
        assert!(first.is_err(), "no line yet: {first:?}");
        tx.write_all(b"34,5\n").await.expect("write");
        assert_eq!(r.next().await.expect("io"), Some(line(">BYTECOUNT:1234,5")));
        drop(tx);
        assert_eq!(r.next().await.expect("io"), None);
    }
}
