//! ferric's iSCSI initiator against tgtd (a real, independent target) and against ferric's own
//! target (over TCP and over an in-memory duplex on a paused clock), byte-checked.

mod iscsi_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ferric_agent::iscsi_target::{Target, TargetConfig, spawn_target};
use ferric_disk::blockdev::{BlockDevice, FileDisk, MemDisk};
use ferric_disk::iscsi::ChapCredentials;
use ferric_service::iscsi::initiator::{
    CopyOptions, Initiator, InitiatorConfig, InitiatorError, Session, copy_image, copy_image_over,
};
use iscsi_support::{Tgtd, pattern, scratch};

const INITIATOR: &str = "iqn.2024-01.org.ferric:conductor";

fn creds(u: &str, p: &str) -> Option<ChapCredentials> {
    Some(ChapCredentials { username: u.into(), secret: p.into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_an_image_to_tgtd_and_verifies() {
    let dir = scratch();
    let backing = dir.path().join("tgt.img");
    std::fs::write(&backing, vec![0u8; 48 << 20]).unwrap();
    let tgtd = Tgtd::start(&backing, "iqn.2024-01.org.ferric:tgtd", None);
    // An odd length: the last block is zero-padded.
    let image = pattern((20 << 20) + 1000, 1);
    let mut cfg = InitiatorConfig::new(INITIATOR, &tgtd.iqn);
    cfg.lun = 1;
    let seen = Arc::new(AtomicU64::new(0));
    let s2 = seen.clone();
    let opts = CopyOptions { verify: true, progress: Some(Arc::new(move |n| s2.store(n, Ordering::Relaxed))) };
    let report = copy_image(tgtd.portal, &cfg, std::io::Cursor::new(image.clone()), opts).await.unwrap();
    assert_eq!(report.bytes, image.len() as u64);
    assert!(report.verified);
    assert_eq!(report.capacity.bytes(), 48 << 20);
    assert_eq!(seen.load(Ordering::Relaxed), image.len() as u64);
    drop(tgtd);
    let disk = std::fs::read(&backing).unwrap();
    assert_eq!(&disk[..image.len()], &image[..]);
    assert!(disk[image.len()..].iter().all(|&b| b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tgtd_with_initial_r2t_digests_and_small_segments() {
    let dir = scratch();
    let backing = dir.path().join("tgt.img");
    std::fs::write(&backing, vec![0u8; 16 << 20]).unwrap();
    let tgtd = Tgtd::start(&backing, "iqn.2024-01.org.ferric:tgtd2", None);
    let image = pattern(9 << 20, 2);
    let mut cfg = InitiatorConfig::new(INITIATOR, &tgtd.iqn);
    cfg.lun = 1;
    cfg.initial_r2t = true;
    cfg.immediate_data = false;
    cfg.header_digest = true;
    cfg.data_digest = true;
    cfg.max_burst_length = 64 * 1024;
    cfg.max_recv_data_segment = 8192;
    let report = copy_image(
        tgtd.portal,
        &cfg,
        std::io::Cursor::new(image.clone()),
        CopyOptions { verify: true, progress: None },
    )
    .await
    .unwrap();
    assert!(report.verified);
    drop(tgtd);
    assert_eq!(&std::fs::read(&backing).unwrap()[..image.len()], &image[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tgtd_chap_success_and_failure() {
    let dir = scratch();
    let backing = dir.path().join("tgt.img");
    std::fs::write(&backing, vec![0u8; 4 << 20]).unwrap();
    let tgtd = Tgtd::start(&backing, "iqn.2024-01.org.ferric:tgtd3", Some(("deployer", "s3cret-pass12")));
    let image = pattern(1 << 20, 3);
    let mut cfg = InitiatorConfig::new(INITIATOR, &tgtd.iqn);
    cfg.lun = 1;
    cfg.chap = creds("deployer", "s3cret-pass12");
    copy_image(tgtd.portal, &cfg, std::io::Cursor::new(image.clone()), CopyOptions::default()).await.unwrap();
    cfg.chap = creds("deployer", "wrong-password1");
    let err =
        copy_image(tgtd.portal, &cfg, std::io::Cursor::new(image.clone()), CopyOptions::default()).await.unwrap_err();
    assert!(matches!(err, InitiatorError::AuthenticationFailed(..)), "{err}");
    cfg.chap = None;
    let err =
        copy_image(tgtd.portal, &cfg, std::io::Cursor::new(image.clone()), CopyOptions::default()).await.unwrap_err();
    assert!(matches!(err, InitiatorError::AuthenticationFailed(..) | InitiatorError::Login(_)), "{err}");
    drop(tgtd);
    assert_eq!(&std::fs::read(&backing).unwrap()[..image.len()], &image[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferric_initiator_to_ferric_target_over_tcp() {
    let dir = scratch();
    let path = dir.path().join("disk.img");
    std::fs::write(&path, vec![0u8; 32 << 20]).unwrap();
    let disk = Arc::new(FileDisk::open(&path).unwrap().with_block_size(512).unwrap());
    let mut tcfg = TargetConfig::new("iqn.2024-01.org.ferric:node1");
    tcfg.chap = creds("conductor", "node1-secret");
    let h = spawn_target(tcfg, disk, "127.0.0.1:0".parse().unwrap()).await.unwrap();
    let image = pattern((10 << 20) + 512 * 3 + 17, 4);

    // Discovery with CHAP.
    let mut cfg = InitiatorConfig::new(INITIATOR, h.iqn());
    cfg.chap = creds("conductor", "node1-secret");
    let sock = tokio::net::TcpStream::connect(h.local_addr()).await.unwrap();
    let found = Initiator::discover(sock, &cfg).await.unwrap();
    assert_eq!(found, vec![(h.iqn().to_string(), vec![format!("{},1", h.local_addr())])]);

    // Several configurations: the default (unsolicited bursts), R2T-only, digests.
    for (i, (initial_r2t, immediate, digests)) in
        [(false, true, false), (true, false, false), (true, true, true)].into_iter().enumerate()
    {
        let mut cfg = cfg.clone();
        cfg.initial_r2t = initial_r2t;
        cfg.immediate_data = immediate;
        cfg.header_digest = digests;
        cfg.data_digest = digests;
        cfg.max_burst_length = 256 * 1024;
        let img = pattern(image.len() - i * 4096, 10 + i as u64);
        let r = copy_image(
            h.local_addr(),
            &cfg,
            std::io::Cursor::new(img.clone()),
            CopyOptions { verify: true, progress: None },
        )
        .await
        .unwrap();
        assert!(r.verified);
        assert_eq!(&std::fs::read(&path).unwrap()[..img.len()], &img[..], "config {i}");
    }

    // Wrong secret is refused.
    let mut bad = cfg.clone();
    bad.chap = creds("conductor", "not-the-secret");
    let err = copy_image(h.local_addr(), &bad, std::io::Cursor::new(image.clone()), CopyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InitiatorError::AuthenticationFailed(2, 1)), "{err}");

    // Too large an image is refused before the disk overflows.
    let mut big = cfg.clone();
    big.chap = creds("conductor", "node1-secret");
    let err = copy_image(h.local_addr(), &big, std::io::Cursor::new(vec![1u8; (32 << 20) + 1]), CopyOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, InitiatorError::ImageTooLarge { .. }), "{err}");
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn duplex_on_a_paused_clock() {
    // The simulation's path: the same target and initiator over tokio::io::duplex, MemDisk.
    let disk = Arc::new(MemDisk::with_block_size(8 << 20, 4096));
    let mut tcfg = TargetConfig::new("iqn.2024-01.org.ferric:sim");
    tcfg.rng_seed = Some(7);
    tcfg.chap = creds("sim", "sim-secret-123");
    let target = Target::new(tcfg, disk.clone()).unwrap();
    let image = pattern(3 << 20, 5);
    let mut cfg = InitiatorConfig::new(INITIATOR, "iqn.2024-01.org.ferric:sim");
    cfg.chap = creds("sim", "sim-secret-123");
    cfg.isid = Some([0x80, 0, 0, 0, 0, 1]);
    let (a, b) = tokio::io::duplex(64 * 1024);
    let t = tokio::spawn(async move { target.serve_connection(b, None).await });
    let r = copy_image_over(a, &cfg, std::io::Cursor::new(image.clone()), CopyOptions { verify: true, progress: None })
        .await
        .unwrap();
    assert!(r.verified);
    assert_eq!(r.capacity.block_size, 4096);
    t.await.unwrap().unwrap();
    assert_eq!(&disk.contents()[..image.len()], &image[..]);
}

#[tokio::test(start_paused = true)]
async fn session_read_write_and_check_conditions() {
    let disk = Arc::new(MemDisk::with_block_size(1 << 20, 512));
    let target = Target::new(TargetConfig::new("iqn.2024-01.org.ferric:rw"), disk.clone()).unwrap();
    let (a, b) = tokio::io::duplex(1 << 20);
    let t = tokio::spawn(async move { target.serve_connection(b, None).await });
    let mut s = Session::login(a, &InitiatorConfig::new(INITIATOR, "iqn.2024-01.org.ferric:rw")).await.unwrap();
    let cap = s.read_capacity().await.unwrap();
    assert_eq!(cap.num_blocks, 2048);
    s.write(2040, 512, bytes::Bytes::from(pattern(8 * 512, 9))).await.unwrap();
    assert_eq!(s.read(cap, 2040, 8).await.unwrap(), pattern(8 * 512, 9));
    // Out of range: CHECK CONDITION, ILLEGAL REQUEST / LBA OUT OF RANGE.
    match s.read(cap, 2047, 2).await {
        Err(InitiatorError::Scsi { status: 2, sense: Some(sn) }) => assert_eq!((sn.key, sn.asc), (5, 0x21)),
        other => panic!("{other:?}"),
    }
    match s.write(2048, 512, bytes::Bytes::from(vec![1u8; 512])).await {
        Err(InitiatorError::Scsi { status: 2, sense: Some(sn) }) => assert_eq!((sn.key, sn.asc), (5, 0x21)),
        other => panic!("{other:?}"),
    }
    // Unknown opcode.
    let mut cdb = [0u8; 16];
    cdb[0] = 0xc7;
    let c = s.command(&cdb, 0, bytes::Bytes::new()).await.unwrap();
    assert_eq!((c.status, c.sense.map(|s| (s.key, s.asc))), (2, Some((5, 0x20))));
    s.synchronize_cache().await.unwrap();
    s.logout().await.unwrap();
    t.await.unwrap().unwrap();
    assert_eq!(disk.read_at(2040 * 512, 8 * 512).await.unwrap(), pattern(8 * 512, 9));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_iscsi_target_wipes_metadata_and_stops() {
    // IPA's iscsi.start_iscsi_target(iqn, portal_port, wipe_disk_metadata) as the agent calls it.
    let disk = Arc::new(MemDisk::with_block_size(8 << 20, 512));
    disk.write_at(0, bytes::Bytes::from(vec![0xeeu8; 1 << 20])).await.unwrap();
    disk.write_at((8 << 20) - 4096, bytes::Bytes::from(vec![0xeeu8; 4096])).await.unwrap();
    disk.write_at(4 << 20, bytes::Bytes::from(vec![0x55u8; 512])).await.unwrap();
    let params = ferric_agent::iscsi_target::StartIscsiTargetParams {
        iqn: None,
        portal_port: Some(0),
        wipe_disk_metadata: true,
        listen_ip: "127.0.0.1".parse().unwrap(),
        chap: None,
    };
    let h = ferric_agent::iscsi_target::start_iscsi_target(disk.clone(), params).await.unwrap();
    assert!(h.iqn().starts_with("iqn.2008-10.org.openstack:"), "{}", h.iqn());
    let sock = tokio::net::TcpStream::connect(h.local_addr()).await.unwrap();
    let mut s = Session::login(sock, &InitiatorConfig::new(INITIATOR, h.iqn())).await.unwrap();
    let cap = s.read_capacity().await.unwrap();
    assert_eq!(s.read(cap, 0, 8).await.unwrap(), vec![0u8; 4096]);
    assert_eq!(s.read(cap, cap.num_blocks - 8, 8).await.unwrap(), vec![0u8; 4096]);
    // Data outside the metadata areas is untouched.
    assert_eq!(s.read(cap, (4 << 20) / 512, 1).await.unwrap(), vec![0x55u8; 512]);
    s.logout().await.unwrap();
    let addr = h.local_addr();
    h.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "listener must be closed");
}
