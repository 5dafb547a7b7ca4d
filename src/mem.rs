//! `memcpy` and `memmove` for the wasm build: byte loops instead of compiler_builtins' word-wise
//! versions, which are 1.7 KB of code (0.7 KB gzip) for copies of a few short strings. Theirs
//! are weak symbols, so these replace them. Volatile accesses keep LLVM from turning the loops
//! back into calls to these very functions.

/// Copies `n` bytes from `src` to `dst`, which do not overlap.
///
/// # Safety
/// As C's `memcpy`.
#[no_mangle]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; non-overlapping ranges are a case of memmove's.
    unsafe { memmove(dst, src, n) }
}

/// Copies `n` bytes from `src` to `dst`, which may overlap.
///
/// # Safety
/// As C's `memmove`: both ranges valid for `n` bytes.
#[no_mangle]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Forwards when the destination is below the source, backwards otherwise, so an overlap
    // never reads a byte already overwritten.
    // SAFETY: every offset is below `n`, within both ranges.
    unsafe {
        if (dst as usize) < (src as usize) {
            let mut i = 0;
            while i < n {
                dst.add(i).write_volatile(src.add(i).read_volatile());
                i += 1;
            }
        } else {
            let mut i = n;
            while i > 0 {
                i -= 1;
                dst.add(i).write_volatile(src.add(i).read_volatile());
            }
        }
    }
    dst
}
