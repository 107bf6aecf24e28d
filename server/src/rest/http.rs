//! The connections under the REST and gRPC APIs: HTTP/1.1 and HTTP/2 (h2c, gRPC) on one
//! port, told apart by the first bytes, with the limits `axum::serve` has no setting for.
//! A client must send its request headers within `brook.http.header.read.timeout.ms`
//! (slow or half-sent requests, and kept-alive HTTP/1 connections that never send the next
//! one, are closed); a connection with no bytes either way for
//! `ksql.idle.connection.timeout.seconds` is closed (a half-open peer, a stalled stream);
//! at most `brook.http.max.connections` are served at once, one more is answered 429;
//! HTTP/2 allows `brook.http2.max.concurrent.streams` streams per connection.
//!
//! With TLS (`--tls-cert`), every connection must open with a TLS handshake, done within
//! the header read timeout; HTTP/2 or HTTP/1.1 is chosen by ALPN. A plain-HTTP request on
//! the TLS port is answered 400 in plain text, saying to use `https://`. Each request
//! carries its peer's address (`ConnectInfo`) for the gate in front of the handlers.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tracing::{debug, warn};

use super::limits::{HttpLimits, Slots, MAX_CONNECTIONS};

/// What `/metrics` shows of the connections.
#[derive(Debug, Default)]
pub struct ConnectionStats {
    pub accepted: AtomicU64,
    /// Answered 429: `brook.http.max.connections` were open.
    pub refused: AtomicU64,
    /// Closed for not sending their request headers in time.
    pub header_timeouts: AtomicU64,
    /// Closed after `ksql.idle.connection.timeout.seconds` without a byte either way.
    pub idle_closed: AtomicU64,
}

/// Serves `app` on `listener` (over TLS with `tls`) until `stop` turns true, then lets the
/// open connections finish their requests and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stats: Arc<ConnectionStats>,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Slots::new(limits.max_connections);
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, or a connection reset before it was accepted:
                // retrying at once would spin.
                warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without TCP_NODELAY a response written in parts (headers, then streamed rows)
        // waits on the client's delayed ACK: a pull query took ~40 ms instead of ~2 ms.
        if let Err(e) = tcp.set_nodelay(true) {
            debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        let Some(permit) = slots.try_take() else {
            stats.refused.fetch_add(1, Ordering::Relaxed);
            // A TLS client would read a plain answer as garbage, and a handshake to answer
            // it would spend what the limit saves: the connection is just closed.
            if tls.is_none() {
                tokio::spawn(refuse(tcp, slots.limit()));
            }
            continue;
        };
        let conn = Connection {
            app: app.clone(),
            limits: limits.clone(),
            stats: Arc::clone(&stats),
            tls: tls.clone(),
            peer,
        };
        tokio::spawn(conn.run(tcp, permit, stop.clone()));
    }
    drop(listener);
    slots.all_free().await;
}

/// One more connection than allowed: a 429 with ksqlDB's error body, then closed.
async fn refuse(tcp: TcpStream, limit: usize) {
    let message = format!(
        "Too many connections: the server serves at most {limit} at once \
         ({MAX_CONNECTIONS}); retry later"
    );
    let status = "429 Too Many Requests";
    answer_and_close(tcp, status, super::TOO_MANY_REQUESTS, &message).await;
}

/// A plain-HTTP request on the TLS port: told, in plain text, to use TLS.
async fn plaintext_on_tls(tcp: TcpStream) {
    let message = "This port serves HTTPS: use https:// (and grpcs:// for gRPC)";
    answer_and_close(tcp, "400 Bad Request", super::BAD_REQUEST, message).await;
}

/// Answers an HTTP/1.1 request with ksqlDB's error body, then closes the connection.
async fn answer_and_close(mut tcp: TcpStream, status: &str, code: u32, message: &str) {
    let body = serde_json::json!({
        "@type": "generic_error",
        "error_code": code,
        "message": message,
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    // Bounded in time: a client that does not read must not keep the task.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        tcp.write_all(response.as_bytes()).await?;
        tcp.shutdown().await?;
        // Closing with its request unread would reset the connection, and the client
        // could lose the answer: read what it sent first.
        let mut sink = [0u8; 4096];
        while tcp.read(&mut sink).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}

struct Connection {
    app: Router,
    limits: HttpLimits,
    stats: Arc<ConnectionStats>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    peer: SocketAddr,
}

/// `fut`, unless `stop` turns true first (then `None`).
async fn unless_stopped<F: std::future::Future>(
    fut: F,
    stop: &mut watch::Receiver<bool>,
) -> Option<F::Output> {
    tokio::select! {
        out = fut => Some(out),
        _ = stop.wait_for(|s| *s) => None,
    }
}

impl Connection {
    async fn run(
        self,
        tcp: TcpStream,
        permit: OwnedSemaphorePermit,
        mut stop: watch::Receiver<bool>,
    ) {
        // hyper's protocol detection waits for the first bytes with no deadline of its own.
        let first = tokio::time::timeout(self.limits.header_read_timeout, sniff(&tcp));
        // Stopping: a connection that has not asked anything yet is closed at once.
        let Some(first) = unless_stopped(first, &mut stop).await else {
            return;
        };
        match first {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return debug!("connection failed before its first request: {e}"),
            Err(_) => return self.header_timeout(),
        }
        let Some(acceptor) = self.tls.clone() else {
            let io = Tracked::new(tcp, permit);
            let activity = io.activity();
            return self.serve(io, activity, stop).await;
        };
        match tls_record(&tcp).await {
            FirstByte::Tls => {}
            FirstByte::Http => return plaintext_on_tls(tcp).await,
            FirstByte::Other => return debug!("connection closed: neither TLS nor HTTP"),
        }
        let io = Tracked::new(tcp, permit);
        let activity = io.activity();
        // The handshake and the first bytes inside it are bounded as request headers are.
        let wait = self.limits.header_read_timeout;
        let opened = tokio::time::timeout(wait, async {
            let mut tls = acceptor.accept(io).await?;
            let first = first_bytes(&mut tls).await?;
            Ok::<_, io::Error>(Prefixed::new(first, tls))
        });
        match unless_stopped(opened, &mut stop).await {
            None => {}
            Some(Ok(Ok(stream))) => self.serve(stream, activity, stop).await,
            Some(Ok(Err(e))) => debug!(peer = %self.peer, "TLS handshake failed: {e}"),
            Some(Err(_)) => self.header_timeout(),
        }
    }

    fn header_timeout(&self) {
        self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
        debug!("connection closed: no request within the header read timeout");
    }

    /// Serves HTTP/1.1 or HTTP/2 on `io` until the connection ends, is idle too long, or
    /// the server stops (then after its open requests).
    async fn serve<S>(self, io: S, activity: Activity, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.http2_max_concurrent_streams)
            // HTTP/2 WebSockets (RFC 8441), as `axum::serve` enables them.
            .enable_connect_protocol();
        let service = WithPeer {
            app: self.app,
            peer: self.peer,
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let idle = self.limits.idle_timeout;
        let mut draining = false;
        loop {
            let check = activity.last() + idle;
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        if is_header_timeout(&*e) {
                            self.stats.header_timeouts.fetch_add(1, Ordering::Relaxed);
                        }
                        debug!("connection ended: {e}");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s), if !draining => {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                _ = tokio::time::sleep_until(check.into()) => {
                    if activity.last() + idle <= Instant::now() {
                        self.stats.idle_closed.fetch_add(1, Ordering::Relaxed);
                        return debug!("connection closed: idle for {idle:?}");
                    }
                }
            }
        }
    }
}

/// The router as hyper's service, each request carrying its peer's address (axum's
/// `ConnectInfo`).
#[derive(Clone)]
struct WithPeer {
    app: Router,
    peer: SocketAddr,
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for WithPeer {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = axum::routing::future::RouteFuture<std::convert::Infallible>;

    fn call(&self, mut req: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        tower_service::Service::call(&mut self.app.clone(), req)
    }
}

/// What a connection on the TLS port opened with.
enum FirstByte {
    /// A TLS handshake record.
    Tls,
    /// An HTTP method's first letter: a client that forgot `https://`.
    Http,
    Other,
}

async fn tls_record(tcp: &TcpStream) -> FirstByte {
    let mut b = [0u8; 1];
    match tcp.peek(&mut b).await {
        // TLS's handshake content type (RFC 8446, 5.1).
        Ok(1) if b[0] == 0x16 => FirstByte::Tls,
        Ok(1) if b[0].is_ascii_uppercase() => FirstByte::Http,
        _ => FirstByte::Other,
    }
}

/// The first bytes inside TLS: enough to tell HTTP/1 from HTTP/2's preface (which hyper
/// would otherwise wait for with no deadline), or all there is before the peer closed.
async fn first_bytes<S: AsyncRead + Unpin>(s: &mut S) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let mut chunk = [0u8; 1024];
    loop {
        let n = s.read(&mut chunk).await?;
        buf.extend_from_slice(&chunk[..n]);
        let prefix = buf.len().min(H2_PREFACE.len());
        if n == 0 || buf.len() >= H2_PREFACE.len() || buf[..prefix] != H2_PREFACE[..prefix] {
            return Ok(buf);
        }
    }
}

fn is_header_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        cause = c.source();
    }
    false
}

/// HTTP/2's connection preface; hyper reads up to its length to choose the protocol.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Returns once the first bytes tell HTTP/1 from HTTP/2 (or the peer closed).
async fn sniff(tcp: &TcpStream) -> io::Result<()> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 || n == buf.len() || buf[..n] != H2_PREFACE[..n] {
            return Ok(());
        }
        // Part of the preface: `peek` would return at once with the same bytes.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// When a connection last moved a byte, in milliseconds since it was accepted.
#[derive(Clone)]
struct Activity {
    start: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// The connection's socket, noting every byte moved; it holds the connection's slot, which
/// goes back when the socket closes (after a WebSocket upgrade too).
struct Tracked {
    tcp: TcpStream,
    activity: Activity,
    _slot: OwnedSemaphorePermit,
}

impl Tracked {
    fn new(tcp: TcpStream, slot: OwnedSemaphorePermit) -> Self {
        Tracked {
            tcp,
            activity: Activity {
                start: Instant::now(),
                last_ms: Arc::default(),
            },
            _slot: slot,
        }
    }

    fn activity(&self) -> Activity {
        self.activity.clone()
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A stream whose first bytes were read already: they are read again first.
struct Prefixed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            at: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.at < this.prefix.len() {
            let n = (this.prefix.len() - this.at).min(buf.remaining());
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
