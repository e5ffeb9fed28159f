//! Reading an HTTP/1.1 answer off a raw TCP stream, for the tests that withhold a body.

use std::time::Duration;

/// Where `needle` first stands in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A header's value, as a number, from an HTTP/1.1 head.
pub fn header(head: &[u8], name: &str) -> Option<usize> {
    String::from_utf8_lossy(head).lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().parse().ok())
            .flatten()
    })
}

/// Sends `head` and then `body` on a new connection to `addr` and keeps the connection open
/// without sending more, reading the answer for up to 10 s: whether a whole answer (head, and
/// as much body as its content-length says) came in that time, and the bytes read.
pub async fn answer_while_withholding(addr: &str, head: String, body: Vec<u8>) -> (bool, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    // The writer may block if nobody reads; it keeps the connection open (the tail never
    // comes) until the answer has been read.
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(head.as_bytes()).await;
        let _ = wr.write_all(&body).await;
        let _ = wr.flush().await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(wr);
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = rd.read(&mut buf).await.expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            // The problem document is small and sent with a content-length.
            if let Some(at) = find(&got, b"\r\n\r\n") {
                let len = header(&got[..at], "content-length").unwrap_or(0);
                if got.len() >= at + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    writer.abort();
    (answered.is_ok(), got)
}
