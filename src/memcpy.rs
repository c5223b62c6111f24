//! The copies glibc's `memcpy` makes slowly on AMD Zen 3/4, which the eic binary splits (see
//! `src/memcpy_shim.rs`); the rule lives here, in safe code, where it is tested.
//!
//! glibc copies 2 KiB and more with `rep movsb` on CPUs with FSRM (`x86_rep_movsb_threshold`,
//! 2112 bytes there). AMD Zen 3/4 run it about 25 times slower when the destination lies 1-31
//! bytes past the source modulo 4 KiB (glibc's bug 30994: current upstream glibc no longer uses
//! `rep movsb` on AMD CPUs; Debian 12's 2.36, measured here, still does). A tunnel's
//! copies often land there: rustls moves each decrypted record, after its 5-byte header, into a
//! fresh buffer, and tungstenite gathers a frame's records after its 2-10-byte header, all in
//! buffers that malloc places 16 bytes apart. In a download through the tunnel, over half of the
//! bytes copied were in the window (BENCHMARKS.md). Below the threshold glibc copies with vector
//! loads and stores at full speed wherever the bytes lie, so such a copy goes in pieces of
//! [`PIECE`] bytes.

/// The piece an aliased copy is split into: below every `rep movsb` threshold glibc picks.
pub const PIECE: usize = 2048;

/// Whether glibc would copy `len` bytes from `src` to `dst` with a slow `rep movsb`: more than
/// [`PIECE`] bytes, with the destination 1-63 bytes past the source modulo 4 KiB (the slow window
/// measured 1-31; the margin adds a few calls to glibc for copies that are rare).
pub fn is_aliased(dst: usize, src: usize, len: usize) -> bool {
    let distance = dst.wrapping_sub(src) % 4096;
    len > PIECE && (1..64).contains(&distance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_long_copies_a_few_bytes_ahead_modulo_4_kib_are_split() {
        let table = [
            // (dst, src, len, split)
            (0x1005, 0x1000, 16384, true),
            (0x2011, 0x1000, 16384, true),
            (0x1000 + 63, 0x1000, 16384, true),
            (0x1000 + 64, 0x1000, 16384, false),
            (0x1000, 0x1000, 16384, false),
            // Behind the source: the fast direction.
            (0x1000, 0x1005, 16384, false),
            (0x1000 + 2048, 0x1000, 16384, false),
            // Short copies never use `rep movsb`.
            (0x1005, 0x1000, PIECE, false),
            (0x1005, 0x1000, PIECE + 1, true),
            // Addresses on either side of the top of the address space.
            (4, usize::MAX - 3, 16384, true),
        ];
        for (dst, src, len, split) in table {
            assert_eq!(
                is_aliased(dst, src, len),
                split,
                "dst {dst:#x}, src {src:#x}, {len} bytes"
            );
        }
    }
}
