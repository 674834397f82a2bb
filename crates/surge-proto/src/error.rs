//! Typed errors of the protocol core.
#![forbid(unsafe_code)]
