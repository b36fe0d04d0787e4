//! Stopping on SIGINT (Ctrl-C) or SIGTERM (docker stop, Kubernetes).

/// Completes when the process is asked to stop. Services `select!` on it, then drain.
pub async fn signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
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

    /// Requests a stop when SIGINT or SIGTERM arrives.
    pub fn on_signal(&self) {
        let stop = self.clone();
        tokio::spawn(async move {
            signal().await;
            stop.request();
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
}
