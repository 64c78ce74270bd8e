//! Local fake servers of the external APIs (feature `fakes`): each listens on 127.0.0.1, speaks the real wire
//! format, and answers each request as its test scripts it. The adapter tests, the sandbox and the benchmarks
//! all use these.
//!
//! A script is a queue of outcomes taken one per request, in order; with the queue empty the fake answers with
//! its default outcome (usually success), so a benchmark scripts nothing.
//!
//! - [`kling`]: Kling's official video API, with its JWT check, task progression and result files.
//! - [`gemini`]: Google's Gemini API `generateContent`.
//! - [`yookassa`]: YooKassa API v3, payments and refunds.
//! - [`telegram`]: the Telegram Bot API: messages, keyboards, files, long polling, Stars, and update bodies.

pub mod gemini;
pub mod kling;
pub mod telegram;
pub mod yookassa;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A queue of scripted outcomes shared between a test and its fake server.
#[derive(Debug)]
pub struct Script<O> {
    queue: Mutex<VecDeque<O>>,
    default: Mutex<O>,
}

impl<O: Clone> Script<O> {
    /// A script answering `default` once the queue is empty.
    pub fn new(default: O) -> Arc<Script<O>> {
        Arc::new(Script { queue: Mutex::new(VecDeque::new()), default: Mutex::new(default) })
    }

    /// Queues `outcome` for the next request not yet scripted.
    pub fn push(&self, outcome: O) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).push_back(outcome);
    }

    /// Replaces the outcome used once the queue is empty.
    pub fn set_default(&self, outcome: O) {
        *self.default.lock().unwrap_or_else(PoisonError::into_inner) = outcome;
    }

    /// The outcome for the next request.
    pub fn next(&self) -> O {
        let queued = self.queue.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
        queued.unwrap_or_else(|| self.default.lock().unwrap_or_else(PoisonError::into_inner).clone())
    }

    /// Drops every queued outcome: the next requests get the default.
    pub fn clear(&self) {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }

    /// Outcomes queued and not yet taken.
    pub fn pending(&self) -> usize {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A running fake: its address, and a stop on drop.
#[derive(Debug)]
pub struct FakeServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FakeServer {
    /// Serves `app` on 127.0.0.1 on a free port, until the returned server is dropped or stopped.
    ///
    /// # Errors
    /// The bind's I/O error.
    pub async fn start(app: axum::Router) -> std::io::Result<FakeServer> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("fake server on {addr} ended: {e}");
            }
        });
        Ok(FakeServer { addr, stop: Some(stop), task: Some(task) })
    }

    /// Where it listens.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, the base URL to give an adapter.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits for the server task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
