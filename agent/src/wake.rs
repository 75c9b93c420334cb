//! Waking a sleeping thread from anywhere, a signal handler included: a
//! socket pair the sleeper polls. Threads that would otherwise look at a
//! stop flag several times a second sleep until there is something to do,
//! which is what keeps an idle agent's wake-ups (and their cold caches) few.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

/// The sleeping side. [`Waker`]s made from it wake it.
pub struct WakeOnDemand {
    rx: UnixStream,
    tx: Arc<UnixStream>,
    /// Signal handlers that write to `tx`, removed when this is dropped.
    signals: Vec<signal_hook::SigId>,
}

/// Wakes its [`WakeOnDemand`]; cheap to clone and to call from any thread.
#[derive(Clone, Debug)]
pub struct Waker(Arc<UnixStream>);

impl WakeOnDemand {
    pub fn new() -> std::io::Result<WakeOnDemand> {
        let (rx, tx) = UnixStream::pair()?;
        rx.set_nonblocking(true)?;
        tx.set_nonblocking(true)?;
        Ok(WakeOnDemand {
            rx,
            tx: Arc::new(tx),
            signals: Vec::new(),
        })
    }

    pub fn waker(&self) -> Waker {
        Waker(Arc::clone(&self.tx))
    }

    /// Makes `signal` wake the sleeper (the handler only writes a byte)
    /// for as long as this lives.
    pub fn on_signal(&mut self, signal: i32) -> std::io::Result<()> {
        let tx = self.tx.try_clone()?;
        self.signals
            .push(signal_hook::low_level::pipe::register(signal, tx)?);
        Ok(())
    }

    /// Sleeps until woken or `timeout` passes (`None`: no timeout), also
    /// when `also` (another descriptor) becomes readable. Wake-ups that came
    /// while nobody slept are consumed here: they end this wait at once.
    pub fn wait(&self, also: Option<&impl AsRawFd>, timeout: Option<Duration>) {
        let mut fds = [
            libc::pollfd {
                fd: self.rx.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: also.map_or(-1, AsRawFd::as_raw_fd),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.map_or(-1, |t| t.as_millis().min(i32::MAX as u128) as libc::c_int);
        // SAFETY: two valid pollfds for the duration of the call (a negative
        // fd is ignored by poll).
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if n < 0 {
            // Interrupted by a signal: the caller looks at what changed.
            // Anything else: do not spin on it.
            if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 64];
            while matches!((&self.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}

impl Drop for WakeOnDemand {
    fn drop(&mut self) {
        for id in self.signals.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

impl Waker {
    pub fn wake(&self) {
        // A full socket buffer already holds a wake-up: nothing is lost.
        match (&*self.0).write(b"w") {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => tracing::debug!(error = %e, "wake-up write failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wake_from_another_thread_ends_the_wait() {
        let w = WakeOnDemand::new().unwrap();
        let waker = w.waker();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake();
        });
        let started = Instant::now();
        w.wait(None::<&UnixStream>, Some(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(20));
        t.join().unwrap();
    }

    #[test]
    fn an_early_wake_is_kept_and_consumed_once() {
        let w = WakeOnDemand::new().unwrap();
        for _ in 0..3 {
            w.waker().wake();
        }
        let started = Instant::now();
        w.wait(None::<&UnixStream>, Some(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(20));
        // All three were consumed: the next wait times out.
        let started = Instant::now();
        w.wait(None::<&UnixStream>, Some(Duration::from_millis(100)));
        assert!(started.elapsed() >= Duration::from_millis(90));
    }

    #[test]
    fn a_readable_descriptor_ends_the_wait() {
        let w = WakeOnDemand::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"x").unwrap();
        let started = Instant::now();
        w.wait(Some(&a), Some(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_signal_wakes_the_sleeper() {
        let mut w = WakeOnDemand::new().unwrap();
        w.on_signal(libc::SIGUSR2).unwrap();
        let t = std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(50));
            // SAFETY: raising a signal that has a handler installed above.
            unsafe { libc::raise(libc::SIGUSR2) };
        });
        let started = Instant::now();
        w.wait(None::<&UnixStream>, Some(Duration::from_secs(30)));
        assert!(started.elapsed() < Duration::from_secs(20));
        t.join().unwrap();
    }
}
