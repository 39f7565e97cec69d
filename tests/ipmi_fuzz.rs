//! Hostile and truncated packets never panic either side: the virtual BMC's decoder (random
//! bytes, and every truncation/mutation of real session packets) and the client's decoders (the
//! codec directly, and a whole client talking to a BMC whose replies are corrupted).

use ferric_lab::machine::power::SimMachine;
use ferric_service::ipmi::codec;
use ferric_service::ipmi::{ChannelTransport, ClientConfig, Connector, IpmiClient, Target, Transport};
use ferric_sim::vbmc::{Bmc, BmcConfig, Faults, Peer};
use proptest::prelude::*;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;

fn bmc(seed: u64) -> Bmc {
    let machine = Arc::new(SimMachine::new("fuzz", Default::default()));
    let config = BmcConfig { seed, max_sessions: 64, cipher_suites: vec![0, 1, 2, 3, 17], ..Default::default() };
    Bmc::new("fuzz", config, machine, Arc::new(Faults::default())).unwrap()
}

/// Connector whose link goes through `relay`, which sees (and may change) every datagram.
struct RelayConnector<F> {
    relay: Arc<F>,
}

#[async_trait::async_trait]
impl<F> Connector for RelayConnector<F>
where
    F: Fn(Vec<u8>) -> std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>> + Send + Sync + 'static,
{
    async fn connect(&self, _: &str, _: u16) -> std::io::Result<Box<dyn Transport>> {
        let (to_bmc, mut from_client) = mpsc::channel::<Vec<u8>>(16);
        let (to_client, from_bmc) = mpsc::channel::<Vec<u8>>(16);
        let relay = self.relay.clone();
        tokio::spawn(async move {
            while let Some(p) = from_client.recv().await {
                if let Some(r) = relay(p).await {
                    let _ = to_client.try_send(r);
                }
            }
        });
        Ok(Box::new(ChannelTransport::new(to_bmc, from_bmc)))
    }
}

fn fuzz_config() -> ClientConfig {
    ClientConfig {
        attempt_timeout: Duration::from_millis(200),
        retries: 1,
        command_timeout: Duration::from_secs(2),
        rng_seed: Some(9),
        ..Default::default()
    }
}

/// Real packets of a full client session (every suite), and the BMC holding those sessions.
struct Corpus {
    bmc: Bmc,
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
}

fn corpus() -> &'static Corpus {
    static C: OnceLock<Corpus> = OnceLock::new();
    C.get_or_init(|| {
        let b = bmc(5);
        let log = Arc::new(Mutex::new((Vec::new(), Vec::new())));
        let (b2, log2) = (b.clone(), log.clone());
        let relay = Arc::new(move |p: Vec<u8>| {
            let (b, log) = (b2.clone(), log2.clone());
            Box::pin(async move {
                let r = b.on_datagram(Peer::Link(1), &p).await.map(|r| r.bytes);
                let mut l = log.lock().unwrap();
                l.0.push(p);
                if let Some(r) = &r {
                    l.1.push(r.clone());
                }
                r
            }) as std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>
        });
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        rt.block_on(async {
            for suite in [0u8, 1, 2, 3, 17] {
                let c = IpmiClient::new(
                    Target::new("bmc", "admin", "password").with_cipher_suite(suite),
                    Arc::new(RelayConnector { relay: relay.clone() }),
                    fuzz_config(),
                );
                c.power_on().await.unwrap();
                c.set_boot_device(ferric_service::ipmi::BootDevice::Pxe, true, true).await.unwrap();
                c.get_boot_device().await.unwrap();
                c.device_id().await.unwrap();
            }
        });
        let (requests, replies) = std::mem::take(&mut *log.lock().unwrap());
        Corpus { bmc: b, requests, replies }
    })
}

fn mutate(base: &[u8], cut: usize, flips: &[(usize, u8)]) -> Vec<u8> {
    let mut p = base[..cut.min(base.len())].to_vec();
    for (i, x) in flips {
        if !p.is_empty() {
            let n = p.len();
            p[i % n] ^= x;
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn bmc_survives_random_datagrams(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let b = &corpus().bmc;
        let _ = futures::executor::block_on(b.on_datagram(Peer::Link(2), &bytes));
        // RMCP/IPMI-looking prefixes reach deeper code.
        let mut p = vec![0x06, 0x00, 0xFF, 0x07];
        p.extend_from_slice(&bytes);
        let _ = futures::executor::block_on(b.on_datagram(Peer::Link(2), &p));
        let mut p = vec![0x06, 0x00, 0xFF, 0x07, 0x06];
        p.extend_from_slice(&bytes);
        let _ = futures::executor::block_on(b.on_datagram(Peer::Link(2), &p));
    }

    #[test]
    fn bmc_survives_truncated_and_mutated_session_packets(
        which in any::<prop::sample::Index>(),
        cut in 0usize..200,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
    ) {
        let c = corpus();
        let base: &Vec<u8> = which.get(&c.requests);
        let p = mutate(base, cut, &flips);
        let _ = futures::executor::block_on(c.bmc.on_datagram(Peer::Link(3), &p));
    }

    #[test]
    fn client_codec_survives_anything(
        which in any::<prop::sample::Index>(),
        cut in 0usize..200,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
        random in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let c = corpus();
        let keys = codec::Keys {
            suite: codec::Suite::from_id(17).unwrap(),
            k1: vec![1; 32],
            k2: vec![2; 32],
        };
        for p in [mutate(which.get::<Vec<u8>>(&c.replies), cut, &flips), random] {
            if let Some(codec::Incoming::V20 { encrypted, authenticated, payload, trailer, covered, .. }) =
                codec::parse_incoming(&p)
            {
                let _ = codec::open_payload(&keys, encrypted, authenticated, &payload, &trailer, &covered);
                let _ = codec::parse_ipmi_response(&payload);
            }
            let _ = codec::parse_ipmi_response(&p);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A whole client against a BMC whose every reply is truncated or corrupted (seeded per
    /// case): the client ends with an error or a result, never a panic or a hang.
    #[test]
    fn client_survives_a_hostile_bmc(
        seed in any::<u64>(),
        suite in prop::sample::select(vec![1u8, 2, 3, 17]),
        cut_each in any::<bool>(),
    ) {
        let b = bmc(seed);
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(seed));
        let relay = Arc::new(move |p: Vec<u8>| {
            let (b, counter) = (b.clone(), counter.clone());
            Box::pin(async move {
                let mut r = b.on_datagram(Peer::Link(4), &p).await?.bytes;
                let n = counter.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
                if r.is_empty() { return Some(r); }
                if cut_each {
                    r.truncate((n as usize) % (r.len() + 1));
                } else {
                    let i = (n as usize) % r.len();
                    r[i] ^= (n >> 32) as u8 | 1;
                }
                Some(r)
            }) as std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let c = IpmiClient::new(
                Target::new("bmc", "admin", "password").with_cipher_suite(suite),
                Arc::new(RelayConnector { relay }),
                fuzz_config(),
            );
            let _ = c.power_state().await;
            let _ = c.get_boot_device().await;
            let _ = c.device_id().await;
        });
    }
}
