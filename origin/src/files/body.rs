//! The streaming body for larger files: chunks are read with `read_at` on the blocking pool,
//! one chunk ahead of what the consumer has taken.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

/// The most read per chunk (and so the memory a stream holds at once).
pub(crate) const CHUNK: u64 = 128 * 1024;

/// Streams `len` bytes of a file starting at `pos`. At most one read is in flight: when a
/// chunk is handed out, the read of the next one starts, so the disk works while the chunk
/// is sent, but never more than one chunk ahead: HTTP/2 flow control still paces the disk,
/// and a stream holds at most two chunks.
pub(crate) struct FileBody {
    state: State,
    pos: u64,
    remaining: u64,
}

enum State {
    /// Waiting to be polled; owns the file.
    Idle(File),
    /// A chunk is being read; the file comes back with it.
    Reading(JoinHandle<(File, io::Result<Bytes>)>),
    /// Finished, failed, or nothing to send.
    Done,
}

impl FileBody {
    pub(crate) fn new(file: File, pos: u64, len: u64) -> FileBody {
        let state = if len == 0 { State::Done } else { State::Idle(file) };
        FileBody { state, pos, remaining: len }
    }

    fn fail(&mut self, err: io::Error) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        self.state = State::Done;
        self.remaining = 0;
        Poll::Ready(Some(Err(err)))
    }
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Idle(_) => {
                    let State::Idle(file) = std::mem::replace(&mut this.state, State::Done) else {
                        return Poll::Ready(None);
                    };
                    this.state = State::Reading(read_next(file, this.pos, this.remaining));
                }
                State::Reading(task) => {
                    let joined = ready!(Pin::new(task).poll(cx));
                    return match joined {
                        Ok((file, Ok(chunk))) => {
                            let n = chunk.len() as u64;
                            this.pos += n;
                            this.remaining = this.remaining.saturating_sub(n);
                            // Read ahead: the next chunk loads while this one is sent.
                            this.state = if this.remaining == 0 {
                                State::Done
                            } else {
                                State::Reading(read_next(file, this.pos, this.remaining))
                            };
                            Poll::Ready(Some(Ok(Frame::data(chunk))))
                        }
                        Ok((_, Err(err))) => this.fail(err),
                        Err(join) => this.fail(io::Error::other(join)),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn read_next(file: File, pos: u64, remaining: u64) -> JoinHandle<(File, io::Result<Bytes>)> {
    // The buffer is allocated here, on the runtime thread that will also free it once sent:
    // allocated on the (many) blocking threads, it would pile up in their per-thread heaps.
    let buf = vec![0u8; remaining.min(CHUNK) as usize];
    tokio::task::spawn_blocking(move || {
        let chunk = read_exact_into(&file, pos, buf);
        (file, chunk)
    })
}

/// Read exactly `len` bytes at `pos` (blocking). Reaching the end of the file first means it
/// shrank after it was measured: that is an error, never a short answer.
pub(crate) fn read_exact_at(file: &File, pos: u64, len: u64) -> io::Result<Bytes> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    read_exact_into(file, pos, vec![0u8; len])
}

/// Fill `buf` from `pos` (blocking); see [`read_exact_at`].
fn read_exact_into(file: &File, pos: u64, mut buf: Vec<u8>) -> io::Result<Bytes> {
    match file.read_exact_at(&mut buf, pos) {
        Ok(()) => Ok(Bytes::from(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank while being read"))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Write;

    fn file_with(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    #[tokio::test]
    async fn streams_a_slice_in_chunks() {
        let (f, data) = file_with(300_000);
        let mut body = FileBody::new(f.reopen().unwrap(), 1000, 290_000);
        assert_eq!(body.size_hint().exact(), Some(290_000));
        assert!(!body.is_end_stream());
        let mut got = Vec::new();
        let mut frames = 0;
        while let Some(frame) = body.frame().await {
            let chunk = frame.unwrap().into_data().unwrap();
            assert!(chunk.len() as u64 <= CHUNK);
            got.extend_from_slice(&chunk);
            frames += 1;
            assert_eq!(body.size_hint().exact(), Some(290_000 - got.len() as u64));
        }
        assert_eq!(frames, 3);
        assert!(body.is_end_stream());
        assert_eq!(got, &data[1000..291_000]);
    }

    #[tokio::test]
    async fn empty_is_done_at_once() {
        let (f, _) = file_with(10);
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 0);
        assert!(body.is_end_stream());
        assert_eq!(body.size_hint().exact(), Some(0));
        assert!(body.frame().await.is_none());
    }

    #[tokio::test]
    async fn a_shrinking_file_is_an_error() {
        let (f, _) = file_with(400_000);
        let mut body = FileBody::new(f.reopen().unwrap(), 0, 400_000);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len() as u64, CHUNK);
        f.as_file().set_len(200_000).unwrap();
        let err = loop {
            match body.frame().await {
                Some(Ok(_)) => continue,
                Some(Err(e)) => break e,
                None => panic!("a truncated file must not end cleanly"),
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(body.frame().await.is_none());
    }
}
