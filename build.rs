//! Links the eic binary with `--wrap=memcpy` on x86_64 Linux with glibc (`src/memcpy_shim.rs`),
//! and the benchmark too, whose stand-in plays the endpoint on the same CPUs (BENCHMARKS.md).
//! The flags reach every bin and bench target: each must define `__wrap_memcpy` (include
//! `src/memcpy_shim.rs`), or it does not link.

fn main() {
    let cfg = |key: &str| std::env::var(format!("CARGO_CFG_TARGET_{key}")).unwrap_or_default();
    if cfg("ARCH") == "x86_64" && cfg("OS") == "linux" && cfg("ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,--wrap=memcpy");
        println!("cargo:rustc-link-arg-benches=-Wl,--wrap=memcpy");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
