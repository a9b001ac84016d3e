//! Counts heap allocations while a fragment is delivered to many viewers through the real
//! connection code: in steady state the per-viewer cost must be a refcount and a write, with no
//! allocation at all, whatever the number of viewers.

use ssecast::harness::FanoutHarness;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every operation to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
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
        let before = ALLOCS.load(Ordering::Relaxed);
        let closed = h.deliver_batch(&batch);
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
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
