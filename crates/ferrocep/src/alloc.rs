//! The process's memory allocator: large buffers on their own mappings,
//! aligned to 2 MiB and advised for transparent huge pages; everything else
//! from the system allocator.
//!
//! Why: the state of a matcher (its key slab, key index, shared buffer and
//! timer queues) is a few large vectors, read at random, one key per event.
//! With 4 KiB pages most of those reads also miss the TLB, and under a
//! hypervisor a TLB miss is a two-level page walk: memory traffic that two
//! workers on two cores contend for. The system allocator puts such vectors
//! at addresses that are not 2 MiB aligned, in mappings the kernel (with
//! `transparent_hugepage=madvise`, the common default) never backs with huge
//! pages. Here a buffer of at least [`LARGE`] bytes gets a mapping of its own
//! that starts on a 2 MiB boundary and is advised `MADV_HUGEPAGE`; growing it
//! moves its pages (`mremap`) without copying them.
//!
//! Memory: a mapping is rounded up to 2 MiB, and a huge page is resident as a
//! whole once touched, so each large buffer may hold up to 2 MiB more than a
//! 4 KiB-paged one would: a few MiB per process.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU8, Ordering};

/// Huge page size (x86_64 and aarch64 with 4 KiB base pages).
const HUGE: usize = 2 << 20;
/// Buffers of this size and larger get their own huge-page mapping.
pub const LARGE: usize = 1 << 20;

/// The allocator (see the module docs). On systems other than Linux it is the
/// system allocator.
pub struct Allocator;

/// Whether large buffers get huge-page mappings: `ON` until the first one
/// (then `FIXED`) or until [`disable`] (then `OFF`): a buffer must be freed by
/// the side that made it.
static MODE: AtomicU8 = AtomicU8::new(ON);
const ON: u8 = 0;
const FIXED: u8 = 1;
const OFF: u8 = 2;

/// Turns huge-page mappings off for the rest of the process (to compare
/// with the system allocator alone, `FERROCEP_HUGE_PAGES=off`), if no large
/// buffer has been made yet; returns whether it did.
pub fn disable() -> bool {
    MODE.compare_exchange(ON, OFF, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

/// Whether a buffer of this size and alignment is (or was) made by `huge`.
/// The first yes fixes the mode, so that no buffer can be made on one side
/// and freed on the other.
fn is_large(size: usize, align: usize) -> bool {
    if !(cfg!(target_os = "linux") && size >= LARGE && align <= HUGE) {
        return false;
    }
    match MODE.load(Ordering::Relaxed) {
        FIXED => true,
        OFF => false,
        _ => match MODE.compare_exchange(ON, FIXED, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => true,
            Err(now) => now == FIXED,
        },
    }
}

fn round_up(n: usize) -> Option<usize> {
    n.checked_add(HUGE - 1).map(|n| n & !(HUGE - 1))
}

#[allow(unsafe_code)]
// SAFETY (for the trait): small requests go to `System` unchanged; a large
// one is a fresh anonymous mapping of at least its size, aligned to 2 MiB
// (which satisfies any alignment `is_large` accepts), zero-filled, and is
// freed or resized only through the same size rule, so every pointer is
// returned to the side that made it.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            huge::map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout.size(), layout.align()) {
            // Anonymous mappings are zero-filled.
            huge::map(layout.size())
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_large(layout.size(), layout.align()) {
            // SAFETY: `ptr` came from `huge::map` or `huge::remap` for this
            // size (the caller passes the layout it was allocated with).
            unsafe { huge::unmap(ptr, layout.size()) }
        } else {
            // SAFETY: forwarded with the caller's guarantees.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (is_large(layout.size(), align), is_large(new_size, align)) {
            // SAFETY: forwarded with the caller's guarantees.
            (false, false) => unsafe { System.realloc(ptr, layout, new_size) },
            // SAFETY: `ptr` is a huge mapping of `layout.size()` bytes.
            (true, true) => unsafe { huge::remap(ptr, layout.size(), new_size) },
            // Across the threshold: a new buffer from the other side.
            _ => {
                // SAFETY: `new_size` is non-zero and, rounded up to `align`,
                // does not overflow (the caller's guarantees for realloc).
                let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, align) };
                // SAFETY: a valid non-zero layout.
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks are live, distinct and at least
                    // this long; `dealloc` frees the old one by the same
                    // size rule that made it.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod huge {
    use super::{round_up, HUGE};

    /// A fresh mapping of at least `size` bytes starting on a 2 MiB boundary
    /// and advised for huge pages, or null.
    pub fn map(size: usize) -> *mut u8 {
        let Some(len) = round_up(size) else {
            return std::ptr::null_mut();
        };
        match reserve(len) {
            Some(p) => {
                advise(p, len);
                p
            }
            None => std::ptr::null_mut(),
        }
    }

    /// `len` bytes (a multiple of 2 MiB) of fresh read-write memory starting
    /// on a 2 MiB boundary: a larger mapping, trimmed at both ends.
    fn reserve(len: usize) -> Option<*mut u8> {
        let span = len.checked_add(HUGE)?;
        // SAFETY: a new private anonymous mapping; no existing memory is
        // touched.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        let head = aligned - start;
        let tail = span - head - len;
        // SAFETY: both ranges lie inside the mapping just made and outside
        // the part handed out.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + len) as *mut libc::c_void, tail);
            }
        }
        Some(aligned as *mut u8)
    }

    fn advise(p: *mut u8, len: usize) {
        // SAFETY: a hint on a range of our own mapping; failure (a kernel
        // without THP) leaves ordinary pages, which is fine.
        unsafe {
            libc::madvise(p.cast(), len, libc::MADV_HUGEPAGE);
        }
    }

    /// Frees a mapping made by [`map`] or [`remap`] for `size` bytes.
    ///
    /// # Safety
    /// `p` must be such a mapping, not used afterwards.
    pub unsafe fn unmap(p: *mut u8, size: usize) {
        if let Some(len) = round_up(size) {
            // SAFETY: the whole mapping, by the caller's guarantee.
            unsafe {
                libc::munmap(p.cast(), len);
            }
        }
    }

    /// Resizes a mapping made for `old` bytes to hold `new` bytes (both
    /// large), keeping its contents; null if that fails (the old one is then
    /// untouched).
    ///
    /// # Safety
    /// `p` must be a mapping made by [`map`] or [`remap`] for `old` bytes.
    pub unsafe fn remap(p: *mut u8, old: usize, new: usize) -> *mut u8 {
        let (Some(old_len), Some(new_len)) = (round_up(old), round_up(new)) else {
            return std::ptr::null_mut();
        };
        if new_len <= old_len {
            if new_len < old_len {
                // SAFETY: the tail of the caller's mapping, no longer needed.
                unsafe {
                    libc::munmap(p.add(new_len).cast(), old_len - new_len);
                }
            }
            return p;
        }
        // Grown where it is if the addresses after it are free; otherwise its
        // pages move (no copy) to a new aligned range, which mremap unmaps
        // first.
        // SAFETY: resizes the caller's mapping without moving it.
        let grown = unsafe { libc::mremap(p.cast(), old_len, new_len, 0) };
        if grown != libc::MAP_FAILED {
            advise(p, new_len);
            return p;
        }
        let Some(target) = reserve(new_len) else {
            return std::ptr::null_mut();
        };
        // SAFETY: moves the caller's mapping onto `target`, a range of our
        // own that mremap replaces.
        let moved = unsafe {
            libc::mremap(
                p.cast(),
                old_len,
                new_len,
                libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                target.cast::<libc::c_void>(),
            )
        };
        if moved == libc::MAP_FAILED {
            // SAFETY: the range just reserved, unused.
            unsafe {
                libc::munmap(target.cast(), new_len);
            }
            return std::ptr::null_mut();
        }
        advise(target, new_len);
        target
    }
}

#[cfg(not(target_os = "linux"))]
mod huge {
    // `is_large` is always false off Linux, so none of these is reached.
    pub fn map(_: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
    pub unsafe fn unmap(_: *mut u8, _: usize) {}
    pub unsafe fn remap(_: *mut u8, _: usize, _: usize) -> *mut u8 {
        std::ptr::null_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_buffers_are_aligned_grow_shrink_and_keep_their_contents() {
        let a = Allocator;
        let layout = Layout::from_size_align(LARGE + 3, 8).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: each pointer is used within its size and freed once with
        // the layout it has.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            if cfg!(target_os = "linux") {
                assert_eq!(p as usize % HUGE, 0);
            }
            for i in 0..layout.size() {
                *p.add(i) = (i % 251) as u8;
            }
            // Grow past several huge pages, then shrink below the threshold.
            let big = 5 * HUGE + 17;
            let q = a.realloc(p, layout, big);
            assert!(!q.is_null());
            for i in 0..layout.size() {
                assert_eq!(*q.add(i), (i % 251) as u8, "byte {i} after growing");
            }
            *q.add(big - 1) = 7;
            let big_layout = Layout::from_size_align(big, 8).unwrap();
            let r = a.realloc(q, big_layout, 100);
            assert!(!r.is_null());
            for i in 0..100 {
                assert_eq!(*r.add(i), (i % 251) as u8, "byte {i} after shrinking");
            }
            a.dealloc(r, Layout::from_size_align(100, 8).unwrap());
        }
    }

    #[test]
    fn small_to_large_and_zeroed() {
        let a = Allocator;
        #[allow(unsafe_code)]
        // SAFETY: as above.
        unsafe {
            let small = Layout::from_size_align(64, 16).unwrap();
            let p = a.alloc(small);
            std::ptr::write_bytes(p, 9, 64);
            let q = a.realloc(p, small, 3 * LARGE);
            assert!((0..64).all(|i| *q.add(i) == 9));
            a.dealloc(q, Layout::from_size_align(3 * LARGE, 16).unwrap());

            let z = Layout::from_size_align(2 * LARGE, 64).unwrap();
            let p = a.alloc_zeroed(z);
            assert!((0..z.size()).step_by(4093).all(|i| *p.add(i) == 0));
            a.dealloc(p, z);
        }
    }

    #[test]
    fn a_growing_array_keeps_its_contents() {
        // As a Vec grows: doubling from small through the threshold to
        // 24 MB, its contents intact.
        let a = Allocator;
        let mut len = 0usize;
        let mut cap = 16usize;
        let layout = |c: usize| Layout::array::<u64>(c).unwrap();
        #[allow(unsafe_code)]
        // SAFETY: `ptr` always holds `cap` u64s, the first `len` written.
        unsafe {
            let mut ptr = a.alloc(layout(cap)).cast::<u64>();
            while len < 3_000_000 {
                if len == cap {
                    ptr = a.realloc(ptr.cast(), layout(cap), cap * 16).cast();
                    cap *= 2;
                }
                ptr.add(len).write(len as u64 * 3);
                len += 1;
            }
            assert!((0..len).all(|i| *ptr.add(i) == i as u64 * 3));
            a.dealloc(ptr.cast(), layout(cap));
        }
    }
}
