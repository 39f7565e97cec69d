//! Bundles Mermaid (the npm package pinned in `console/assets/package-lock.json`) into the
//! binary, gzip-compressed, for the web console's sequence diagrams. When `node_modules` is
//! missing the build runs `npm ci` itself; when npm is absent too, the build still succeeds and
//! the console shows each diagram's Mermaid text instead (with a cargo warning here).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let assets = manifest.join("console/assets");
    let js = assets.join("node_modules/mermaid/dist/mermaid.min.js");
    println!("cargo:rerun-if-changed={}", assets.join("package-lock.json").display());
    println!("cargo:rerun-if-changed={}", js.display());
    if !js.exists() {
        npm_ci(&assets);
    }
    let gz = out.join("mermaid.min.js.gz");
    match std::fs::read(&js) {
        Ok(bytes) => match compress(&bytes, &gz) {
            Ok(()) => {}
            Err(e) => println!("cargo:warning=console: cannot write {}: {e}", gz.display()),
        },
        Err(_) => {
            println!(
                "cargo:warning=console: {} missing (npm ci failed or npm absent): diagrams show as Mermaid text",
                js.display()
            );
        }
    }
    if !gz.exists() {
        // The include_bytes! in the console needs a file either way.
        let _ = std::fs::write(&gz, b"");
    }
}

fn npm_ci(dir: &Path) {
    match Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--ignore-scripts"]).current_dir(dir).status() {
        Ok(s) if s.success() => {}
        Ok(s) => println!("cargo:warning=console: `npm ci` in {} failed ({s})", dir.display()),
        Err(e) => println!("cargo:warning=console: cannot run npm ({e})"),
    }
}

fn compress(bytes: &[u8], to: &Path) -> std::io::Result<()> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes)?;
    std::fs::write(to, enc.finish()?)
}
