//! Stopping on SIGINT (Ctrl-C) or SIGTERM (docker stop, Kubernetes).

/// Waits for SIGINT or SIGTERM, with the handlers already installed when this is built.
///
/// Built synchronously rather than inside the task that waits: a signal arriving between a
/// `tokio::spawn` and the task's first poll would otherwise still meet the default action, and a
/// SIGTERM sent just after start (a rolling restart, `docker compose stop`) would kill the
/// process with status 143 instead of draining it.
#[cfg(unix)]
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    /// Must be called inside a Tokio runtime; fails only if the handlers cannot be registered.
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn received(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = self.terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    }
}

/// A stop request, shared by every task and thread of a service (after mini-redis' `Shutdown`).
///
/// Async tasks `select!` on [`Stop::requested`], which completes once a stop is requested, so
/// nobody polls a flag on a timer; blocking loops (the Kafka polling thread, a producer's send
/// loop) check [`Stop::is_requested`] per iteration and pause with [`Stop::wait_timeout`], which
/// returns early when a stop is requested, so a pause never delays shutdown.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    inner: std::sync::Arc<StopInner>,
}

#[derive(Debug, Default)]
struct StopInner {
    requested: std::sync::atomic::AtomicBool,
    /// Whether [`Stop::on_signal`] has run: a second call would only add a second waiter.
    on_signal: std::sync::atomic::AtomicBool,
    lock: std::sync::Mutex<()>,
    wakeup: std::sync::Condvar,
    notify: tokio::sync::Notify,
}

impl Stop {
    pub fn new() -> Self {
        Stop::default()
    }

    pub fn request(&self) {
        self.inner
            .requested
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _guard = self.inner.lock.lock();
        self.inner.wakeup.notify_all();
        self.inner.notify.notify_waiters();
    }

    /// Completes once a stop is requested (at once if it already was).
    pub async fn requested(&self) {
        loop {
            // Registered before the check, so a request between the two is not missed.
            let notified = self.inner.notify.notified();
            if self.is_requested() {
                return;
            }
            notified.await;
        }
    }

    pub fn is_requested(&self) -> bool {
        self.inner
            .requested
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits `duration` or until a stop is requested; returns whether one was.
    pub fn wait_timeout(&self, duration: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + duration;
        let mut guard = self.inner.lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.is_requested() {
            let now = std::time::Instant::now();
            if now >= deadline {
                break;
            }
            guard = match self.inner.wakeup.wait_timeout(guard, deadline - now) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        self.is_requested()
    }

    /// Requests a stop when SIGINT or SIGTERM arrives; the handlers are in place on return.
    /// Must be called inside a Tokio runtime.
    /// Calling it again is harmless: the handlers are installed once per `Stop`.
    pub fn on_signal(&self) {
        if self
            .inner
            .on_signal
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        let stop = self.clone();
        #[cfg(unix)]
        match Signals::install() {
            Ok(signals) => {
                tokio::spawn(async move {
                    signals.received().await;
                    stop.request();
                });
            }
            // Only when the runtime cannot register handlers at all; the process then keeps the
            // default action, which still ends it, so say so rather than fail the start.
            Err(e) => {
                tracing::warn!(error = %e, "cannot handle SIGINT/SIGTERM; they will end the process without draining")
            }
        }
        #[cfg(not(unix))]
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("Ctrl-C received, shutting down");
                stop.request();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn requested_completes_on_request() {
        let stop = Stop::new();
        let waiter = tokio::spawn({
            let stop = stop.clone();
            async move { stop.requested().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        stop.request();
        tokio::time::timeout(Duration::from_secs(30), waiter)
            .await
            .expect("woke on request")
            .unwrap();
        // And at once when it already was.
        tokio::time::timeout(Duration::from_secs(30), stop.requested())
            .await
            .expect("already requested");
    }

    #[test]
    fn wait_returns_early_on_request() {
        let stop = Stop::new();
        assert!(!stop.wait_timeout(Duration::from_millis(1)));
        let other = stop.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            (
                other.wait_timeout(Duration::from_secs(60)),
                started.elapsed(),
            )
        });
        stop.request();
        let (requested, waited) = waiter.join().unwrap();
        assert!(requested);
        assert!(
            waited < Duration::from_secs(30),
            "woke on request, not at the timeout"
        );
    }

    /// Sent to our own process right after `on_signal` returns, the single-threaded test runtime
    /// blocked meanwhile: had the handler been installed by the spawned task, which has not run
    /// yet, the default action would end the test binary.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_sigterm_right_after_on_signal_requests_a_stop() {
        let stop = Stop::new();
        stop.on_signal();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .expect("kill runs");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(30), stop.requested())
            .await
            .expect("the SIGTERM requested a stop");
    }
}
