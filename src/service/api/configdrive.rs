//! Config drives built from JSON (API 1.56/1.59): the OpenStack layout
//! (`openstack/{2012-08-10,latest}/{meta_data.json,network_data.json,vendor_data2.json,user_data}`)
//! on an ISO 9660 image labelled `config-2` with Joliet and Rock Ridge names, gzipped and
//! base64-encoded, as Ironic builds and stores them (`instance_info.configdrive`).

use base64::Engine;
use flate2::Compression;
use flate2::write::GzEncoder;
use hadris_iso::read::PathSeparator;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};
use serde_json::{Map, Value};
use std::io::{Cursor, Write};
use std::sync::Arc;

/// The volume label cloud-init and Glean look for.
pub const LABEL: &str = "config-2";

/// The metadata versions written, as Ironic's builder writes them.
const VERSIONS: &[&str] = &["2012-08-10", "latest"];

/// Largest config drive accepted (Ironic documents 64 MiB for the image).
pub const MAX_IMAGE: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    #[error("cannot build the config drive image: {0}")]
    Iso(String),
    #[error("cannot compress the config drive: {0}")]
    Gzip(#[from] std::io::Error),
    #[error("the config drive is larger than {MAX_IMAGE} bytes")]
    TooLarge,
}

/// The parts of a config drive given as JSON (Ironic's `configdrive` object).
#[derive(Debug, Clone, Default)]
pub struct ConfigDrive {
    pub meta_data: Map<String, Value>,
    pub user_data: Option<Vec<u8>>,
    pub network_data: Option<Value>,
    pub vendor_data: Option<Value>,
}

impl ConfigDrive {
    /// From the API's object, filling `meta_data.uuid` and `.name` from the node when missing
    /// (Ironic's `build_configdrive`); `user_data` given as JSON is stored as JSON text.
    pub fn from_request(cd: &Map<String, Value>, node_uuid: &str, node_name: Option<&str>) -> ConfigDrive {
        let mut meta_data = cd.get("meta_data").and_then(|m| m.as_object()).cloned().unwrap_or_default();
        meta_data.entry("uuid").or_insert_with(|| Value::String(node_uuid.to_string()));
        if let Some(n) = node_name {
            meta_data.entry("name").or_insert_with(|| Value::String(n.to_string()));
        }
        let user_data = match cd.get("user_data") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
            Some(other) => Some(ferric_types::py_json::dumps(other).into_bytes()),
        };
        let truthy =
            |v: Option<&Value>| v.filter(|v| !(v.is_null() || v.as_object().is_some_and(|m| m.is_empty()))).cloned();
        ConfigDrive {
            meta_data,
            user_data,
            network_data: truthy(cd.get("network_data")),
            vendor_data: truthy(cd.get("vendor_data")),
        }
    }

    /// The ISO 9660 image.
    pub fn iso(&self) -> Result<Vec<u8>, ConfigDriveError> {
        let mut files = vec![IsoFile::File {
            name: Arc::new("meta_data.json".into()),
            contents: ferric_types::py_json::dumps(&Value::Object(self.meta_data.clone())).into_bytes(),
        }];
        if let Some(n) = &self.network_data {
            files.push(IsoFile::File {
                name: Arc::new("network_data.json".into()),
                contents: ferric_types::py_json::dumps(n).into_bytes(),
            });
        }
        if let Some(v) = &self.vendor_data {
            files.push(IsoFile::File {
                name: Arc::new("vendor_data2.json".into()),
                contents: ferric_types::py_json::dumps(v).into_bytes(),
            });
        }
        if let Some(u) = &self.user_data {
            files.push(IsoFile::File { name: Arc::new("user_data".into()), contents: u.clone() });
        }
        let versions = VERSIONS
            .iter()
            .map(|v| IsoFile::Directory { name: Arc::new(v.to_string()), children: files.clone() })
            .collect();
        let tree = InputFiles {
            path_separator: PathSeparator::ForwardSlash,
            files: vec![IsoFile::Directory { name: Arc::new("openstack".into()), children: versions }],
        };
        let options = IsoFormatOptions {
            volume_name: LABEL.into(),
            system_id: None,
            volume_set_id: None,
            publisher_id: Some("ferric".into()),
            preparer_id: None,
            application_id: None,
            sector_size: 2048,
            path_separator: PathSeparator::ForwardSlash,
            features: CreationFeatures {
                filenames: BaseIsoLevel::Level2 { supports_lowercase: true, supports_rrip: true },
                ..CreationFeatures::extensions()
            },
            strict_charset: false,
        };
        let out = IsoImageWriter::create(Cursor::new(Vec::new()), tree, options)
            .map_err(|e| ConfigDriveError::Iso(e.to_string()))?;
        let image = out.into_inner();
        if image.len() > MAX_IMAGE {
            return Err(ConfigDriveError::TooLarge);
        }
        Ok(image)
    }

    /// The image gzipped and base64-encoded: what `instance_info.configdrive` holds.
    pub fn encoded(&self) -> Result<String, ConfigDriveError> {
        let iso = self.iso()?;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&iso)?;
        let zipped = gz.finish()?;
        Ok(base64::engine::general_purpose::STANDARD.encode(zipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn python_json_layout() {
        assert_eq!(
            ferric_types::py_json::dumps(&json!({"a": [1, "é"], "b": {"c": null}})),
            r#"{"a": [1, "\u00e9"], "b": {"c": null}}"#
        );
    }

    #[test]
    fn request_defaults_uuid_and_name() {
        let cd = json!({"meta_data": {"hostname": "h"}, "user_data": {"k": 1}, "network_data": {}});
        let c = ConfigDrive::from_request(cd.as_object().unwrap(), "u-1", Some("n1"));
        assert_eq!(Value::Object(c.meta_data.clone()), json!({"hostname": "h", "uuid": "u-1", "name": "n1"}));
        assert_eq!(c.user_data.as_deref(), Some(&br#"{"k": 1}"#[..]));
        assert!(c.network_data.is_none(), "empty network_data is skipped");
        let iso = c.iso().unwrap();
        assert_eq!(iso.len() % 2048, 0);
        // Primary volume descriptor at sector 16 carries the label.
        assert_eq!(&iso[16 * 2048 + 1..16 * 2048 + 6], b"CD001");
        assert_eq!(&iso[16 * 2048 + 40..16 * 2048 + 48], b"config-2");
    }
}
