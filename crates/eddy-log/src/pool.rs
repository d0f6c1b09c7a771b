//! Reusable read buffers.
//!
//! A fetch reads megabytes into a fresh buffer; allocating and zero-filling
//! it each time costs a memset and, for large allocations, page faults on
//! memory the allocator just returned to the OS. Buffers are kept here
//! instead and handed out again once the `Bytes` built on them is dropped.
//! Bounded: at most [`POOL_BUFFERS_MAX`] buffers and [`POOL_BYTES_MAX`] bytes.

use std::sync::Mutex;

use bytes::Bytes;

/// Most buffers kept for reuse.
pub const POOL_BUFFERS_MAX: usize = 16;
/// Most bytes kept for reuse.
pub const POOL_BYTES_MAX: usize = 128 << 20;
/// Larger buffers are not kept.
const BUFFER_BYTES_MAX: usize = 32 << 20;

static FREE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A pooled buffer: `vec` is initialized in full; the first `len` bytes are the data.
struct Pooled {
    vec: Vec<u8>,
    len: usize,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.vec[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let vec = std::mem::take(&mut self.vec);
        if vec.len() > BUFFER_BYTES_MAX {
            return;
        }
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = free.iter().map(Vec::len).sum();
        if free.len() < POOL_BUFFERS_MAX && held + vec.len() <= POOL_BYTES_MAX {
            free.push(vec);
        }
    }
}

/// Fills `len` bytes with `fill` (which must write all of them) and
/// returns them as `Bytes`, on a reused buffer when one is free.
pub(crate) fn filled<E>(
    len: usize,
    fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
) -> Result<Bytes, E> {
    let reused = {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that fits, else the largest (it grows).
        let fit = free
            .iter()
            .enumerate()
            .filter(|(_, v)| v.len() >= len)
            .min_by_key(|(_, v)| v.len())
            .map(|(i, _)| i);
        let pick = fit.or_else(|| {
            free.iter()
                .enumerate()
                .max_by_key(|(_, v)| v.len())
                .map(|(i, _)| i)
        });
        pick.map(|i| free.swap_remove(i))
    };
    let mut vec = reused.unwrap_or_default();
    if vec.len() < len {
        vec.resize(len, 0);
    }
    fill(&mut vec[..len])?;
    Ok(Bytes::from_owner(Pooled { vec, len }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused_without_losing_data() {
        let a = filled::<()>(1000, |b| {
            b.fill(7);
            Ok(())
        })
        .unwrap();
        assert_eq!(a.len(), 1000);
        assert!(a.iter().all(|&x| x == 7));
        drop(a);
        let b = filled::<()>(10, |b| {
            b.fill(1);
            Ok(())
        })
        .unwrap();
        assert_eq!(&b[..], &[1; 10]);
        assert!(FREE.lock().unwrap().len() <= POOL_BUFFERS_MAX);
        assert!(filled(5, |_| Err("failed")).is_err());
    }
}
