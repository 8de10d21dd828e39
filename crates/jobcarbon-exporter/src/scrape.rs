//! `/metrics` served from a snapshot, streamed: the handler takes the view's snapshot under the
//! read lock (a few `Arc` clones and the small status maps), releases it, and a blocking task
//! encodes the snapshot into chunks of about [`CHUNK_BYTES`] sent through a bounded channel
//! to the response body. Booking is never blocked by a scrape, and a scrape holds at most
//! [`CHUNKS_IN_FLIGHT`] + 1 chunks of the body in memory, not the whole body.

use crate::metrics::{Format, encode_snapshot};
use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use jobcarbon_ledger::view::LedgerView;
use std::fmt;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Size at which a chunk of the body is handed to the connection.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks encoded ahead of the connection (the encoder waits when the client reads slowly).
pub const CHUNKS_IN_FLIGHT: usize = 4;

type Chunk = Result<Bytes, std::io::Error>;

/// Encoder output cut into chunks and sent to the response body.
struct ChunkWriter {
    tx: mpsc::Sender<Chunk>,
    buf: String,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<Chunk>) -> Self {
        Self {
            tx,
            buf: String::with_capacity(CHUNK_BYTES + 4096),
        }
    }

    /// Hands the buffer to the body; an error when the client has gone (encoding stops).
    fn send(&mut self) -> fmt::Result {
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK_BYTES + 4096));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| fmt::Error)
    }

    /// The rest of the body, or the error that ends it (the client sees a cut body; without
    /// OpenMetrics' `# EOF` Prometheus rejects the scrape rather than take part of it).
    fn finish(mut self, result: fmt::Result) {
        let ended = result.and_then(|()| match self.buf.is_empty() {
            true => Ok(()),
            false => self.send(),
        });
        if ended.is_err() {
            let failed = std::io::Error::other("/metrics encoding failed");
            let _ = self.tx.blocking_send(Err(failed));
        }
    }
}

impl fmt::Write for ChunkWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.buf.push_str(s);
        if self.buf.len() >= CHUNK_BYTES {
            self.send()?;
        }
        Ok(())
    }
}

/// The `/metrics` response for `view` in `format`: the exposition streamed in chunks, with the
/// same bytes and content type as [`crate::encode_metrics`]. A failure before the first chunk
/// is a 500.
pub async fn metrics_response(view: LedgerView, format: Format) -> Response {
    let (tx, rx) = mpsc::channel::<Chunk>(CHUNKS_IN_FLIGHT);
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx);
        let result = encode_snapshot(view, format, &mut out);
        out.finish(result);
    });
    let mut rx = ReceiverStream::new(rx);
    let first = match rx.next().await {
        Some(Ok(chunk)) => chunk,
        Some(Err(_)) | None => return crate::unavailable("encoding failed"),
    };
    let body = Body::from_stream(tokio_stream::once(Ok(first)).chain(rx));
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}
