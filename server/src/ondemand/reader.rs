//! One client's view of a download. A reader that is caught up with the download takes each
//! chunk from memory as it is received (the broadcast of `receive.rs`); a reader that is behind
//! (a late joiner, a Range reader, a slow client, one that lagged past the broadcast's bound)
//! reads the temp file, and goes back to the broadcast once it has caught up.
//!
//! The blob's last byte is sent only once the download is verified, so no client ever gets a
//! complete body with a wrong digest; a failed download ends the stream with an error.

use std::io::SeekFrom;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{broadcast, watch};

use super::receive::Chunk;
use super::{FetchError, Phase, Progress};

/// The most read from the temp file at once by a reader that is behind.
const READ_CHUNK: usize = 256 * 1024;

pub struct Reader {
    pub(super) file: tokio::fs::File,
    pub(super) progress: watch::Receiver<Progress>,
    /// Weak: once the download is over, its last chunks are freed even while readers remain.
    pub(super) live: broadcast::WeakSender<Chunk>,
    /// Subscribed when the reader joined, so the first chunks are not missed.
    pub(super) subscribed: Option<broadcast::Receiver<Chunk>>,
    pub size: Option<u64>,
    /// Counts the bytes sent to a client (not those relayed to another replica).
    pub(super) served: Option<prometheus::IntCounter>,
}

impl Reader {
    pub(super) fn served_to_clients(self, counter: &prometheus::IntCounter) -> Self {
        Reader { served: Some(counter.clone()), ..self }
    }

    /// Waits until the download is verified (or failed).
    pub async fn verdict(&mut self) -> Result<(), FetchError> {
        loop {
            match &self.progress.borrow_and_update().phase {
                Phase::Verified => return Ok(()),
                Phase::Failed(e) => return Err(e.clone()),
                Phase::Starting | Phase::Streaming => {}
            }
            if self.progress.changed().await.is_err() {
                return match &self.progress.borrow().phase {
                    Phase::Verified => Ok(()),
                    Phase::Failed(e) => Err(e.clone()),
                    _ => Err(FetchError::Io("the download stopped".into())),
                };
            }
        }
    }

    /// The bytes `[start, end)` as they arrive. The blob's final byte is sent only after the
    /// download is verified; a failed download ends the stream with an error.
    pub fn stream(mut self, start: u64, end: Option<u64>) -> impl Stream<Item = Result<Bytes, std::io::Error>> {
        let epoch = self.progress.borrow().epoch;
        let live = self.subscribed.take();
        let streaming = Streaming { r: self, pos: start, end, epoch, sent_any: false, file_at: None, live, chunk: None, stash: None, over: false };
        futures_util::stream::unfold(streaming, |mut s| async move {
            if s.over {
                return None;
            }
            match s.next().await {
                Some(Ok(bytes)) => Some((Ok(bytes), s)),
                Some(Err(e)) => {
                    s.over = true;
                    Some((Err(e), s))
                }
                None => None,
            }
        })
    }
}

struct Streaming {
    r: Reader,
    pos: u64,
    end: Option<u64>,
    /// The download's attempt from 0 whose bytes this reader sends.
    epoch: u32,
    sent_any: bool,
    /// Where the file handle is, when known (reading from memory moves `pos` but not the file).
    file_at: Option<u64>,
    /// Subscribed to the chunks in flight while caught up.
    live: Option<broadcast::Receiver<Chunk>>,
    /// The chunk in hand: its offset and bytes.
    chunk: Option<(u64, Bytes)>,
    /// A chunk of another attempt met while appending, handled before any other.
    stash: Option<Chunk>,
    over: bool,
}

impl Streaming {
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            let p = self.r.progress.borrow_and_update().clone();
            if p.epoch > self.epoch {
                if let Err(e) = self.adopt(p.epoch) {
                    return Some(Err(e));
                }
            }
            // The writer has not taken in the restart yet: what it reports is the old attempt's.
            let written = if p.epoch == self.epoch { p.written } else { 0 };
            let verified = matches!(p.phase, Phase::Verified);
            let end = self.end.or(p.size);
            // A range ends when its bytes are sent, except at the blob's end: that waits for
            // the verdict (an empty blob has no last byte to hold back).
            let awaiting_verdict = p.size.is_some_and(|s| self.pos >= s) && !verified;
            if end.is_some_and(|e| self.pos >= e) && !awaiting_verdict {
                return None;
            }
            let sendable = match &p.phase {
                Phase::Failed(e) => return Some(Err(std::io::Error::other(e.to_string()))),
                Phase::Verified => written,
                // Hold back the last byte until the digest is checked.
                _ => match p.size {
                    Some(s) => s.saturating_sub(1),
                    None => written.saturating_sub(1),
                },
            };
            let limit = end.map_or(sendable, |e| sendable.min(e));
            if p.size.is_none() {
                // With no size, the last byte is known only from the file: no chunks from memory.
                self.live = None;
                self.chunk = None;
            }
            if self.pos < limit {
                if let Some(bytes) = self.take_from_chunk(limit) {
                    let first = self.sent(bytes);
                    return Some(Ok(self.more_from_memory(first, limit)));
                }
                let next_chunk = self.chunk.as_ref().map_or(u64::MAX, |(offset, _)| *offset);
                let on_disk = written.min(limit).min(next_chunk);
                if self.pos < on_disk {
                    match self.read_file(on_disk).await {
                        Ok(Some(bytes)) => return Some(Ok(self.sent(bytes))),
                        // The download restarted under the read: look again.
                        Ok(None) => continue,
                        Err(e) => return Some(Err(e)),
                    }
                }
                // Caught up with the file: take the next chunks from memory. Subscribing comes
                // before looking at the progress again, so no chunk falls in between.
                if self.live.is_none() && self.chunk.is_none() && p.size.is_some() {
                    if let Some(live) = self.r.live.upgrade() {
                        self.live = Some(live.subscribe());
                        continue;
                    }
                }
            } else if verified {
                // Verified and nothing more to send: the whole range has been sent.
                return None;
            }
            if let Some(c) = self.stash.take() {
                if let Err(e) = self.on_chunk(c) {
                    return Some(Err(e));
                }
                continue;
            }
            let wants_chunk = self.live.is_some() && self.chunk.is_none();
            tokio::select! {
                received = recv(&mut self.live), if wants_chunk => match received {
                    Ok(c) => if let Err(e) = self.on_chunk(c) {
                        return Some(Err(e));
                    },
                    // Too far behind for memory, or the download is over: the file has it all.
                    Err(_) => self.live = None,
                },
                changed = self.r.progress.changed() => {
                    if changed.is_err() && !matches!(self.r.progress.borrow().phase, Phase::Verified | Phase::Failed(_)) {
                        return Some(Err(std::io::Error::other("the download stopped")));
                    }
                }
            }
        }
    }

    /// A restart from 0 of the download: a reader that sent nothing yet goes on with it; one
    /// that did is cut, since its bytes came from the attempt the digest check no longer covers.
    fn adopt(&mut self, epoch: u32) -> Result<(), std::io::Error> {
        if self.sent_any {
            return Err(std::io::Error::other("the upstream restarted the blob's download after bytes of it were sent: try again"));
        }
        self.epoch = epoch;
        self.chunk = None;
        self.file_at = None;
        Ok(())
    }

    fn on_chunk(&mut self, c: Chunk) -> Result<(), std::io::Error> {
        if c.epoch > self.epoch {
            self.adopt(c.epoch)?;
        }
        if c.epoch == self.epoch {
            self.keep(c);
        }
        Ok(())
    }

    /// `first`, with the chunks already waiting that follow it appended, up to `READ_CHUNK`: one
    /// send to the client for many reads of the upstream's socket.
    fn more_from_memory(&mut self, first: Bytes, limit: u64) -> Bytes {
        if first.len() >= READ_CHUNK || self.chunk.is_some() {
            return first;
        }
        let mut joined: Option<BytesMut> = None;
        while joined.as_ref().map_or(first.len(), |j| j.len()) < READ_CHUNK && self.pos < limit {
            let Some(live) = self.live.as_mut() else { break };
            let c = match live.try_recv() {
                Ok(c) => c,
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(_) => {
                    self.live = None;
                    break;
                }
            };
            if c.epoch != self.epoch {
                self.stash = Some(c);
                break;
            }
            self.keep(c);
            let Some(piece) = self.take_from_chunk(limit) else { break };
            let piece = self.sent(piece);
            joined.get_or_insert_with(|| {
                let mut j = BytesMut::with_capacity(READ_CHUNK + piece.len());
                j.extend_from_slice(&first);
                j
            })
            .extend_from_slice(&piece);
            if self.chunk.is_some() {
                break;
            }
        }
        joined.map_or(first, BytesMut::freeze)
    }

    fn keep(&mut self, c: Chunk) {
        if c.offset + c.bytes.len() as u64 > self.pos {
            self.chunk = Some((c.offset, c.bytes));
        }
    }

    /// The bytes at `pos` (up to `limit`) from the chunk in hand, if it holds them.
    fn take_from_chunk(&mut self, limit: u64) -> Option<Bytes> {
        let (offset, bytes) = self.chunk.as_ref()?;
        let chunk_end = offset + bytes.len() as u64;
        if chunk_end <= self.pos {
            self.chunk = None;
            return None;
        }
        if *offset > self.pos {
            return None;
        }
        let out = bytes.slice((self.pos - offset) as usize..(limit.min(chunk_end) - offset) as usize);
        if limit >= chunk_end {
            self.chunk = None;
        }
        Some(out)
    }

    /// The bytes at `pos` (up to `limit`) from the temp file; None when the download restarted
    /// meanwhile.
    async fn read_file(&mut self, limit: u64) -> Result<Option<Bytes>, std::io::Error> {
        if self.file_at != Some(self.pos) {
            self.r.file.seek(SeekFrom::Start(self.pos)).await?;
            self.file_at = Some(self.pos);
        }
        let mut buf = vec![0u8; ((limit - self.pos) as usize).min(READ_CHUNK)];
        let n = self.r.file.read(&mut buf).await;
        if self.r.progress.borrow().epoch != self.epoch {
            self.file_at = None;
            return Ok(None);
        }
        let n = n?;
        if n == 0 {
            return Err(std::io::Error::other("the download file is shorter than reported"));
        }
        buf.truncate(n);
        self.file_at = Some(self.pos + n as u64);
        Ok(Some(Bytes::from(buf)))
    }

    fn sent(&mut self, bytes: Bytes) -> Bytes {
        self.pos += bytes.len() as u64;
        self.sent_any = true;
        if let Some(served) = &self.r.served {
            served.inc_by(bytes.len() as u64);
        }
        bytes
    }
}

async fn recv(live: &mut Option<broadcast::Receiver<Chunk>>) -> Result<Chunk, broadcast::error::RecvError> {
    match live {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
