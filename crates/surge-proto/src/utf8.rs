#![allow(missing_docs)]
//! TEMP placeholder (replaced by the utf8 branch)
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    carry: Vec<u8>,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;
impl Utf8Validator {
    pub const fn new() -> Self {
        Utf8Validator { carry: Vec::new() }
    }
    pub fn feed(&mut self, b: &[u8]) -> Result<(), InvalidUtf8> {
        self.carry.extend_from_slice(b);
        match std::str::from_utf8(&self.carry) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => Ok(()),
            Err(_) => Err(InvalidUtf8),
        }
    }
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let r = std::str::from_utf8(&self.carry).map(|_| ()).map_err(|_| InvalidUtf8);
        self.carry.clear();
        r
    }
    pub fn reset(&mut self) {
        self.carry.clear()
    }
}
pub fn validate(b: &[u8]) -> Result<&str, InvalidUtf8> {
    std::str::from_utf8(b).map_err(|_| InvalidUtf8)
}
