//! `BdrvRequestPadding` (`bdrv_init_padding` in `block/io.c`): how the block
//! layer widens a request that is not aligned to a node's
//! `request_alignment` (a blkdebug node's `align`), and which reads and
//! writes the widened request becomes on that node.
//!
//! The reads of a write's read-modify-write cycle matter beyond their data:
//! `bdrv_co_pwritev_part` and `bdrv_co_do_zero_pwritev` ignore what
//! `bdrv_padding_rmw_read` returns, so an error injected into one of them is
//! consumed without failing anything.

/// One request on the node itself: `(offset, bytes)`.
pub(crate) type NodeRequest = (u64, u64);

/// The padding of an unaligned request (`None` from [`Self::of`] when the
/// request is aligned and goes through as it is).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RequestPadding {
    align: u64,
    /// The request's offset and length.
    offset: u64,
    bytes: u64,
    /// `pad->head`: bytes added before the request.
    head: u64,
    /// `pad->tail`: bytes added after it.
    tail: u64,
}

impl RequestPadding {
    /// `bdrv_init_padding`: the padding that aligns `[offset, offset +
    /// bytes)` to `align`, if it needs any.
    pub(crate) fn of(offset: u64, bytes: u64, align: u64) -> Option<Self> {
        if align <= 1 || bytes == 0 {
            return None;
        }
        let head = offset % align;
        let tail = (align - (offset + bytes) % align) % align;
        (head != 0 || tail != 0).then_some(Self {
            align,
            offset,
            bytes,
            head,
            tail,
        })
    }

    /// The widened request (`req->overlap_offset`, `overlap_bytes`).
    pub(crate) fn widened(&self) -> NodeRequest {
        (self.offset - self.head, self.head + self.bytes + self.tail)
    }

    /// `pad->buf_len`: one aligned block, or two when head and tail are in
    /// different blocks.
    fn buf_len(&self) -> u64 {
        let sum = self.head + self.bytes + self.tail;
        if sum > self.align && self.head != 0 && self.tail != 0 {
            2 * self.align
        } else {
            self.align
        }
    }

    /// `pad->merge_reads`: the whole widened request fits the buffer, so
    /// one read (and, for zeroes, one write) covers head and tail.
    fn merge_reads(&self) -> bool {
        self.head + self.bytes + self.tail == self.buf_len()
    }

    /// The reads of `bdrv_padding_rmw_read`, in order: the merged buffer,
    /// or the head block then the tail block. A failed read ends the
    /// cycle (the later ones are not issued).
    pub(crate) fn rmw_reads(&self) -> Vec<NodeRequest> {
        let (start, len) = self.widened();
        if self.merge_reads() {
            return vec![(start, self.buf_len())];
        }
        let mut reads = Vec::new();
        if self.head != 0 {
            reads.push((start, self.align));
        }
        if self.tail != 0 {
            reads.push((start + len - self.align, self.align));
        }
        reads
    }

    /// The writes of `bdrv_co_do_zero_pwritev` after its read cycle, in
    /// order: the head block (the merged buffer, which is then all), the
    /// aligned middle as zeroes, the tail block. The first failure fails
    /// the request.
    pub(crate) fn zero_writes(&self) -> Vec<NodeRequest> {
        let (start, len) = self.widened();
        if self.merge_reads() {
            return vec![(start, self.buf_len())];
        }
        let mut writes = Vec::new();
        let mut middle_start = start;
        let mut middle_end = start + len;
        if self.head != 0 {
            writes.push((start, self.align));
            middle_start += self.align;
        }
        if self.tail != 0 {
            middle_end -= self.align;
        }
        if middle_end > middle_start {
            writes.push((middle_start, middle_end - middle_start));
        }
        if self.tail != 0 {
            writes.push((middle_end, self.align));
        }
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u64 = 65536;

    #[test]
    fn aligned_requests_are_not_padded() {
        assert_eq!(RequestPadding::of(A, 2 * A, A), None);
        assert_eq!(RequestPadding::of(100, 7, 1), None);
        assert_eq!(RequestPadding::of(100, 0, A), None);
    }

    #[test]
    fn a_request_inside_one_block_reads_and_writes_that_block_once() {
        let pad = RequestPadding::of(A + 512, 512, A).expect("unaligned");
        assert_eq!(pad.widened(), (A, A));
        assert_eq!(pad.rmw_reads(), vec![(A, A)]);
        assert_eq!(pad.zero_writes(), vec![(A, A)]);
    }

    #[test]
    fn a_request_over_two_blocks_merges_its_reads() {
        let pad = RequestPadding::of(A - 512, 1024, A).expect("unaligned");
        assert_eq!(pad.widened(), (0, 2 * A));
        assert_eq!(pad.rmw_reads(), vec![(0, 2 * A)]);
        assert_eq!(pad.zero_writes(), vec![(0, 2 * A)]);
    }

    #[test]
    fn a_longer_request_reads_head_and_tail_and_zeroes_the_middle() {
        let pad = RequestPadding::of(512, 3 * A, A).expect("unaligned");
        assert_eq!(pad.widened(), (0, 4 * A));
        assert_eq!(pad.rmw_reads(), vec![(0, A), (3 * A, A)]);
        assert_eq!(pad.zero_writes(), vec![(0, A), (A, 2 * A), (3 * A, A)]);
    }

    #[test]
    fn a_tail_only_request_reads_only_its_tail() {
        let pad = RequestPadding::of(0, A + 4096, A).expect("unaligned");
        assert_eq!(pad.rmw_reads(), vec![(A, A)]);
        assert_eq!(pad.zero_writes(), vec![(0, A), (A, A)]);
    }
}
