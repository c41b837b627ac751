//! Idle keep-alive connections to one peer, with the read buffer each one owns.
//!
//! Owns reuse policy only: most recently used first (warm connections, and the oldest ones age
//! out), bounded size, idle expiry. It never reads or writes on a connection. A std `Mutex` is
//! right here: the critical section is a push or a pop, never held across an `.await`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use pingora::protocols::Stream;

/// A connection with the buffer its reads go through (kept, so reuse costs no allocation).
pub struct Conn {
    pub stream: Stream,
    pub buf: BytesMut,
}

impl Conn {
    pub fn new(stream: Stream) -> Self {
        Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
        }
    }
}

pub struct IdlePool {
    idle: Mutex<Vec<(Conn, Instant)>>,
    capacity: usize,
    idle_timeout: Duration,
}

impl IdlePool {
    pub fn new(capacity: usize, idle_timeout: Duration) -> Self {
        IdlePool {
            idle: Mutex::new(Vec::with_capacity(capacity.min(1024))),
            capacity,
            idle_timeout,
        }
    }

    /// The most recently released connection that has not idled out by `now`, if any.
    pub fn take(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let (conn, since) = idle.pop()?;
        // Saturating: with several threads, a connection may be released after `now` was read.
        if now.saturating_duration_since(since) < self.idle_timeout {
            return Some(conn);
        }
        // Everything below the top is older still: drop the lot.
        idle.clear();
        None
    }

    /// Keeps `conn` for reuse, unless the pool is full (then it is closed by dropping).
    pub fn release(&self, conn: Conn) {
        debug_assert!(
            conn.buf.is_empty(),
            "a reusable connection has no bytes left over"
        );
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.capacity {
            idle.push((conn, Instant::now()));
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(rt: &tokio::runtime::Runtime, listener: &std::net::TcpListener) -> Conn {
        let addr = listener.local_addr().unwrap();
        let tcp = rt.block_on(tokio::net::TcpStream::connect(addr)).unwrap();
        Conn::new(Box::new(pingora::protocols::l4::stream::Stream::from(tcp)))
    }

    #[test]
    fn lifo_bounded_and_expiring() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = IdlePool::new(2, Duration::from_millis(200));
        assert!(pool.take(Instant::now()).is_none());
        for _ in 0..3 {
            pool.release(conn(&rt, &listener));
        }
        assert_eq!(pool.len(), 2, "bounded by capacity");
        assert!(pool.take(Instant::now()).is_some());
        assert_eq!(pool.len(), 1);
        let later = Instant::now() + Duration::from_millis(250);
        assert!(pool.take(later).is_none(), "idled out");
        assert_eq!(pool.len(), 0);
    }
}
