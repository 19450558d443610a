//! The heap bound of a fuzz worker: a global allocator over the system one that counts
//! live bytes and aborts (with [`OOM_MESSAGE`]) an allocation that would exceed the limit.
//!
//! The limit is off (`usize::MAX`) until [`set_limit`]: every other xtask command pays
//! two relaxed atomic operations per allocation and nothing else.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Printed on stderr when the limit is hit; the parent classifies the failure by it.
pub const OOM_MESSAGE: &str = "fuzz worker: out of memory (heap limit reached)";

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LIMIT: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Abort any allocation that would bring the live heap above `bytes`.
pub fn set_limit(bytes: u64) {
    LIMIT.store(
        usize::try_from(bytes).unwrap_or(usize::MAX),
        Ordering::Relaxed,
    );
}

/// The most live heap bytes seen since the worker started.
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

struct Counting;

// SAFETY: every method forwards to `System` with the caller's layout and pointer; the
// counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        grow(layout.size());
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            grow(new_size - layout.size());
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

fn grow(bytes: usize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live, Ordering::Relaxed);
    if live > LIMIT.load(Ordering::Relaxed) {
        // No allocation from here on: a static message to the unbuffered stderr.
        let _ = std::io::stderr().write_all(OOM_MESSAGE.as_bytes());
        let _ = std::io::stderr().write_all(b"\n");
        std::process::abort();
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;
