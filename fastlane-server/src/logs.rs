//! Live logs: what a run writes, kept with its execution as it is written.
//!
//! While a worker waits for a run it also [`follow`]s it: the executor hands
//! each piece of stdout and stderr to a [`LogSink`], and a [`Keeper`] turns
//! them into [`LogPiece`]s of one log (both streams, in the order written,
//! addressed by byte offset) that the store appends in batches. The
//! WebSocket routes read that log back, so they work from any API process,
//! and after the container is gone.
//!
//! Following is repeatable: a worker that adopts a run after a crash
//! follows it from the first byte again, and the keeper skips the bytes of
//! each stream that are already kept. Whatever following missed (an
//! executor that cannot follow, a follow cut short) is caught up from the
//! run's whole output once it has ended. The log is capped at
//! `EXECUTION_LOG_MAX_BYTES`; a notice in the log marks the cut.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use fastlane_sdk::{Executor, LogSink, LogStream, RunHandle, RunOutput};

use crate::store::{LogPiece, LogSource, LogTotals, Store};

/// How many pieces a read of the log returns at most.
pub const READ_LIMIT: u32 = 256;

/// Turns the bytes of a run's streams into pieces of its log: joins UTF-8
/// characters split between writes, skips what is already kept, and cuts
/// the log at its cap.
#[derive(Debug)]
pub struct Keeper {
    /// The next piece's offset.
    bytes: u64,
    /// The log's cap.
    cap: u64,
    /// True once the cap is reached.
    cut: bool,
    stdout: StreamState,
    stderr: StreamState,
}

/// One stream's bytes on their way into the log.
#[derive(Debug, Default)]
struct StreamState {
    /// Bytes already kept (from an earlier follow) still to be skipped.
    skip: u64,
    /// The start of a character whose end has not arrived yet.
    partial: Vec<u8>,
}

impl Keeper {
    /// A keeper continuing the log described by `totals`, capped at `cap`.
    pub fn new(totals: LogTotals, cap: u64) -> Self {
        Self {
            bytes: totals.bytes,
            cap,
            cut: totals.cut,
            stdout: StreamState {
                skip: totals.stdout,
                partial: Vec::new(),
            },
            stderr: StreamState {
                skip: totals.stderr,
                partial: Vec::new(),
            },
        }
    }

    /// True once nothing more will be kept.
    pub fn is_cut(&self) -> bool {
        self.cut
    }

    /// The pieces `bytes` of `stream` add to the log (none while they are
    /// skipped, or only the start of a character).
    pub fn take(&mut self, stream: LogStream, bytes: &[u8]) -> Vec<LogPiece> {
        let state = match stream {
            LogStream::Stdout => &mut self.stdout,
            LogStream::Stderr => &mut self.stderr,
        };
        let skipped = usize::try_from(state.skip)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        state.skip -= skipped as u64;
        state.partial.extend_from_slice(&bytes[skipped..]);
        let (text, raw_len) = decode(&mut state.partial, false);
        self.push(stream, text, raw_len)
    }

    /// The pieces left once the run's output has ended: the starts of
    /// characters that never ended, as replacement characters.
    pub fn finish(&mut self) -> Vec<LogPiece> {
        let mut pieces = Vec::new();
        for stream in [LogStream::Stdout, LogStream::Stderr] {
            let state = match stream {
                LogStream::Stdout => &mut self.stdout,
                LogStream::Stderr => &mut self.stderr,
            };
            let (text, raw_len) = decode(&mut state.partial, true);
            pieces.extend(self.push(stream, text, raw_len));
        }
        pieces
    }

    fn push(&mut self, stream: LogStream, mut text: String, raw_len: u64) -> Vec<LogPiece> {
        if self.cut || raw_len == 0 {
            return Vec::new();
        }
        let source = match stream {
            LogStream::Stdout => LogSource::Stdout,
            LogStream::Stderr => LogSource::Stderr,
        };
        let room = usize::try_from(self.cap.saturating_sub(self.bytes)).unwrap_or(usize::MAX);
        let mut pieces = Vec::with_capacity(2);
        let cut_here = text.len() > room;
        if cut_here {
            let mut end = room;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        if !text.is_empty() {
            let len = text.len() as u64;
            pieces.push(LogPiece {
                offset: self.bytes,
                source,
                raw_len: if cut_here { len } else { raw_len },
                text,
            });
            self.bytes += len;
        }
        if cut_here {
            let notice = format!(
                "\n[fastlane: the log was cut here, at its cap of {} bytes (EXECUTION_LOG_MAX_BYTES)]\n",
                self.cap
            );
            let len = notice.len() as u64;
            pieces.push(LogPiece {
                offset: self.bytes,
                source: LogSource::Notice,
                text: notice,
                raw_len: 0,
            });
            self.bytes += len;
            self.cut = true;
        }
        pieces
    }
}

/// Decodes the longest whole-character prefix of `bytes` (all of it when
/// `at_end`), invalid bytes as U+FFFD, leaving the rest in `bytes`. Returns
/// the text and how many bytes it consumed.
fn decode(bytes: &mut Vec<u8>, at_end: bool) -> (String, u64) {
    let mut text = String::new();
    let mut used = 0;
    loop {
        match std::str::from_utf8(&bytes[used..]) {
            Ok(rest) => {
                text.push_str(rest);
                used = bytes.len();
                break;
            }
            Err(err) => {
                let valid = used + err.valid_up_to();
                text.push_str(&String::from_utf8_lossy(&bytes[used..valid]));
                match err.error_len() {
                    Some(invalid) => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        used = valid + invalid;
                    }
                    None if at_end => {
                        text.push(char::REPLACEMENT_CHARACTER);
                        used = bytes.len();
                        break;
                    }
                    None => {
                        used = valid;
                        break;
                    }
                }
            }
        }
    }
    bytes.drain(..used);
    (text, used as u64)
}

/// The [`LogSink`] handed to executors: it only queues, never blocks.
struct Channel(mpsc::UnboundedSender<(LogStream, Vec<u8>)>);

impl LogSink for Channel {
    fn write(&self, stream: LogStream, bytes: &[u8]) {
        // The receiver is gone only when keeping gave up; nothing to do.
        let _ = self.0.send((stream, bytes.to_vec()));
    }
}

/// Follows the run `handle` of `execution_id`, keeping what it writes in
/// the store, until its output ends. Errors are logged: what following
/// misses is caught up from the whole output at the end.
pub async fn follow(
    store: Arc<dyn Store>,
    executor: Arc<dyn Executor>,
    handle: RunHandle,
    execution_id: String,
    cap: u64,
) {
    let totals = match store.log_totals(&execution_id).await {
        Ok(totals) => totals,
        Err(err) => {
            warn!(execution = %execution_id, error = %err, "cannot read the log; not following");
            return;
        }
    };
    if totals.cut {
        return;
    }
    let (sender, mut receiver) = mpsc::unbounded_channel::<(LogStream, Vec<u8>)>();
    let mut keeper = Keeper::new(totals, cap);
    let keeping = async {
        while let Some(first) = receiver.recv().await {
            let mut pieces = keeper.take(first.0, &first.1);
            // Whatever else arrived meanwhile goes into the same write.
            while let Ok((stream, bytes)) = receiver.try_recv() {
                pieces.extend(keeper.take(stream, &bytes));
                if pieces.len() >= READ_LIMIT as usize {
                    break;
                }
            }
            if !append(store.as_ref(), &execution_id, merge(pieces)).await {
                return;
            }
            if keeper.is_cut() {
                return;
            }
        }
        append(store.as_ref(), &execution_id, keeper.finish()).await;
    };
    let following = async {
        let sink = Channel(sender);
        if let Err(err) = executor.follow(&handle, &sink).await {
            warn!(execution = %execution_id, error = %err, "following the run's output failed");
        }
        // Dropping the sink here ends `keeping` once it has written all.
    };
    tokio::join!(following, keeping);
}

/// Keeps what `output` holds beyond what following kept (all of it, for an
/// executor that cannot follow): stdout first, then stderr.
pub async fn catch_up(store: &dyn Store, execution_id: &str, output: &RunOutput, cap: u64) {
    let totals = match store.log_totals(execution_id).await {
        Ok(totals) => totals,
        Err(err) => {
            warn!(execution = %execution_id, error = %err, "cannot read the log to complete it");
            return;
        }
    };
    let mut keeper = Keeper::new(totals, cap);
    let mut pieces = keeper.take(LogStream::Stdout, output.stdout.as_bytes());
    pieces.extend(keeper.take(LogStream::Stderr, output.stderr.as_bytes()));
    pieces.extend(keeper.finish());
    append(store, execution_id, pieces).await;
}

/// Joins neighbouring pieces of the same stream into one.
fn merge(pieces: Vec<LogPiece>) -> Vec<LogPiece> {
    let mut merged: Vec<LogPiece> = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match merged.last_mut() {
            Some(last)
                if last.source == piece.source
                    && last.source != LogSource::Notice
                    && last.end() == piece.offset =>
            {
                last.text.push_str(&piece.text);
                last.raw_len += piece.raw_len;
            }
            _ => merged.push(piece),
        }
    }
    merged
}

/// Appends `pieces`, trying again for a while when the store is away.
/// False when it gave up.
async fn append(store: &dyn Store, execution_id: &str, pieces: Vec<LogPiece>) -> bool {
    if pieces.is_empty() {
        return true;
    }
    let mut attempt = 0;
    loop {
        match store.append_log(execution_id, &pieces).await {
            Ok(()) => return true,
            Err(err) if attempt < 20 => {
                attempt += 1;
                warn!(execution = %execution_id, error = %err, attempt, "cannot keep the log; will try again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(err) => {
                warn!(execution = %execution_id, error = %err, "giving up keeping the log");
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(pieces: &[LogPiece]) -> Vec<(u64, &str, &str)> {
        pieces
            .iter()
            .map(|p| (p.offset, p.source.as_str(), p.text.as_str()))
            .collect()
    }

    #[test]
    fn both_streams_make_one_log_in_the_order_written() {
        let mut keeper = Keeper::new(LogTotals::default(), 1000);
        let mut pieces = keeper.take(LogStream::Stdout, b"one\n");
        pieces.extend(keeper.take(LogStream::Stderr, b"oops\n"));
        pieces.extend(keeper.take(LogStream::Stdout, b"two\n"));
        assert_eq!(
            texts(&pieces),
            [
                (0, "stdout", "one\n"),
                (4, "stderr", "oops\n"),
                (9, "stdout", "two\n")
            ]
        );
    }

    #[test]
    fn a_character_split_between_writes_is_kept_whole() {
        let mut keeper = Keeper::new(LogTotals::default(), 1000);
        let bytes = "héllo".as_bytes();
        assert_eq!(
            texts(&keeper.take(LogStream::Stdout, &bytes[..2])),
            [(0, "stdout", "h")]
        );
        assert_eq!(
            texts(&keeper.take(LogStream::Stdout, &bytes[2..])),
            [(1, "stdout", "éllo")]
        );
        assert!(keeper.finish().is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let mut keeper = Keeper::new(LogTotals::default(), 1000);
        let pieces = keeper.take(LogStream::Stdout, b"a\xffb\xc3");
        assert_eq!(texts(&pieces), [(0, "stdout", "a\u{fffd}b")]);
        assert_eq!(pieces[0].raw_len, 3);
        let rest = keeper.finish();
        assert_eq!(texts(&rest), [(5, "stdout", "\u{fffd}")]);
        assert_eq!(rest[0].raw_len, 1);
    }

    #[test]
    fn following_again_skips_what_each_stream_already_kept() {
        let kept = LogTotals {
            bytes: 9,
            stdout: 4,
            stderr: 5,
            cut: false,
        };
        let mut keeper = Keeper::new(kept, 1000);
        assert!(keeper.take(LogStream::Stdout, b"one").is_empty());
        assert_eq!(
            texts(&keeper.take(LogStream::Stdout, b"\ntwo\n")),
            [(9, "stdout", "two\n")]
        );
        assert_eq!(
            texts(&keeper.take(LogStream::Stderr, b"oops\nmore\n")),
            [(13, "stderr", "more\n")]
        );
    }

    #[test]
    fn the_log_is_cut_at_its_cap_with_a_notice_and_then_keeps_nothing() {
        let mut keeper = Keeper::new(LogTotals::default(), 10);
        let pieces = keeper.take(LogStream::Stdout, "0123456789é-more".as_bytes());
        assert_eq!(pieces[0].text, "0123456789");
        assert_eq!(pieces[1].source, LogSource::Notice);
        assert!(pieces[1].text.contains("cut here, at its cap of 10 bytes"));
        assert!(keeper.is_cut());
        assert!(keeper.take(LogStream::Stderr, b"late").is_empty());
    }

    #[test]
    fn merge_joins_neighbours_of_one_stream() {
        let mut keeper = Keeper::new(LogTotals::default(), 1000);
        let mut pieces = keeper.take(LogStream::Stdout, b"a");
        pieces.extend(keeper.take(LogStream::Stdout, b"b"));
        pieces.extend(keeper.take(LogStream::Stderr, b"c"));
        let merged = merge(pieces);
        assert_eq!(texts(&merged), [(0, "stdout", "ab"), (2, "stderr", "c")]);
        assert_eq!(merged[0].raw_len, 2);
    }

    #[test]
    fn reading_from_an_offset_inside_a_piece_starts_at_a_character_boundary() {
        let piece = LogPiece {
            offset: 10,
            source: LogSource::Stdout,
            text: "aé b".to_owned(),
            raw_len: 5,
        };
        let read = crate::store::log_from(vec![piece.clone()], 12);
        assert_eq!(texts(&read), [(13, "stdout", " b")]);
        assert_eq!(texts(&crate::store::log_from(vec![piece], 15)), []);
    }
}
