//! Property tests of the stream decoder, standing in for a `cargo fuzz` target (nightly Rust is
//! not available on the build machines): arbitrary bytes in arbitrary chunks never panic, never
//! grow the buffer past one frame, and decode to the same frames and errors however they are
//! chunked.

use std::sync::Arc;

use proptest::prelude::*;
use sockwire::decoder::{Decoder, Event};
use sockwire::error::Error;
use sockwire::format::{Format, Order, Value};

fn formats() -> Vec<Arc<Format>> {
    vec![
        Arc::new(
            Format::from_struct("!IHB", &["length", "msg_id", "flags"], false, 64, &[]).unwrap(),
        ),
        Arc::new(Format::from_struct("<hI", &["length", "msg_id"], true, 40, &[]).unwrap()),
        Arc::new(
            Format::from_struct(
                "!2sHB",
                &["magic", "length", "msg_id"],
                false,
                32,
                &[("magic", Value::Bytes((*b"\xca\xfe").into()))],
            )
            .unwrap(),
        ),
        Arc::new(Format::length_field(1, 2, -3, 3, 48, Order::Big, &[]).unwrap()),
        Arc::new(Format::length_field(0, 3, 2, 0, 48, Order::Little, &[]).unwrap()),
        Arc::new(Format::length_field(0, 8, 0, 8, 48, Order::Big, &[]).unwrap()),
        Arc::new(Format::varint(100)),
    ]
}

/// Splits `data` at the given cut points (taken modulo its length).
fn chunks(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        .collect()
}

/// Everything a decoder produces for `parts`: frame bodies and error kinds, in order.
fn decode(format: &Arc<Format>, parts: &[Vec<u8>]) -> Vec<Result<Vec<u8>, &'static str>> {
    let mut d = Decoder::new(format.clone());
    let limit = format.max_frame() as usize;
    let mut out = Vec::new();
    for part in parts {
        d.feed(part, |event| {
            out.push(match event {
                Event::Frame { frame, body_start } => Ok(frame[body_start..].to_vec()),
                Event::Bad(Error::FrameTooLarge { .. }) => Err("too large"),
                Event::Bad(Error::Protocol(_)) => Err("protocol"),
                Event::Bad(_) => Err("other"),
            })
        });
        // Whatever came, bad frames included, at most one unfinished frame waits.
        assert!(
            d.pending() <= limit,
            "pending {} > frame limit {limit}",
            d.pending()
        );
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn garbage_in_any_chunking_decodes_alike_and_stays_bounded(
        data in proptest::collection::vec(any::<u8>(), 0..600),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        for format in formats() {
            let whole = decode(&format, std::slice::from_ref(&data));
            prop_assert_eq!(decode(&format, &chunks(&data, &cuts)), whole);
        }
    }

    #[test]
    fn any_chunking_of_a_valid_stream_gives_the_same_frames(
        bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
        one_byte in any::<bool>(),
    ) {
        for format in formats() {
            let mut stream = Vec::new();
            for (i, body) in bodies.iter().enumerate() {
                // Some formats cannot carry some bodies (a negative adjusted length): those
                // are refused by pack_into with an error and left out of the stream.
                let mut frame = Vec::new();
                let msg_id = if format.fields.iter().any(|f| &*f.name == "msg_id") {
                    i as i64 % 200
                } else {
                    0
                };
                if format.pack_into(&mut frame, body, msg_id, 0, &[]).is_ok() {
                    stream.extend(frame);
                }
            }
            let whole = decode(&format, &[stream.clone()]);
            let parts = if one_byte {
                stream.iter().map(|b| vec![*b]).collect()
            } else {
                chunks(&stream, &cuts)
            };
            prop_assert_eq!(decode(&format, &parts), whole);
        }
    }

    #[test]
    fn a_too_large_frame_never_hides_the_frames_after_it(
        before in proptest::collection::vec(any::<u8>(), 0..20),
        oversize in 65u32..5000,
        after in proptest::collection::vec(any::<u8>(), 0..20),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let format = Arc::new(Format::from_struct("!I", &["length"], false, 64, &[]).unwrap());
        let mut stream = Vec::new();
        format.pack_into(&mut stream, &before, 0, 0, &[]).unwrap();
        stream.extend(oversize.to_be_bytes());
        stream.extend(std::iter::repeat_n(0xAB, oversize as usize));
        format.pack_into(&mut stream, &after, 0, 0, &[]).unwrap();
        let out = decode(&format, &chunks(&stream, &cuts));
        prop_assert_eq!(out, vec![Ok(before.clone()), Err("too large"), Ok(after.clone())]);
    }
}
