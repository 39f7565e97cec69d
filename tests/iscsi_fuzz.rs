//! Malformed, truncated and out-of-order PDUs: the codec never panics, and the target answers
//! with a Reject (or a login reject) or drops the connection, never panics or hangs.

use std::sync::Arc;

use bytes::Bytes;
use ferric_agent::iscsi_target::{Target, TargetConfig};
use ferric_disk::blockdev::MemDisk;
use ferric_disk::iscsi::pdu::{self, Bhs, Framing, Opcode, Pdu, RESERVED_TAG, flags, stage};
use ferric_disk::iscsi::text::TextPairs;
use proptest::prelude::*;
use tokio::io::{AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};

const IQN: &str = "iqn.2024-01.org.ferric:fuzz";

fn framing(hd: bool, dd: bool) -> Framing {
    Framing { header_digest: hd, data_digest: dd, max_recv_data_segment: 1 << 16 }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), hd: bool, dd: bool) {
        let f = framing(hd, dd);
        let mut rest = &bytes[..];
        // Decode as many PDUs as the bytes hold; any outcome but a panic is fine.
        for _ in 0..64 {
            match pdu::decode_pdu(rest, &f) {
                Ok(Some((_, used))) => rest = &rest[used..],
                _ => break,
            }
        }
    }

    #[test]
    fn truncated_pdus_are_incomplete_not_errors(
        op in prop::sample::select(vec![0x00u8, 0x01, 0x03, 0x04, 0x05, 0x06, 0x21, 0x25, 0x31, 0x3f]),
        data in proptest::collection::vec(any::<u8>(), 0..300),
        ahs in 0usize..3,
        hd: bool, dd: bool,
        cut in any::<prop::sample::Index>(),
    ) {
        let f = framing(hd, dd);
        let mut b = Bhs::default();
        b.0[0] = op;
        let p = Pdu { bhs: b, ahs: vec![7u8; ahs * 4], data: Bytes::from(data) };
        let wire = pdu::encode_pdu(&p, &f);
        let (back, used) = pdu::decode_pdu(&wire, &f).unwrap().unwrap();
        prop_assert_eq!(used, wire.len());
        prop_assert_eq!(&back.data, &p.data);
        let n = cut.index(wire.len());
        prop_assert!(pdu::decode_pdu(&wire[..n], &f).unwrap().is_none());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = rt.block_on(async { let mut s = &wire[..n]; pdu::read_pdu(&mut s, &f).await });
        prop_assert!(matches!(r, Ok(None) | Err(pdu::PduError::Truncated)), "{:?}", r);
    }

    #[test]
    fn text_parsing_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = TextPairs::parse(&bytes);
    }
}

/// A PDU an initiator might send, with fields drawn near the values that matter.
fn arb_pdu() -> impl Strategy<Value = Pdu> {
    let op = prop::sample::select(vec![
        0x00u8, 0x01, 0x01, 0x01, 0x02, 0x03, 0x04, 0x05, 0x05, 0x05, 0x06, 0x10, 0x1c, 0x21, 0x3f,
    ]);
    let cdb_op = prop::sample::select(vec![
        0x00u8, 0x03, 0x12, 0x1a, 0x25, 0x28, 0x2a, 0x35, 0x5a, 0x88, 0x8a, 0x91, 0x9e, 0xa0, 0xff,
    ]);
    (
        op,
        any::<bool>(),
        any::<u8>(),
        0u32..6,
        prop_oneof![Just(RESERVED_TAG), 0u32..4, any::<u32>()],
        0u32..8,
        prop_oneof![0u32..4096, any::<u32>()],
        0u32..4,
        cdb_op,
        proptest::collection::vec(any::<u8>(), 15),
        proptest::collection::vec(any::<u8>(), 0..1600),
    )
        .prop_map(|(op, imm, fl, itt, ttt, cmdsn, off, datasn, cop, cdb_rest, data)| {
            let mut b = Bhs::default();
            b.0[0] = op;
            b.set_immediate(imm).set_flags(fl).set_itt(itt).set_ttt(ttt);
            b.set_cmd_sn(cmdsn).set_data_sn(datasn).set_buffer_offset(off);
            if op == 0x01 {
                let mut cdb = vec![cop];
                cdb.extend_from_slice(&cdb_rest);
                // Keep LBAs small so some commands are in range.
                cdb[2..5].fill(0);
                b.set_cdb(&cdb);
                b.set_ttt(ttt % 8192);
            }
            Pdu::with_data(b, data)
        })
}

async fn login(w: &mut WriteHalf<DuplexStream>, r: &mut ReadHalf<DuplexStream>) -> Pdu {
    let mut keys = TextPairs::new();
    keys.push("InitiatorName", "iqn.2024-01.org.ferric:fuzzer").push("TargetName", IQN);
    keys.push("SessionType", "Normal").push("ImmediateData", "Yes").push("InitialR2T", "No");
    keys.push("MaxRecvDataSegmentLength", "8192").push("FirstBurstLength", "4096");
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.set_immediate(true).set_flags(pdu::login_flags(true, false, stage::OPERATIONAL, stage::FULL_FEATURE));
    b.set_isid([0x80, 0, 0, 0, 0, 9]).set_itt(0).set_cmd_sn(0);
    pdu::write_pdu(w, &Pdu::with_data(b, keys.encode()), &Framing::login()).await.unwrap();
    w.flush().await.unwrap();
    let resp = pdu::read_pdu(r, &framing(false, false)).await.unwrap().unwrap();
    assert_eq!(resp.bhs.login_status(), (0, 0));
    assert!(resp.bhs.final_bit());
    resp
}

fn setup() -> (Arc<Target>, Arc<MemDisk>) {
    let disk = Arc::new(MemDisk::with_block_size(1 << 20, 512));
    let mut cfg = TargetConfig::new(IQN);
    cfg.rng_seed = Some(1);
    (Target::new(cfg, disk.clone()).unwrap(), disk)
}

/// Runs `pdus` against a fresh target (optionally after a valid login), reading every response
/// until the target closes or we close; returns the opcodes the target sent.
fn run_sequence(pdus: Vec<Pdu>, logged_in: bool) -> Vec<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
    rt.block_on(async move {
        let (target, _) = setup();
        let (ours, theirs) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move { target.serve_connection(theirs, None).await });
        let (mut r, mut w) = tokio::io::split(ours);
        if logged_in {
            login(&mut w, &mut r).await;
        }
        let reader = tokio::spawn(async move {
            let mut seen = Vec::new();
            // Responses must always be well-formed PDUs.
            while let Ok(Some(p)) = pdu::read_pdu(&mut r, &framing(false, false)).await {
                seen.push(p.bhs.raw_opcode());
            }
            seen
        });
        for p in &pdus {
            if pdu::write_pdu(&mut w, p, &Framing::login()).await.is_err() {
                break;
            }
        }
        let _ = w.flush().await;
        let _ = w.shutdown().await;
        drop(w);
        // The target must finish on its own (EOF or protocol error), never panic.
        let res = server.await;
        assert!(res.is_ok(), "target task panicked: {res:?}");
        reader.await.unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_after_login(pdus in proptest::collection::vec(arb_pdu(), 1..24)) {
        let seen = run_sequence(pdus, true);
        // Only target opcodes come back.
        for op in seen {
            prop_assert!(matches!(op, 0x20..=0x26 | 0x31 | 0x32 | 0x3f), "unexpected opcode {op:#x}");
        }
    }

    #[test]
    fn random_sequences_before_login(pdus in proptest::collection::vec(arb_pdu(), 1..8)) {
        let seen = run_sequence(pdus, false);
        prop_assert!(seen.iter().all(|&op| op == 0x23), "{seen:?}");
    }
}

fn scsi_cmd(itt: u32, cmd_sn: u32, cdb: &[u8], edtl: u32, fl: u8) -> Pdu {
    let mut b = Bhs::new(Opcode::ScsiCommand);
    b.set_flags(fl).set_itt(itt).set_ttt(edtl).set_cmd_sn(cmd_sn).set_cdb(cdb);
    Pdu::new(b)
}

fn nop(itt: u32, cmd_sn: u32) -> Pdu {
    let mut b = Bhs::new(Opcode::NopOut);
    b.set_immediate(true).set_flags(flags::FINAL).set_itt(itt).set_ttt(RESERVED_TAG).set_cmd_sn(cmd_sn);
    Pdu::new(b)
}

/// Sends PDUs after login and collects the target's answers (opcode, byte 2) until it closes.
async fn exchange(pdus: Vec<Pdu>) -> (Vec<(u8, u8)>, bool) {
    let (target, _) = setup();
    let (ours, theirs) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move { target.serve_connection(theirs, None).await });
    let (mut r, mut w) = tokio::io::split(ours);
    let lr = login(&mut w, &mut r).await;
    let exp_cmd_sn = lr.bhs.exp_cmd_sn();
    for mut p in pdus {
        // Sequence numbers relative to the login's ExpCmdSN.
        let sn = p.bhs.cmd_sn();
        p.bhs.set_cmd_sn(exp_cmd_sn.wrapping_add(sn));
        pdu::write_pdu(&mut w, &p, &Framing::login()).await.unwrap();
    }
    w.flush().await.unwrap();
    let mut got = Vec::new();
    let mut closed = false;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), pdu::read_pdu(&mut r, &framing(false, false)))
            .await
        {
            Ok(Ok(Some(p))) => got.push((p.bhs.raw_opcode(), p.bhs.byte2())),
            Ok(_) => {
                closed = true;
                break;
            }
            Err(_) => break,
        }
    }
    let _ = w.shutdown().await;
    let _ = server.await.unwrap();
    (got, closed)
}

#[tokio::test(start_paused = true)]
async fn command_before_login_gets_a_login_reject() {
    let (target, _) = setup();
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let server = tokio::spawn(async move { target.serve_connection(theirs, None).await });
    let (mut r, mut w) = tokio::io::split(ours);
    pdu::write_pdu(&mut w, &scsi_cmd(1, 0, &[0x00], 0, flags::FINAL), &Framing::login()).await.unwrap();
    w.flush().await.unwrap();
    let p = pdu::read_pdu(&mut r, &Framing::login()).await.unwrap().unwrap();
    assert_eq!(p.bhs.opcode(), Some(Opcode::LoginResponse));
    assert_eq!(p.bhs.login_status(), (0x02, 0x0b));
    assert!(pdu::read_pdu(&mut r, &Framing::login()).await.unwrap().is_none(), "connection must close");
    assert!(server.await.unwrap().is_err());
}

#[tokio::test(start_paused = true)]
async fn unknown_itt_and_opcode_are_rejected_and_the_session_goes_on() {
    let mut data_out = Bhs::new(Opcode::DataOut);
    data_out.set_flags(flags::FINAL).set_itt(77).set_ttt(RESERVED_TAG);
    let mut weird = Bhs::default();
    weird.0[0] = 0x1c;
    let (got, closed) = exchange(vec![Pdu::with_data(data_out, vec![0u8; 512]), Pdu::new(weird), nop(5, 0)]).await;
    assert_eq!(got, vec![(0x3f, 0x09), (0x3f, 0x05), (0x20, 0)], "{got:?}");
    assert!(!closed || got.len() == 3);
}

#[tokio::test(start_paused = true)]
async fn login_in_full_feature_phase_drops_the_connection() {
    let mut b = Bhs::new(Opcode::LoginRequest);
    b.set_immediate(true).set_flags(pdu::login_flags(true, false, 1, 3));
    let (got, closed) = exchange(vec![Pdu::new(b), nop(5, 0)]).await;
    assert_eq!(got, vec![(0x3f, 0x04)]);
    assert!(closed);
}

#[tokio::test(start_paused = true)]
async fn oversized_data_segment_drops_the_connection() {
    // Our MaxRecvDataSegmentLength is 256 KiB: a bigger segment cannot be trusted.
    let p = Pdu::with_data(nop(5, 0).bhs, vec![0u8; (256 << 10) + 4]);
    let (got, closed) = exchange(vec![p]).await;
    assert_eq!(got, vec![(0x3f, 0x04)]);
    assert!(closed);
}

#[tokio::test(start_paused = true)]
async fn write_with_bad_offsets_and_out_of_range_lba() {
    // WRITE(10) of 2 blocks at LBA 0, no immediate data, unsolicited Data-Out at a wrong
    // offset -> Reject (protocol error) for that PDU; the session continues.
    let w10 = [0x2a, 0, 0, 0, 0, 0, 0, 0, 2, 0];
    let cmd = scsi_cmd(9, 0, &w10, 1024, flags::WRITE);
    let mut d = Bhs::new(Opcode::DataOut);
    d.set_flags(flags::FINAL).set_itt(9).set_ttt(RESERVED_TAG).set_buffer_offset(512);
    // READ(10) beyond the end of the 1 MiB disk -> CHECK CONDITION.
    let r10 = [0x28, 0, 0, 0, 0x10, 0, 0, 0, 1, 0];
    let read = scsi_cmd(10, 1, &r10, 512, flags::FINAL | flags::READ);
    let (got, _) = exchange(vec![cmd, Pdu::with_data(d, vec![1u8; 512]), read, nop(11, 2)]).await;
    assert_eq!(got, vec![(0x3f, 0x04), (0x21, 0), (0x20, 0)], "{got:?}");
}
