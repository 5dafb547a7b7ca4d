//! qys-sdk-wasm: the embedded-signing SDK of the 契约锁 (Qiyuesuo) platform.
//!
//! A pure core — [`params`] (validation), [`wire`] (protocol v1), [`message`] (which messages to
//! believe), [`presentation`] (iframe, redirect or mini-program), [`pending`] (redirect flows
//! across a navigation), [`options`], [`error`] and [`value`] — that builds and tests natively,
//! under a thin wasm-bindgen layer (`glue`, wasm32 only) that touches the DOM, `fetch` and events.

pub mod error;
pub mod message;
pub mod options;
pub mod params;
pub mod pending;
pub mod presentation;
pub mod value;
pub mod wire;

#[cfg(target_arch = "wasm32")]
mod glue;

// A free-list allocator a tenth of dlmalloc's size; wasm32 here runs on one thread.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    // SAFETY: the SDK's wasm module is never shared between threads.
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

pub use error::{ErrorFields, ErrorKind, QysError};
#[cfg(target_arch = "wasm32")]
pub use glue::QysSdk;

// Byte-wise memcpy/memmove instead of compiler_builtins' word-wise ones (−0.7 KB gzip; the
// SDK copies a few short strings).
#[cfg(target_arch = "wasm32")]
mod mem;
