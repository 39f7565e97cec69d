//! `ferric image ...`: the image service's command line, talking to `--url` / `FERRIC_URL`.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use super::model::{CreateImage, DiskFormat, Image};

/// `ferric image` arguments.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// ferric API endpoint.
    #[arg(long, env = "FERRIC_URL", default_value = "http://127.0.0.1:6385", global = true)]
    pub url: String,
    /// What to do.
    #[command(subcommand)]
    pub command: ImageCommand,
}

/// `ferric image` subcommands.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Register an image and upload its data.
    Create {
        /// Image file to upload.
        #[arg(long)]
        file: PathBuf,
        /// Name.
        #[arg(long)]
        name: String,
        /// File format.
        #[arg(long, value_parser = ["raw", "qcow2", "aki", "ari"], default_value = "raw")]
        disk_format: String,
        /// Container format.
        #[arg(long, default_value = "bare")]
        container_format: String,
        /// Kernel image (makes this a partition image).
        #[arg(long)]
        kernel_id: Option<String>,
        /// Ramdisk image (makes this a partition image).
        #[arg(long)]
        ramdisk_id: Option<String>,
    },
    /// List images.
    List,
    /// Show one image as JSON.
    Show {
        /// Image UUID.
        id: String,
    },
    /// Delete an image.
    Delete {
        /// Image UUID.
        id: String,
    },
}

/// Runs the command on its own runtime.
pub fn run(args: ImageArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run_async(args))
}

async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let msg = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or(body);
    bail!("{status}: {msg}")
}

pub async fn run_async(args: ImageArgs) -> anyhow::Result<()> {
    let base = args.url.trim_end_matches('/').to_string();
    let http = reqwest::Client::new();
    match args.command {
        ImageCommand::Create { file, name, disk_format, container_format, kernel_id, ramdisk_id } => {
            let f = tokio::fs::File::open(&file).await.with_context(|| format!("cannot open {}", file.display()))?;
            let disk_format: DiskFormat = serde_json::from_value(serde_json::Value::String(disk_format))?;
            let req = CreateImage {
                name: Some(name),
                disk_format: Some(disk_format),
                container_format: Some(container_format),
                kernel_id,
                ramdisk_id,
                ..Default::default()
            };
            let img: Image =
                check(http.post(format!("{base}/v2/images")).json(&req).send().await?).await?.json().await?;
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 1 << 20));
            let up = http
                .put(format!("{base}/v2/images/{}/file", img.id))
                .header("content-type", "application/octet-stream")
                .body(body)
                .send()
                .await;
            let up = match up {
                Ok(r) => check(r).await.map(|_| ()),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = up {
                let _ = http.delete(format!("{base}/v2/images/{}", img.id)).send().await;
                return Err(e);
            }
            let img: Image =
                check(http.get(format!("{base}/v2/images/{}", img.id)).send().await?).await?.json().await?;
            if img.status != super::model::ImageStatus::Active {
                let _ = http.delete(format!("{base}/v2/images/{}", img.id)).send().await;
                bail!("upload of {} failed; image removed", file.display());
            }
            println!("{}", serde_json::to_string_pretty(&img)?);
        }
        ImageCommand::List => {
            let v: serde_json::Value = check(http.get(format!("{base}/v2/images")).send().await?).await?.json().await?;
            let images: Vec<Image> = serde_json::from_value(v.get("images").cloned().unwrap_or_default())?;
            println!("{:<36}  {:<24}  {:<6}  {:<7}  {:>12}", "ID", "NAME", "FORMAT", "STATUS", "SIZE");
            for i in images {
                println!(
                    "{:<36}  {:<24}  {:<6}  {:<7}  {:>12}",
                    i.id,
                    i.name.unwrap_or_default(),
                    i.disk_format.map(|d| d.as_str()).unwrap_or("-"),
                    format!("{:?}", i.status).to_lowercase(),
                    i.size.map(|s| s.to_string()).unwrap_or_else(|| "-".into())
                );
            }
        }
        ImageCommand::Show { id } => {
            let v: serde_json::Value =
                check(http.get(format!("{base}/v2/images/{id}")).send().await?).await?.json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ImageCommand::Delete { id } => {
            check(http.delete(format!("{base}/v2/images/{id}")).send().await?).await?;
            println!("Deleted image {id}");
        }
    }
    Ok(())
}
