//! Cache-line prefetches: a connection's compression state is out of cache by its next
//! message, and a hash-chain walk loads it one dependent miss at a time.

/// Asks for every cache line of `bytes` to be brought towards the core; does nothing where
/// there is no prefetch instruction to ask with.
#[inline]
pub(crate) fn prefetch<T>(items: &[T]) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let bytes = core::mem::size_of_val(items);
        let base = items.as_ptr().cast::<i8>();
        for offset in (0..bytes).step_by(64) {
            // SAFETY: the address is within `items`; a prefetch reads nothing and never
            // faults, whatever the address.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(base.wrapping_add(offset));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = items;
}
