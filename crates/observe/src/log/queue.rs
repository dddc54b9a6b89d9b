//! The queue between the threads that log and the one thread that writes.
//!
//! Callers append finished lines to one shared buffer under a mutex held
//! only for the copy; the writer swaps the buffer out and writes it in one
//! call. The writer is woken only when the buffer goes from empty to
//! non-empty, and after a wake it waits [`COALESCE`] before draining, so
//! that under load one wake-up and one `write` carry many lines.
//!
//! This replaced a channel of `String`s, which `bench/harness`'s
//! `log-cost` measured at 3.7 µs of CPU per access line (a futex wake-up for
//! most lines, and every line allocated on one thread and freed on another);
//! `tracing-appender`'s non-blocking writer, which works the same way, cost
//! about as much. See `bench/results/log-cost-2026-11-30.txt`.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// How long the writer lets lines gather after it is woken.
pub const COALESCE: Duration = Duration::from_millis(1);

/// A buffer the writer keeps between writes, beyond which it is shrunk.
const KEEP_CAPACITY: usize = 256 << 10;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// Bytes appended since the start, and bytes written.
    appended: u64,
    written: u64,
    /// The writer is blocked waiting for lines.
    idle: bool,
    /// Someone waits in [`Queue::flush`]: write without coalescing.
    hurry: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Signals the writer: lines arrived, or a flush is wanted.
    wake: Condvar,
    /// Signals flushers: the writer wrote some more.
    done: Condvar,
    dropped: AtomicU64,
    max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the buffer consistent (it
        // only ever grows by whole lines), so a poisoned lock is usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A bounded log queue with its writer thread.
#[derive(Clone)]
pub struct Queue(Arc<Shared>);

impl Queue {
    /// Starts a writer thread writing to `out`; at most `max_bytes` wait.
    pub fn start(name: &str, out: Box<dyn Write + Send>, max_bytes: usize) -> Queue {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            done: Condvar::new(),
            dropped: AtomicU64::new(0),
            max_bytes,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || write_loop(&s, out))
            .expect("spawn the log thread");
        Queue(shared)
    }

    /// Appends whole lines (`text` ends with a newline), or drops and counts
    /// them when the queue is full.
    pub fn push(&self, text: &[u8]) {
        let mut s = self.0.lock();
        if s.buf.len() + text.len() > self.0.max_bytes {
            drop(s);
            let lines = text.iter().filter(|&&b| b == b'\n').count().max(1);
            self.0.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            return;
        }
        s.buf.extend_from_slice(text);
        s.appended += text.len() as u64;
        let wake = std::mem::take(&mut s.idle);
        drop(s);
        if wake {
            self.0.wake.notify_one();
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every line pushed before the call has been written.
    pub fn flush(&self) {
        let mut s = self.0.lock();
        let target = s.appended;
        while s.written < target {
            s.hurry = true;
            if std::mem::take(&mut s.idle) {
                self.0.wake.notify_one();
            }
            s = self.0.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn write_loop(shared: &Shared, mut out: Box<dyn Write + Send>) {
    let mut spare = Vec::new();
    loop {
        let mut s = shared.lock();
        while s.buf.is_empty() {
            s.idle = true;
            s = shared.wake.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if !s.hurry {
            drop(s);
            std::thread::sleep(COALESCE);
            s = shared.lock();
        }
        s.hurry = false;
        std::mem::swap(&mut s.buf, &mut spare);
        let upto = s.appended;
        drop(s);
        // A failed write (stderr closed) loses these lines and no others.
        let _ = out.write_all(&spare).and_then(|()| out.flush());
        spare.clear();
        if spare.capacity() > KEEP_CAPACITY {
            spare.shrink_to(KEEP_CAPACITY);
        }
        shared.lock().written = upto;
        shared.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::{Receiver, Sender, channel};

    /// Collects everything written.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A writer that reports each write, then blocks until released.
    struct Gated {
        wrote: Sender<Vec<u8>>,
        go: Receiver<()>,
    }

    impl Write for Gated {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.wrote.send(b.to_vec());
            let _ = self.go.recv();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn flush_returns_once_every_line_from_every_thread_is_written_in_order() {
        let sink = Sink::default();
        let q = Queue::start("test-log", Box::new(sink.clone()), 1 << 20);
        q.flush(); // nothing queued: returns at once
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        q.push(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        q.flush();
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let t: usize = t.parse().unwrap();
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[t],
                "thread {t} out of order"
            );
            next[t] += 1;
        }
        assert_eq!(next, [1000; 4]);
        assert_eq!(q.dropped(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts_new_lines_and_keeps_the_queued_ones() {
        let (wrote, writes) = channel();
        let (release, go) = channel();
        let q = Queue::start("test-log", Box::new(Gated { wrote, go }), 100);
        q.push(b"first\n");
        // The writer now holds "first" and blocks in write: the buffer is empty.
        assert_eq!(writes.recv().unwrap(), b"first\n");
        for i in 0..15 {
            q.push(format!("line {i:03}\n").as_bytes()); // 9 bytes each
        }
        // 11 lines (99 bytes) fit; 4 more would pass 100 bytes.
        assert_eq!(q.dropped(), 4);
        q.push(b"x\n"); // 2 bytes: 101 > 100, dropped as well
        assert_eq!(q.dropped(), 5);
        for _ in 0..4 {
            release.send(()).unwrap();
        }
        q.flush();
        let rest: Vec<u8> = writes.try_iter().flatten().collect();
        let expected: String = (0..11).map(|i| format!("line {i:03}\n")).collect();
        assert_eq!(String::from_utf8(rest).unwrap(), expected);
    }
}
