//! Deterministic chunked parallelism with cancellation.
//!
//! Work over `0..len` is cut into chunks of a fixed length that does not
//! depend on the thread count. Chunk `i` draws its random numbers from
//! [`chunk_rng`]`(seed, i)` and results come back in chunk order, so a
//! caller that combines them in that order gets the same bits on one thread
//! or many. The cancel token is checked before each chunk starts.

use std::ops::Range;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::{CancelToken, KernelError};

/// The RNG for stream `stream` of `seed`: ChaCha8 keyed from the seed, with
/// the stream as its nonce, so streams of one seed never overlap.
pub(crate) fn chunk_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// One chunk of `0..len`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Chunk {
    /// Position of the chunk; use it as the RNG stream.
    pub(crate) index: u64,
    /// The items of `0..len` this chunk covers.
    pub(crate) range: Range<usize>,
}

/// Runs `f` on each chunk of `0..len` in parallel and returns the results in chunk order.
///
/// `chunk_len` is clamped to at least 1. Returns [`KernelError::Cancelled`]
/// if `cancel` was set before some chunk started.
pub(crate) fn map_chunks<T, F>(
    len: usize,
    chunk_len: usize,
    cancel: &CancelToken,
    f: F,
) -> Result<Vec<T>, KernelError>
where
    T: Send,
    F: Fn(Chunk) -> T + Sync,
{
    let chunk_len = chunk_len.max(1);
    let results: Option<Vec<T>> = (0..len.div_ceil(chunk_len))
        .into_par_iter()
        .map(|index| {
            if cancel.is_cancelled() {
                return None;
            }
            let start = index * chunk_len;
            let end = len.min(start + chunk_len);
            Some(f(Chunk {
                index: index as u64,
                range: start..end,
            }))
        })
        .collect();
    results.ok_or(KernelError::Cancelled)
}

/// Runs `f` on each `chunk_len`-long piece of `data` in parallel, with the piece's index.
///
/// `chunk_len` is clamped to at least 1. Returns [`KernelError::Cancelled`]
/// if `cancel` was set before some piece started; `data` is then partly filled.
pub(crate) fn for_each_chunk_mut<T, F>(
    data: &mut [T],
    chunk_len: usize,
    cancel: &CancelToken,
    f: F,
) -> Result<(), KernelError>
where
    T: Send,
    F: Fn(u64, &mut [T]) + Sync,
{
    data.par_chunks_mut(chunk_len.max(1))
        .enumerate()
        .try_for_each(|(index, piece)| {
            if cancel.is_cancelled() {
                return Err(KernelError::Cancelled);
            }
            f(index as u64, piece);
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use rand::Rng;

    use super::*;

    #[test]
    fn chunks_cover_the_range_in_order() {
        let chunks = map_chunks(10, 4, &CancelToken::new(), |chunk| chunk).unwrap();
        let ranges: Vec<_> = chunks.iter().map(|c| (c.index, c.range.clone())).collect();
        assert_eq!(ranges, vec![(0, 0..4), (1, 4..8), (2, 8..10)]);
    }

    #[test]
    fn empty_input_has_no_chunks() {
        let chunks = map_chunks(0, 4, &CancelToken::new(), |chunk| chunk).unwrap();
        assert!(chunks.is_empty());
    }

    #[test]
    fn cancelled_token_stops_the_work() {
        let cancel = CancelToken::new();
        cancel.cancel();
        assert_eq!(
            map_chunks(10, 4, &cancel, |_| ()),
            Err(KernelError::Cancelled)
        );
        let mut data = [0u8; 10];
        assert_eq!(
            for_each_chunk_mut(&mut data, 4, &cancel, |_, _| ()),
            Err(KernelError::Cancelled)
        );
    }

    #[test]
    fn pieces_get_their_index() {
        let mut data = [0u64; 10];
        for_each_chunk_mut(&mut data, 4, &CancelToken::new(), |index, piece| {
            piece.fill(index)
        })
        .unwrap();
        assert_eq!(data, [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    }

    #[test]
    fn streams_of_one_seed_differ_and_repeat() {
        let first = chunk_rng(7, 0).next_u64();
        assert_eq!(first, chunk_rng(7, 0).next_u64());
        assert_ne!(first, chunk_rng(7, 1).next_u64());
        assert_ne!(first, chunk_rng(8, 0).next_u64());
    }
}
