//! The frame header decoder: a decoded header re-encodes to a header that decodes the same,
//! every shorter prefix asks for more, and every error maps to 1002 or 1009.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_proto::frame::{decode_header, DecodeRules, MAX_HEADER_LEN};
use surge_proto::Role;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, wire)) = data.split_first() else { return };
    let rules = DecodeRules {
        role: if selector & 1 == 0 { Role::Server } else { Role::Client },
        allowed_rsv: (selector >> 1) & 0x7,
        max_frame_size: if selector & 0x10 == 0 { u64::MAX >> 1 } else { 1 << 16 },
    };
    match decode_header(wire, &rules) {
        Ok(Some((header, len))) => {
            assert!(len <= wire.len() && len <= MAX_HEADER_LEN);
            assert!(len >= header.encoded_len(), "a longer spelling of the length, never shorter");
            assert!(header.payload_len <= rules.max_frame_size);
            assert_eq!(header.rsv & !rules.allowed_rsv, 0);
            assert_eq!(header.mask.is_some(), rules.role == Role::Server);
            for cut in 0..len {
                if let Ok(prefix) = decode_header(&wire[..cut], &rules) {
                    assert_eq!(prefix, None, "a prefix of a header cannot decode");
                }
            }
            let mut buf = [0; MAX_HEADER_LEN];
            let reencoded = header.encode(&mut buf);
            assert_eq!(reencoded, header.encoded_len());
            assert_eq!(decode_header(&buf[..reencoded], &rules), Ok(Some((header, reencoded))));
        }
        Ok(None) => assert!(wire.len() < MAX_HEADER_LEN),
        Err(error) => assert!(matches!(error.close_code().as_u16(), 1002 | 1009)),
    }
});
