//! Giving freed heap back to the operating system after a burst of work.

/// glibc keeps freed memory in its arenas for reuse: after a burst of downloads or a sync that
/// is megabytes of resident heap an idle server does not need. Called when such work ends; the
/// walk over the arenas runs on the blocking pool.
pub async fn release_freed_heap() {
    let _ = tokio::task::spawn_blocking(trim).await;
}

#[expect(unsafe_code, reason = "malloc_trim has no safe wrapper")]
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only hands the allocator's own free pages back to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}
