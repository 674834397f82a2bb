//! The Sec-WebSocket-Extensions parser and permessage-deflate negotiation: arbitrary header
//! bytes never panic; a server's answer re-parses to the same parameters, and the client
//! whose offer it accepted accepts that answer with equal parameters.
#![no_main]

use libfuzzer_sys::fuzz_target;
use surge_proto::deflate::header::elements;
use surge_proto::deflate::negotiate::{ClientOffer, RawParams, ServerPolicy};

const WORDS: [&[u8]; 16] = [
    b"permessage-deflate",
    b"server_no_context_takeover",
    b"client_no_context_takeover",
    b"server_max_window_bits",
    b"client_max_window_bits",
    b"; ",
    b", ",
    b"=",
    b"\"",
    b"8",
    b"9",
    b"12",
    b"15",
    b"\\",
    b"\n",
    b" ",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let policy = ServerPolicy {
        server_no_context_takeover: selector & 1 != 0,
        client_no_context_takeover: selector & 2 != 0,
        server_max_window_bits: 9 + (selector >> 2) % 7,
        client_max_window_bits: 9 + (selector >> 5) % 7,
        accept_8_bit_window: selector & 0x80 != 0,
    };
    // Bytes 0xf0..=0xff stand for the words of the grammar, so that the fuzzer reaches
    // well-formed offers without a dictionary; the rest are themselves. Then several header
    // lines, split at '\n'.
    let mut text = Vec::with_capacity(rest.len() * 4);
    for &b in rest {
        match WORDS.get(usize::from(b.wrapping_sub(0xf0))) {
            Some(word) if b >= 0xf0 => text.extend_from_slice(word),
            _ => text.push(b),
        }
    }
    let values: Vec<&[u8]> = text.split(|&b| b == b'\n').collect();

    // The grammar: every parameter name is a token, every value a token or quoted string.
    for element in elements(values.iter().copied()).flatten() {
        assert!(!element.name().is_empty());
        for param in element.params().flatten() {
            assert!(!param.name.is_empty());
            if let Some(value) = param.value {
                assert!(!value.raw().is_empty());
                let _ = value.unescaped().count();
                let _ = value.small_decimal();
            }
        }
    }

    let negotiated = policy.negotiate(values.iter().copied());
    let first = elements(values.iter().copied()).find_map(|e| {
        let e = e.ok()?;
        let params = policy.accept(Ok(e)).ok()?;
        Some((RawParams::parse(&e).ok()?, params))
    });
    assert_eq!(negotiated, first.map(|(_, params)| params));
    let (Some(params), Some((offer, _))) = (negotiated, first) else { return };

    let response = params.to_string();
    let response_values = [response.as_bytes()];
    let mut reparsed = elements(response_values);
    let element = reparsed.next().unwrap().unwrap();
    assert!(reparsed.next().is_none());
    let raw = RawParams::parse(&element).unwrap();
    assert_eq!(raw.server_no_context_takeover, params.server_no_context_takeover);
    assert_eq!(raw.client_no_context_takeover, params.client_no_context_takeover);
    assert_eq!(raw.server_max_window_bits, params.server_max_window_bits);
    assert_eq!(raw.client_max_window_bits, params.client_max_window_bits.map(Some));

    let client = ClientOffer {
        server_no_context_takeover: offer.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover,
        server_max_window_bits: offer.server_max_window_bits,
        client_max_window_bits: offer.client_max_window_bits,
        accept_8_bit_window: true,
    };
    assert_eq!(client.check_response(response_values), Ok(Some(params)));
    // And the client's own offer string reads back as the offer.
    let offer_string = client.to_string();
    let offer_element = elements([offer_string.as_bytes()]).next().unwrap().unwrap();
    assert_eq!(RawParams::parse(&offer_element), Ok(offer));
});
