//! Counts heap allocations while a fragment is delivered to many viewers through the real
//! connection code: in steady state the per-viewer cost must be a refcount and a write, with no
//! allocation at all, whatever the number of viewers. Viewers that asked for gzip add exactly one
//! allocation per fragment, not per viewer: the first of them makes the fragment's compressed
//! form, which every other one shares.

use ssecast::harness::FanoutHarness;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    /// Allocations made by this thread: the tests run in parallel, each counts only its own.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    // A thread being torn down has no counter left; nothing of ours runs then.
    let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

// SAFETY: defers every operation to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocator's counter is global, so the cases run one after the other in one test: a
/// fragment at a time, and parts that went live in the same loop turn, which go to each viewer
/// in one write.
#[test]
fn delivering_fragments_to_many_viewers_allocates_nothing_per_viewer() {
    deliver_without_allocating(1);
    deliver_without_allocating(3);
}

fn deliver_without_allocating(batch_len: usize) {
    let viewers = 200;
    let mut h = FanoutHarness::new(viewers, 4 << 20).expect("harness");
    // Warm up: queues reach their working depth.
    for _ in 0..3 {
        let batch: Vec<_> = (0..batch_len).map(|_| h.next_fragment()).collect();
        assert_eq!(h.deliver_batch(&batch), 0);
        h.drain_readers().expect("drain");
    }
    for round in 0..5 {
        let batch: Vec<_> = (0..batch_len).map(|_| h.next_fragment()).collect();
        let before = allocs();
        let closed = h.deliver_batch(&batch);
        let allocs = allocs() - before;
        assert_eq!(closed, 0);
        assert_eq!(
            allocs, 0,
            "round {round}: {allocs} allocations delivering {batch_len} fragments to {viewers} viewers"
        );
        let read = h.drain_readers().expect("drain");
        let bytes: usize = batch.iter().map(|f| f.len()).sum();
        assert!(read >= viewers * bytes, "every viewer got every fragment");
    }
    assert_eq!(h.skipped(), 0);
    assert_eq!(h.pending(), 0);
}

#[test]
fn compressed_viewers_cost_one_allocation_per_fragment_not_per_viewer() {
    let (plain, compressed) = (100, 200);
    let mut h = FanoutHarness::with_viewers(plain, compressed, 4 << 20).expect("harness");
    for _ in 0..3 {
        let f = h.next_fragment();
        assert_eq!(h.deliver(&f), 0);
        h.drain_readers().expect("drain");
    }
    for round in 0..5 {
        let frame = h.next_fragment();
        assert!(!frame.is_deflated());
        let before = allocs();
        let closed = h.deliver(&frame);
        let allocs = allocs() - before;
        assert_eq!(closed, 0);
        assert_eq!(
            allocs, 1,
            "round {round}: {allocs} allocations delivering one fragment to {plain} plain and \
             {compressed} compressed viewers (the compressed form, made once)"
        );
        assert!(frame.is_deflated());
        let read = h.drain_readers().expect("drain");
        let expected = plain * frame.len() + compressed * frame.wire(true).len();
        assert!(
            read >= expected,
            "every viewer got the frame: {read} < {expected}"
        );
    }
    assert_eq!(h.skipped(), 0);
    assert_eq!(h.pending(), 0);
}
