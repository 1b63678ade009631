//! When a job is asked to stop. No job reads an OS signal: the program
//! running it passes its requests in (the `evol` binary: Ctrl-C and
//! SIGTERM).

use std::future::Future;
use std::pin::Pin;

use futures::{Stream, StreamExt};

/// Requests to stop a job. At the first, the job sends nothing new and
/// gives the calls in flight a grace period to finish and be committed; at
/// the second, it stops waiting for them. Either way it then writes its
/// files and ends as interrupted.
pub struct Shutdown {
    requests: Pin<Box<dyn Stream<Item = ()> + Send>>,
}

impl Shutdown {
    /// A job that runs to its end.
    pub fn never() -> Shutdown {
        Shutdown::requests(futures::stream::pending())
    }

    /// One request, when `future` resolves.
    pub fn on(future: impl Future<Output = ()> + Send + 'static) -> Shutdown {
        Shutdown::requests(futures::stream::once(future))
    }

    /// Every item of `stream` is a request (say, each Ctrl-C).
    pub fn requests(stream: impl Stream<Item = ()> + Send + 'static) -> Shutdown {
        Shutdown { requests: Box::pin(stream) }
    }

    /// Resolves at the next request; never once the requests have ended.
    pub async fn requested(&mut self) {
        if self.requests.next().await.is_none() {
            std::future::pending::<()>().await;
        }
    }
}

impl Default for Shutdown {
    fn default() -> Shutdown {
        Shutdown::never()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_future_is_one_request_and_then_none() {
        let mut shutdown = Shutdown::on(async {});
        shutdown.requested().await;
        let second = tokio::time::timeout(std::time::Duration::from_millis(20), shutdown.requested()).await;
        assert!(second.is_err(), "a single future asks once");
    }

    #[tokio::test]
    async fn each_item_of_a_stream_is_a_request() {
        let mut shutdown = Shutdown::requests(futures::stream::iter([(), ()]));
        shutdown.requested().await;
        shutdown.requested().await;
        let never = tokio::time::timeout(std::time::Duration::from_millis(20), Shutdown::never().requested()).await;
        assert!(never.is_err());
    }
}
