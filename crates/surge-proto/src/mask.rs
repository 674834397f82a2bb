#![allow(missing_docs)]
//! TEMP placeholder (replaced by the mask branch)
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) -> usize {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(i + phase) & 3];
    }
    (phase + buf.len()) & 3
}
pub fn extend_masked(dst: &mut Vec<u8>, src: &[u8], key: [u8; 4], phase: usize) -> usize {
    let s = dst.len();
    dst.extend_from_slice(src);
    apply_mask(&mut dst[s..], key, phase)
}
