//! TFTP codec, path resolution and transfer state machine under arbitrary input: no panics, and
//! the window never runs past the file or backwards.

use ferric_service::pxe::tftp::packet::{Mode, Packet, Request};
use ferric_service::pxe::tftp::{Limits, ReadTransfer, Step, negotiate, resolve};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
        let _ = Packet::decode(&bytes);
    }

    #[test]
    fn window_stays_in_bounds(
        size in 0u64..200_000,
        blksize in 8u32..2000,
        window in 1u32..70,
        events in proptest::collection::vec(prop_oneof![any::<u16>().prop_map(Some), Just(None)], 0..300),
    ) {
        let req = Request {
            write: false,
            filename: "f".into(),
            mode: Mode::Octet,
            options: vec![("blksize".into(), blksize.to_string()), ("windowsize".into(), window.to_string())],
        };
        let limits = Limits::default();
        let neg = negotiate(&req, size, &limits);
        let mut t = ReadTransfer::new(size, &neg, &limits);
        let total = t.total_blocks();
        let mut step = t.start();
        let mut highest = 0u64;
        for ev in events {
            if let Step::Send(r) = &step {
                prop_assert!(*r.start() >= 1 && *r.end() <= total && r.start() <= r.end());
                prop_assert!(r.end() - r.start() < u64::from(neg.windowsize));
                for abs in r.clone() {
                    let (off, len) = t.block_extent(abs);
                    prop_assert!(off + len as u64 <= size);
                }
                highest = highest.max(*r.end());
            }
            if matches!(step, Step::Done | Step::Abort | Step::Fail(..)) {
                break;
            }
            step = match ev {
                Some(ack) => t.on_packet(&Packet::Ack(ack)),
                None => t.on_timeout(),
            };
        }
        prop_assert!(highest <= total);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn resolve_never_escapes(name in "[a-z./\\\\]{0,40}") {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("a"), b"x").unwrap();
        std::fs::write(dir.path().join("b"), b"x").unwrap();
        if let Ok(p) = resolve(&root, &name) {
            prop_assert!(p.starts_with(root.canonicalize().unwrap()));
        }
    }
}
