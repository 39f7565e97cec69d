//! The image cache: fetch over HTTP (a real axum server on loopback) and file://, checksum
//! verification, one download for concurrent requests, hard links, LRU eviction of unused entries.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, State};
use axum::routing::get;
use ferric_service::pxe::cache::{CacheConfig, CacheError, Checksum, ImageCache, ImageRef, hex};
use sha2::{Digest, Sha256, Sha512};

struct Store {
    hits: AtomicUsize,
}

async fn image(State(s): State<Arc<Store>>, Path(name): Path<String>) -> Vec<u8> {
    s.hits.fetch_add(1, Ordering::SeqCst);
    // Slow enough that concurrent requests overlap.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    body(&name)
}

fn body(name: &str) -> Vec<u8> {
    name.bytes().cycle().take(100_000).collect()
}

fn sha256(b: &[u8]) -> Checksum {
    Checksum::Sha256(hex(&Sha256::digest(b)))
}

#[tokio::test]
async fn fetch_verify_dedupe_link_evict() {
    let store = Arc::new(Store { hits: AtomicUsize::new(0) });
    let app = Router::new().route("/img/{name}", get(image)).with_state(store.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = CacheConfig::new(dir.path().join("cache"));
    cfg.max_bytes = 250_000; // room for two 100 kB images
    let cache = Arc::new(ImageCache::open(cfg).unwrap());
    let img = |name: &str| ImageRef { url: format!("http://{addr}/img/{name}"), checksum: Some(sha256(&body(name))) };

    // Eight concurrent requests, one download.
    let a = img("a");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (c, a) = (cache.clone(), a.clone());
        tasks.push(tokio::spawn(async move { c.get(&a).await }));
    }
    for t in tasks {
        let p = t.await.unwrap().unwrap();
        assert_eq!(std::fs::read(p).unwrap(), body("a"));
    }
    assert_eq!(store.hits.load(Ordering::SeqCst), 1);
    assert_eq!(cache.downloads(), 1);

    // Hard link into a boot root: same inode, link count shows use.
    let linked = dir.path().join("tftp/node-1/deploy_kernel");
    cache.link(&a, &linked).await.unwrap();
    let master = cache.get(&a).await.unwrap();
    assert_eq!(std::fs::metadata(&linked).unwrap().ino(), std::fs::metadata(&master).unwrap().ino());
    assert_eq!(cache.downloads(), 1);

    // Wrong checksum: error, nothing cached, nothing linked.
    let bad = ImageRef { checksum: Some(sha256(b"other")), ..img("b") };
    let e = cache.get(&bad).await.unwrap_err();
    assert!(matches!(e, CacheError::ChecksumMismatch { .. }), "{e}");
    assert_eq!(std::fs::read_dir(dir.path().join("cache")).unwrap().count(), 1);
    // md5 refused unless allowed.
    let md5 = ImageRef { checksum: Some("md5:0123456789abcdef0123456789abcdef".parse().unwrap()), ..img("b") };
    assert!(matches!(cache.get(&md5).await, Err(CacheError::Md5NotAllowed)));
    // 404 is an error.
    let missing = ImageRef { url: format!("http://{addr}/nope"), checksum: None };
    assert!(matches!(cache.get(&missing).await, Err(CacheError::Fetch { .. })));

    // b, then c: over the bound. a is linked (in use), so b (least recently used) goes.
    let b = img("b");
    let pb = cache.get(&b).await.unwrap();
    let c = img("c");
    let pc = cache.get(&c).await.unwrap();
    assert!(master.exists(), "in-use entry kept");
    assert!(!pb.exists(), "unused LRU entry evicted");
    assert!(pc.exists());
    assert!(cache.usage() <= 250_000);
    // Once unlinked, a is evictable too.
    std::fs::remove_file(&linked).unwrap();
    let pd = cache.get(&img("d")).await.unwrap();
    assert!(!master.exists() && pc.exists() && pd.exists());

    // file:// with sha512, and a re-opened cache keeps its entries.
    let src = dir.path().join("local.img");
    std::fs::write(&src, b"local image").unwrap();
    let local = ImageRef {
        url: format!("file://{}", src.display()),
        checksum: Some(format!("sha512:{}", hex(&Sha512::digest(b"local image"))).parse().unwrap()),
    };
    let pl = cache.get(&local).await.unwrap();
    assert_eq!(std::fs::read(&pl).unwrap(), b"local image");
    drop(cache);
    let reopened = ImageCache::open(CacheConfig::new(dir.path().join("cache"))).unwrap();
    reopened.get(&local).await.unwrap();
    assert_eq!(reopened.downloads(), 0);
    assert!(matches!(
        reopened.get(&ImageRef { url: "ftp://x/y".into(), checksum: None }).await,
        Err(CacheError::Url(_))
    ));
    server.abort();
}

#[test]
fn checksum_parsing() {
    let h = "a".repeat(64);
    assert_eq!(h.parse::<Checksum>().unwrap(), Checksum::Sha256(h.clone()));
    assert_eq!(format!("SHA256:{}", h.to_uppercase()).parse::<Checksum>().unwrap(), Checksum::Sha256(h));
    assert!("sha256:abc".parse::<Checksum>().is_err());
    assert!("crc32:00000000".parse::<Checksum>().is_err());
    assert!("z".repeat(32).parse::<Checksum>().is_err());
}
