//! Copy a 1 GiB image over iSCSI on loopback, in the same run:
//!   ferric initiator -> ferric target (`ferric-agent iscsi-target`, file-backed), against
//!   `qemu-img convert -O raw` (libiscsi) -> tgtd (file-backed).
//! Both end with a SYNCHRONIZE CACHE that the target turns into fdatasync: qemu-img runs with
//! `-t writeback` so that it flushes too (its default for the output, `unsafe`, skips the flush);
//! the default is measured as well and printed for reference.
//!
//! `cargo bench --bench iscsi` (release profile). FERRIC_BENCH_MIB and FERRIC_BENCH_ROUNDS
//! change the image size (default 1024) and the rounds (default 3, median reported).

#[path = "../tests/iscsi_support/mod.rs"]
mod iscsi_support;

use std::io::Write;
use std::process::Command;
use std::time::Instant;

use ferric_service::iscsi::initiator::{CopyOptions, InitiatorConfig, copy_image};
use iscsi_support::{AgentTarget, Tgtd, pattern};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn same_prefix(a: &std::path::Path, b: &std::path::Path, len: u64) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = (std::fs::File::open(a).unwrap(), std::fs::File::open(b).unwrap());
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    let mut left = len;
    while left > 0 {
        let n = left.min(1 << 20) as usize;
        fa.read_exact(&mut ba[..n]).unwrap();
        fb.read_exact(&mut bb[..n]).unwrap();
        if ba[..n] != bb[..n] {
            return false;
        }
        left -= n as u64;
    }
    true
}

fn fresh(path: &std::path::Path, size: u64) {
    let _ = std::fs::remove_file(path);
    let f = std::fs::File::create(path).unwrap();
    f.set_len(size).unwrap();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let mib = env_num("FERRIC_BENCH_MIB", 1024);
    let rounds = env_num("FERRIC_BENCH_ROUNDS", 3).max(1);
    let size = mib << 20;
    let base = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target").join("iscsi-bench");
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let src = dir.path().join("image.raw");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&src).unwrap());
        for i in 0..mib {
            f.write_all(&pattern(1 << 20, i + 1)).unwrap();
        }
        f.flush().unwrap();
        // Nothing of the source may still be dirty when the timed copies start.
        f.into_inner().unwrap().sync_all().unwrap();
    }
    let ferric_disk = dir.path().join("ferric-disk.raw");
    let tgt_disk = dir.path().join("tgtd-disk.raw");
    fresh(&ferric_disk, size);
    fresh(&tgt_disk, size);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let target =
        AgentTarget::start(iscsi_support::agent_bin::path(), &ferric_disk, "iqn.2024-01.org.ferric:bench", None);
    let tgtd = Tgtd::start(&tgt_disk, "iqn.2024-01.org.ferric:bench-tgtd", None);
    let url = format!("iscsi://{}/{}/1", tgtd.portal, tgtd.iqn);
    let cfg = InitiatorConfig::new("iqn.2024-01.org.ferric:bench-initiator", &target.iqn);

    let (mut ferric, mut qemu_wb, mut qemu_default) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let t = Instant::now();
        let report = rt
            .block_on(async {
                let f = tokio::fs::File::open(&src).await?;
                copy_image(target.portal, &cfg, f, CopyOptions::default()).await.map_err(std::io::Error::other)
            })
            .expect("ferric copy");
        let secs = t.elapsed().as_secs_f64();
        assert_eq!(report.bytes, size);
        ferric.push(size as f64 / secs / 1e6);

        for (cache, out) in [(Some("writeback"), &mut qemu_wb), (None, &mut qemu_default)] {
            let mut cmd = Command::new("qemu-img");
            cmd.args(["convert", "-n", "-f", "raw", "-O", "raw"]);
            if let Some(c) = cache {
                cmd.args(["-t", c]);
            }
            cmd.arg(&src).arg(&url);
            let t = Instant::now();
            let st = cmd.status().expect("qemu-img");
            let secs = t.elapsed().as_secs_f64();
            assert!(st.success(), "qemu-img convert failed");
            out.push(size as f64 / secs / 1e6);
        }
        eprintln!(
            "round {}: ferric {:.0} MB/s, qemu-img(-t writeback)->tgtd {:.0} MB/s, qemu-img(default)->tgtd {:.0} MB/s",
            round + 1,
            ferric[round as usize],
            qemu_wb[round as usize],
            qemu_default[round as usize]
        );
    }
    drop(tgtd);
    drop(target);
    assert!(same_prefix(&src, &ferric_disk, size), "ferric target disk differs from the image");
    assert!(same_prefix(&src, &tgt_disk, size), "tgtd disk differs from the image");
    let (f, q, qd) = (median(ferric), median(qemu_wb), median(qemu_default));
    println!("iscsi copy of {mib} MiB over loopback, median of {rounds} rounds (byte-checked):");
    println!("  ferric initiator -> ferric target           {f:8.0} MB/s");
    println!("  qemu-img -t writeback (libiscsi) -> tgtd    {q:8.0} MB/s");
    println!("  qemu-img default cache (no flush) -> tgtd   {qd:8.0} MB/s");
    println!("  ratio ferric / qemu-img->tgtd: {:.2}x (vs default cache: {:.2}x)", f / q, f / qd);
}
