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
//!
//! Memory stays bounded whatever a run writes: the executor's pieces go
//! through a bounded channel (the executor waits while the store is
//! behind), and once the log is cut the sink wants nothing more, so the
//! executor stops reading and following ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::warn;

use fastlane_sdk::{Executor, LogSink, LogStream, RunHandle, RunOutput};

use crate::store::{LogPiece, LogSource, LogTotals, Store};

/// How many pieces a read of the log returns at most.
pub const READ_LIMIT: u32 = 256;

/// How many pieces of output an executor may hand over ahead of the
/// store: what following holds at most (a Docker frame is a line, or a
/// few KiB of one).
const CHANNEL_CAPACITY: usize = 256;

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
            pieces.extend(self.cut());
        }
        pieces
    }

    /// Cuts the log here (nothing more is kept), with the notice that
    /// marks the cut; nothing if it is cut already.
    pub fn cut(&mut self) -> Option<LogPiece> {
        if self.cut {
            return None;
        }
        let notice = format!(
            "\n[fastlane: the log was cut here, at its cap of {} bytes (EXECUTION_LOG_MAX_BYTES)]\n",
            self.cap
        );
        let len = notice.len() as u64;
        let piece = LogPiece {
            offset: self.bytes,
            source: LogSource::Notice,
            text: notice,
            raw_len: 0,
        };
        self.bytes += len;
        self.cut = true;
        Some(piece)
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

/// The [`LogSink`] handed to executors: it queues into a bounded channel,
/// waiting while it is full, and wants nothing more once keeping is over
/// (the log was cut, or the store gave up).
struct Channel {
    sender: mpsc::Sender<(LogStream, Vec<u8>)>,
    /// Set by the keeping side when nothing more will be kept.
    done: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl LogSink for Channel {
    async fn write(&self, stream: LogStream, bytes: &[u8]) {
        if self.done.load(Ordering::Relaxed) {
            return;
        }
        if self.sender.send((stream, bytes.to_vec())).await.is_err() {
            // The receiver is gone only when keeping is over.
            self.done.store(true, Ordering::Relaxed);
        }
    }

    fn wants(&self, _stream: LogStream) -> bool {
        !self.done.load(Ordering::Relaxed)
    }
}

/// Follows the run `handle` of `execution_id`, keeping what it writes in
/// the store, until its output ends or the log is cut. Errors are logged:
/// what following misses is caught up from the output at the end.
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
    let (sender, mut receiver) = mpsc::channel::<(LogStream, Vec<u8>)>(CHANNEL_CAPACITY);
    let done = Arc::new(AtomicBool::new(false));
    let mut keeper = Keeper::new(totals, cap);
    let keeping = async {
        let kept_all = async {
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
        kept_all.await;
        // Nothing more is kept: the executor stops reading, and whatever
        // it had queued is dropped with the receiver.
        done.store(true, Ordering::Relaxed);
        drop(receiver);
    };
    let following = async {
        let sink = Channel {
            sender,
            done: done.clone(),
        };
        if let Err(err) = executor.follow(&handle, &sink).await {
            warn!(execution = %execution_id, error = %err, "following the run's output failed");
        }
        // Dropping the sink here ends `keeping` once it has written all.
    };
    tokio::join!(following, keeping);
}

/// Keeps what `output` holds beyond what following kept (all of it, for an
/// executor that cannot follow): stdout first, then stderr. When the
/// executor cut a stream at its limit and the log has room left for the
/// rest, the log is cut here, with its notice, all the same.
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
    if output.stdout_cut.is_some() || output.stderr_cut.is_some() {
        pieces.extend(keeper.cut());
    }
    append(store, execution_id, pieces).await;
}

/// What the log of `execution_id` kept of the run's stdout and stderr (at
/// most `cap` bytes of the log), for when the run's own output is gone
/// with it (a Kubernetes pod deleted when its Job was stopped): the worker
/// stores what it followed instead. A store that cannot be read gives what
/// was read so far.
pub async fn kept_output(store: &dyn Store, execution_id: &str, cap: u64) -> RunOutput {
    let mut output = RunOutput::default();
    let mut from = 0;
    while from < cap {
        let pieces = match store.read_log(execution_id, from, READ_LIMIT).await {
            Ok(pieces) => pieces,
            Err(err) => {
                warn!(execution = %execution_id, error = %err, "cannot read the log back");
                break;
            }
        };
        let Some(last) = pieces.last() else {
            break;
        };
        from = last.end();
        for piece in pieces {
            match piece.source {
                LogSource::Stdout => output.stdout.push_str(&piece.text),
                LogSource::Stderr => output.stderr.push_str(&piece.text),
                LogSource::Notice => {}
            }
        }
    }
    output
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
    fn a_keeper_cut_by_hand_marks_the_cut_once() {
        let mut keeper = Keeper::new(LogTotals::default(), 100);
        let kept = keeper.take(LogStream::Stdout, b"short");
        let cut = keeper.cut().expect("a notice");
        assert_eq!((cut.offset, cut.source), (5, LogSource::Notice));
        assert!(cut.text.contains("cut here"), "{}", cut.text);
        assert!(keeper.cut().is_none());
        assert!(keeper.take(LogStream::Stdout, b"more").is_empty());
        assert_eq!(kept.len(), 1);
    }

    /// An executor whose run writes without end, in 64 KiB pieces, for as
    /// long as the sink wants them.
    #[derive(Debug, Default)]
    struct Endless {
        written: std::sync::atomic::AtomicU64,
    }

    #[async_trait::async_trait]
    impl Executor for Endless {
        fn name(&self) -> &str {
            "endless"
        }
        async fn place(
            &self,
            _: &fastlane_sdk::ExecutionSpec,
        ) -> Result<fastlane_sdk::Placement, fastlane_sdk::PluginError> {
            unreachable!("only followed")
        }
        async fn prepare(
            &self,
            _: &fastlane_sdk::ExecutionSpec,
            _: &fastlane_sdk::Placement,
            _: &dyn fastlane_sdk::Progress,
        ) -> Result<(), fastlane_sdk::PluginError> {
            unreachable!("only followed")
        }
        async fn start(
            &self,
            _: &fastlane_sdk::ExecutionSpec,
            _: &fastlane_sdk::Placement,
        ) -> Result<RunHandle, fastlane_sdk::PluginError> {
            unreachable!("only followed")
        }
        async fn wait(
            &self,
            _: &RunHandle,
        ) -> Result<fastlane_sdk::ExitStatus, fastlane_sdk::PluginError> {
            unreachable!("only followed")
        }
        async fn output(
            &self,
            _: &RunHandle,
            _: u64,
        ) -> Result<RunOutput, fastlane_sdk::PluginError> {
            unreachable!("only followed")
        }
        async fn follow(
            &self,
            _: &RunHandle,
            sink: &dyn LogSink,
        ) -> Result<(), fastlane_sdk::PluginError> {
            let piece = vec![b'x'; 64 * 1024];
            while sink.wants(LogStream::Stdout) {
                sink.write(LogStream::Stdout, &piece).await;
                self.written
                    .fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            Ok(())
        }
        async fn stop(&self, _: &RunHandle, _: Duration) -> Result<(), fastlane_sdk::PluginError> {
            Ok(())
        }
        async fn release(&self, _: &RunHandle) -> Result<(), fastlane_sdk::PluginError> {
            Ok(())
        }
        async fn status(&self) -> fastlane_sdk::ExecutorStatus {
            Default::default()
        }
    }

    #[tokio::test]
    async fn following_ends_once_the_log_is_cut_though_the_run_writes_on() {
        let dir = std::env::temp_dir().join(format!("fastlane-logs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store: Arc<dyn Store> = Arc::new(crate::store::sqlite::SqliteStore::new(
            crate::embedded::Db::open(&dir).expect("db"),
        ));
        let executor = Arc::new(Endless::default());
        let handle = RunHandle {
            host: "here".to_owned(),
            id: "endless".to_owned(),
        };
        let cap = 1024 * 1024;
        tokio::time::timeout(
            Duration::from_secs(30),
            follow(
                store.clone(),
                executor.clone(),
                handle,
                "e1".to_owned(),
                cap,
            ),
        )
        .await
        .expect("following went on after the cut");
        let totals = store.log_totals("e1").await.expect("totals");
        assert!(totals.cut, "{totals:?}");
        assert_eq!(totals.stdout, cap);
        // What the executor was let write past the cap is what the bounded
        // channel holds, not an unbounded backlog.
        let written = executor.written.load(Ordering::Relaxed);
        assert!(
            written <= cap + (2 * CHANNEL_CAPACITY as u64 + 4) * 64 * 1024,
            "the executor wrote {written} bytes for a log of {cap}"
        );
        let _ = std::fs::remove_dir_all(&dir);
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
