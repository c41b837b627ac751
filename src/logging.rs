//! Log setup (level, format, where lines go) and the helpers the request path logs through.
//!
//! Owns the global subscriber and its writer. Lines are written by a background thread so a
//! request never waits on stderr (a synchronous line per request measured −13 % throughput,
//! docs/design.md §7), except in daemon mode, where a thread started before Pingora forks would be lost.
//! The queue to that thread is bounded by bytes ([`QUEUE_BYTES`]): when stderr cannot keep up,
//! new lines are dropped (whole lines, never cut) and counted in [`dropped_lines`], exported as
//! `notify_proxy_log_lines_dropped_total`, so a lost access line is visible instead of silent.
//!
//! Never decides *what* is logged: the request path does, and it never logs secrets or bodies.
//! What a request chose (path, method, header values) goes through [`Echo`], which bounds and
//! escapes it; rejection details go through [`RateLimit`], so a flood of bad requests costs a
//! bounded number of detailed lines. Request ids ([`request_id`]) tie the public answer to
//! its log line.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

mod request_id;
pub use request_id::{request_id, RequestId};

/// Bytes of formatted lines waiting for the writer thread. At ~300 B a line that is some 27k
/// lines: seconds of a stalled stderr at full load, and a bounded amount of memory whatever
/// the lines carry.
pub const QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// Most bytes of a request-chosen value (path, method, header) written into a log line.
pub const ECHO_BYTES: usize = 128;

/// How many log lines the queue dropped, since it started: a handle shared by the queue that
/// counts and the metrics that export it (`notify_proxy_log_lines_dropped_total`). The queue
/// exists before any registry does, so [`init`] hands this out for the wiring to pass on.
#[derive(Debug, Clone, Default)]
pub struct DroppedLines(std::sync::Arc<AtomicU64>);

impl DroppedLines {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add_one(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The queue [`init`] installed, for [`flush`].
static INSTALLED: OnceLock<std::sync::Weak<Shared>> = OnceLock::new();

/// Waits (at most `within`) until the lines logged so far are written. For the moments the
/// process is about to end on its own (`run --test`, a failed start), where queued lines
/// would otherwise be lost with the process.
pub fn flush(within: std::time::Duration) {
    if let Some(shared) = INSTALLED.get().and_then(std::sync::Weak::upgrade) {
        BoundedQueue { shared }.flush(within);
    }
}

/// Installs the subscriber. `RUST_LOG`, when set, overrides `config.level`. Returns the count
/// of lines the queue drops (none in daemon mode, which writes stderr directly).
pub fn init(config: &LoggingConfig, daemon: bool) -> DroppedLines {
    if daemon {
        install(config, std::io::stderr);
        DroppedLines::default()
    } else {
        let queue = BoundedQueue::start(QUEUE_BYTES, std::io::stderr());
        let _ = INSTALLED.set(std::sync::Arc::downgrade(&queue.shared));
        let dropped = queue.dropped();
        install(config, queue);
        dropped
    }
}

fn install<W>(config: &LoggingConfig, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&config.level));
    // Colour codes only for a person at a terminal: in a file or a collector they split
    // `key=value` pairs apart.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_ansi(ansi)
        .with_env_filter(filter)
        .with_writer(writer);
    // An already installed subscriber (tests, embedding) is kept.
    let _ = match config.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// A writer whose lines go to a background thread through a queue bounded by bytes.
///
/// `tracing_appender::non_blocking` bounds its queue by lines (128k of any size) and drops
/// silently; this one bounds the memory and counts what it drops.
#[derive(Clone)]
pub struct BoundedQueue {
    shared: std::sync::Arc<Shared>,
}

struct Shared {
    sender: mpsc::Sender<Vec<u8>>,
    queued: AtomicUsize,
    limit: usize,
    dropped: DroppedLines,
}

impl BoundedQueue {
    /// Starts the writer thread. It lives as long as the process (Pingora ends the process
    /// itself); lines still queued then are lost, as with any asynchronous log.
    pub fn start<W: Write + Send + 'static>(limit: usize, mut out: W) -> BoundedQueue {
        let (sender, receiver) = mpsc::channel::<Vec<u8>>();
        let shared = std::sync::Arc::new(Shared {
            sender,
            queued: AtomicUsize::new(0),
            limit,
            dropped: DroppedLines::default(),
        });
        let weak = std::sync::Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while let Ok(line) = receiver.recv() {
                    let _ = out.write_all(&line);
                    if let Some(shared) = weak.upgrade() {
                        shared.queued.fetch_sub(line.len(), Ordering::Relaxed);
                    }
                }
            });
        if spawned.is_err() {
            // No thread, no queue: every line counts as dropped rather than piling up.
            shared.queued.store(usize::MAX / 2, Ordering::Relaxed);
        }
        BoundedQueue { shared }
    }

    /// The count of lines this queue dropped.
    pub fn dropped(&self) -> DroppedLines {
        self.shared.dropped.clone()
    }

    /// Waits (at most `within`) until every queued line is written.
    fn flush(&self, within: std::time::Duration) {
        let started = std::time::Instant::now();
        while self.shared.queued.load(Ordering::Relaxed) > 0 && started.elapsed() < within {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    fn push(&self, line: Vec<u8>) {
        let len = line.len();
        let before = self.shared.queued.fetch_add(len, Ordering::Relaxed);
        if before.saturating_add(len) > self.shared.limit || self.shared.sender.send(line).is_err()
        {
            self.shared.queued.fetch_sub(len, Ordering::Relaxed);
            self.shared.dropped.add_one();
        }
    }
}

/// One event's bytes, queued as a whole line when the formatter is done with it.
pub struct QueuedLine {
    queue: BoundedQueue,
    line: Vec<u8>,
}

impl Write for QueuedLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine {
    fn drop(&mut self) {
        if !self.line.is_empty() {
            self.queue.push(std::mem::take(&mut self.line));
        }
    }
}

impl<'a> MakeWriter<'a> for BoundedQueue {
    type Writer = QueuedLine;

    fn make_writer(&'a self) -> QueuedLine {
        QueuedLine {
            queue: self.clone(),
            line: Vec::with_capacity(256),
        }
    }
}

/// A value the request chose, as it may appear in a log line: at most [`ECHO_BYTES`] bytes,
/// invalid UTF-8 replaced, control characters escaped (so it cannot forge a line), and the
/// length of what was cut noted.
pub struct Echo<'a>(pub &'a [u8]);

impl fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = &self.0[..self.0.len().min(ECHO_BYTES)];
        for chunk in shown.utf8_chunks() {
            for c in chunk.valid().chars() {
                if c.is_control() {
                    write!(f, "{}", c.escape_default())?;
                } else {
                    f.write_fmt(format_args!("{c}"))?;
                }
            }
            if !chunk.invalid().is_empty() {
                f.write_str("\u{FFFD}")?;
            }
        }
        if self.0.len() > shown.len() {
            write!(f, "…(+{} bytes)", self.0.len() - shown.len())?;
        }
        Ok(())
    }
}

/// Bounds the text of a message made from request-chosen parts (a rejection detail) the same
/// way [`Echo`] bounds one value, with room for the fixed words around it.
pub fn bounded(text: &str) -> String {
    let limit = ECHO_BYTES * 3;
    if text.len() <= limit && !text.chars().any(char::is_control) {
        return text.to_owned();
    }
    let bytes = text.as_bytes();
    let shown = &bytes[..bytes.len().min(limit)];
    let mut out = Echo(shown).to_string();
    if bytes.len() > shown.len() {
        out.push_str(&format!("…(+{} bytes)", bytes.len() - shown.len()));
    }
    out
}

/// Allows at most `per_second` events in each wall-clock second (a fixed window: cheap, one
/// atomic on the hot path, and a burst at a window edge is at most twice the rate).
pub struct RateLimit {
    per_second: u64,
    /// The window's second in the high 32 bits, the count in the low 32.
    state: AtomicU64,
    suppressed: AtomicU64,
}

impl RateLimit {
    pub const fn new(per_second: u64) -> RateLimit {
        RateLimit {
            per_second,
            state: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Whether one more event fits in the current second (`now_secs`).
    pub fn allow_at(&self, now_secs: u64) -> bool {
        let window = now_secs & 0xFFFF_FFFF;
        let mut current = self.state.load(Ordering::Relaxed);
        loop {
            let (w, n) = (current >> 32, current & 0xFFFF_FFFF);
            let next = if w == window {
                if n >= self.per_second {
                    self.suppressed.fetch_add(1, Ordering::Relaxed);
                    return false;
                }
                current + 1
            } else {
                (window << 32) | 1
            };
            match self.state.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(seen) => current = seen,
            }
        }
    }

    pub fn allow(&self) -> bool {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.allow_at(secs)
    }

    /// Events refused so far.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

/// Says yes at most once per interval: for a failure that repeats on every call (a store that
/// is down), logged now and then while a metric counts every occurrence. Shared by the threads
/// that hit it (one atomic); the first call is always due.
#[derive(Debug)]
pub struct OncePer {
    every_ms: u64,
    last_ms: AtomicU64,
}

impl OncePer {
    pub const fn new(every: std::time::Duration) -> OncePer {
        OncePer {
            every_ms: every.as_millis() as u64,
            last_ms: AtomicU64::new(0),
        }
    }

    /// Whether a line is due now (wall clock, unix ms); if so, the next one is `every` away.
    pub fn due(&self) -> bool {
        self.due_at(crate::clock::now_ms())
    }

    /// [`OncePer::due`] at `now_ms`.
    pub fn due_at(&self, now_ms: u64) -> bool {
        let last = self.last_ms.load(Ordering::Relaxed);
        (last == 0 || now_ms.saturating_sub(last) >= self.every_ms)
            && self
                .last_ms
                .compare_exchange(last, now_ms.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Rejection lines with their detail, per second; past it a rejection is logged without one
/// (reason, status and request id stay, so counting by log still works).
pub const REJECTION_DETAILS_PER_SECOND: u64 = 50;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn echo_bounds_and_escapes_request_values() {
        let long = vec![b'a'; 1 << 20];
        let shown = Echo(&long).to_string();
        assert!(shown.len() < ECHO_BYTES + 32, "{}", shown.len());
        assert!(shown.ends_with(&format!("…(+{} bytes)", (1 << 20) - ECHO_BYTES)));
        assert_eq!(Echo(b"a\nb\xffc").to_string(), "a\\nb\u{FFFD}c");
        assert!(bounded(&"x".repeat(10_000)).len() < ECHO_BYTES * 3 + 32);
        assert_eq!(bounded("plain"), "plain");
        assert_eq!(bounded("two\nlines"), "two\\nlines");
    }

    #[test]
    fn once_per_is_due_first_then_after_its_interval_and_not_before() {
        let every = OncePer::new(std::time::Duration::from_secs(10));
        assert!(every.due_at(5_000), "the first is always due");
        assert!(!every.due_at(5_000));
        assert!(!every.due_at(14_999), "one ms before the interval");
        assert!(every.due_at(15_000), "at the interval");
        assert!(!every.due_at(15_001));
    }

    #[test]
    fn rate_limit_allows_per_second_then_refuses_until_the_next_second() {
        let limit = RateLimit::new(3);
        assert_eq!((0..5).filter(|_| limit.allow_at(7)).count(), 3);
        assert_eq!(limit.suppressed(), 2);
        assert!(limit.allow_at(8));
    }

    /// A writer that blocks until released, like a stderr nobody reads.
    struct Stalled(Arc<Mutex<()>>, Arc<Mutex<Vec<u8>>>);
    impl Write for Stalled {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _held = self.0.lock().unwrap();
            self.1.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_whole_lines_and_counts_them() {
        let gate = Arc::new(Mutex::new(()));
        let written = Arc::new(Mutex::new(Vec::new()));
        let stall = gate.lock().unwrap();
        let queue = BoundedQueue::start(1000, Stalled(gate.clone(), written.clone()));
        let before = queue.dropped().get();
        for _ in 0..50 {
            let mut w = queue.make_writer();
            w.write_all(&[b'x'; 99]).unwrap();
            w.write_all(b"\n").unwrap();
        }
        // The first line may be held by the writer thread, the next ten fill the 1000 bytes.
        let dropped = queue.dropped().get() - before;
        assert!((38..=40).contains(&dropped), "{dropped}");
        drop(stall);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while written.lock().unwrap().len() < (50 - dropped as usize) * 100 {
            assert!(std::time::Instant::now() < deadline, "queue never drained");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(written
            .lock()
            .unwrap()
            .split(|&b| b == b'\n')
            .all(|l| l.is_empty() || l.len() == 99));
    }

    /// Regression: `run --test` ends the process right after building it; the hand-off line
    /// logged while building was lost when the writer thread had not written it yet.
    #[test]
    fn flush_returns_once_every_queued_line_is_written() {
        /// A writer that takes its time over each line.
        struct Slow(Arc<Mutex<Vec<u8>>>);
        impl Write for Slow {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                std::thread::sleep(std::time::Duration::from_millis(5));
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let written = Arc::new(Mutex::new(Vec::new()));
        let queue = BoundedQueue::start(100_000, Slow(written.clone()));
        for _ in 0..20 {
            let mut w = queue.make_writer();
            w.write_all(b"a line\n").unwrap();
        }
        queue.flush(std::time::Duration::from_secs(10));
        assert_eq!(
            written.lock().unwrap().len(),
            20 * 7,
            "all written when flush returns"
        );
    }
}
