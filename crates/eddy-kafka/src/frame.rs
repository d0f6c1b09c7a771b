//! Kafka's framing: every request and response is a big-endian `i32`
//! length followed by that many bytes.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why a connection's next frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("a frame of {len} bytes is larger than the {max} bytes allowed (frame_bytes_max)")]
    TooLarge { len: i64, max: usize },
    #[error("a frame cannot have a negative length ({0})")]
    Negative(i32),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads the next frame; `None` when the client closed the connection
/// between frames.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes(len);
    let size = usize::try_from(len).map_err(|_| FrameError::Negative(len))?;
    if size > max {
        return Err(FrameError::TooLarge {
            len: i64::from(len),
            max,
        });
    }
    let mut body = BytesMut::zeroed(size);
    reader.read_exact(&mut body).await?;
    Ok(Some(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_read_whole_and_limited() {
        let mut input: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 9];
        let frame = read(&mut input, 8).await.ok().flatten();
        assert_eq!(frame.as_deref(), Some(&b"abc"[..]));
        assert!(matches!(
            read(&mut input, 8).await,
            Err(FrameError::TooLarge { len: 9, max: 8 })
        ));
        let mut negative: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read(&mut negative, 8).await,
            Err(FrameError::Negative(-1))
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(read(&mut empty, 8).await, Ok(None)));
        let mut cut: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(read(&mut cut, 8).await, Err(FrameError::Io(_))));
    }
}
