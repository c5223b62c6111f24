//! `memcpy` for the eic binary on x86_64 Linux with glibc: build.rs links it (and the
//! benchmark) with `--wrap=memcpy`, so every call to `memcpy` in eic's code (Rust's and aws-lc's)
//! comes here. A copy that glibc would make with a slow `rep movsb` (see [`eic::memcpy`]) goes
//! to glibc's own `memcpy` in pieces; every other copy goes to it whole. `memmove` (and glibc's
//! own internal copies) are not wrapped: the tunnel's bulk copies are all `memcpy`.

use std::ffi::c_void;

use eic::memcpy::{is_aliased, PIECE};

extern "C" {
    /// glibc's `memcpy`, as `--wrap` names it.
    fn __real_memcpy(dst: *mut c_void, src: *const c_void, len: usize) -> *mut c_void;
}

/// Copies that went in pieces, counted in debug builds for the test below.
#[cfg(debug_assertions)]
static SPLIT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// # Safety
/// `memcpy`'s contract: `src` and `dst` valid for `len` bytes and not overlapping.
#[no_mangle]
pub unsafe extern "C" fn __wrap_memcpy(
    dst: *mut c_void,
    src: *const c_void,
    len: usize,
) -> *mut c_void {
    if !is_aliased(dst as usize, src as usize, len) {
        // SAFETY: the caller's arguments, passed on.
        return unsafe { __real_memcpy(dst, src, len) };
    }
    #[cfg(debug_assertions)]
    SPLIT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut done = 0;
    while done < len {
        let piece = PIECE.min(len - done);
        // SAFETY: `done + piece <= len`, inside the caller's ranges.
        unsafe { __real_memcpy(dst.byte_add(done), src.byte_add(done), piece) };
        done += piece;
    }
    dst
}

#[cfg(test)]
mod tests {
    /// Copies in the window arrive whole, through Rust's `copy_from_slice` (which reaches the
    /// wrapper only if this test binary is linked as eic is, by build.rs) and through the wrapper
    /// itself; in debug builds, the counter shows that both went in pieces.
    #[test]
    fn an_aliased_copy_goes_in_pieces_and_arrives_whole() {
        #[cfg(debug_assertions)]
        let split_before = super::SPLIT.load(std::sync::atomic::Ordering::Relaxed);
        let byte = |i: usize| (i % 251) as u8;
        for (distance, len) in [(5, 16384), (8192 + 31, 20_000), (4096 + 1, 2049)] {
            for direct in [false, true] {
                // Filled element by element: no `memcpy` of its own.
                let mut buf: Vec<u8> = (0..64 << 10).map(byte).collect();
                let (from, to) = buf.split_at_mut(distance + 4096 * 4);
                let len = std::hint::black_box(len);
                let dst = &mut to[..len];
                assert!(eic::memcpy::is_aliased(
                    dst.as_ptr() as usize,
                    from.as_ptr() as usize,
                    len
                ));
                if direct {
                    let to = dst.as_mut_ptr().cast();
                    // SAFETY: two disjoint slices of `len` bytes.
                    let back = unsafe { super::__wrap_memcpy(to, from.as_ptr().cast(), len) };
                    assert_eq!(back, to);
                } else {
                    dst.copy_from_slice(&from[..len]);
                }
                assert!(
                    dst.iter().enumerate().all(|(i, &b)| b == byte(i)),
                    "{len} bytes at distance {distance}"
                );
            }
        }
        // Three through `copy_from_slice`, three direct (other tests may add more).
        #[cfg(debug_assertions)]
        assert!(super::SPLIT.load(std::sync::atomic::Ordering::Relaxed) - split_before >= 6);
    }
}
