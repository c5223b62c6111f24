//! `memcpy` for the eic binary on x86_64 Linux with glibc: build.rs links it with
//! `--wrap=memcpy`, so every `memcpy` call in eic's code (Rust's and aws-lc's) comes here. A copy
//! that glibc would make with a slow `rep movsb` (see [`eic::memcpy`]) goes to glibc's own
//! `memcpy` in pieces; every other copy goes to it whole.

use std::ffi::c_void;

use eic::memcpy::{is_aliased, PIECE};

extern "C" {
    /// glibc's `memcpy`, as `--wrap` names it.
    fn __real_memcpy(dst: *mut c_void, src: *const c_void, len: usize) -> *mut c_void;
}

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
    #[cfg(test)]
    tests::SPLIT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
    use std::hint::black_box;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Copies that went in pieces.
    pub static SPLIT: AtomicUsize = AtomicUsize::new(0);

    /// This test binary is linked as eic is (build.rs): Rust's copies reach the wrapper, and an
    /// aliased one arrives whole, in pieces.
    #[test]
    fn an_aliased_copy_goes_in_pieces_and_arrives_whole() {
        let src: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let before = SPLIT.load(Ordering::Relaxed);
        for (distance, len) in [(5, 16384), (8192 + 31, 20_000), (4096 + 1, 2049)] {
            let mut buf = vec![0u8; 64 << 10];
            buf[..src.len()].copy_from_slice(&src);
            let (from, to) = buf.split_at_mut(distance + 4096 * 4);
            let len = black_box(len);
            let dst = &mut to[..len];
            assert!(eic::memcpy::is_aliased(
                dst.as_ptr() as usize,
                from.as_ptr() as usize,
                len
            ));
            dst.copy_from_slice(&from[..len]);
            assert!(dst == &src[..len], "{len} bytes at distance {distance}");
        }
        assert!(SPLIT.load(Ordering::Relaxed) - before >= 3);
    }
}
