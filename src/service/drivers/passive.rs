//! Behaviour of the interface kinds ferric implements by name (RAID, console, vendor), keyed by
//! the implementation's name as Ironic's `fake` and `no-*` interfaces behave: `no-*` refuses
//! with UnsupportedDriverExtension, `fake` accepts.

use super::DriverError;
use ferric_types::models::schema::{self, PATTERNS};
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn unsupported(driver: &str, extension: &str) -> DriverError {
    DriverError::Unsupported(format!("Driver {driver} does not support {extension} (disabled or not implemented)."))
}

/// Ironic's RAID configuration schema (`raid_config_schema.json`): what a target RAID
/// configuration may contain.
pub fn raid_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "logical_disks": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "raid_level": {"type": "string", "enum": ["JBOD", "0", "1", "2", "5", "6", "1+0", "5+0", "6+0"],
                            "description": "RAID level for the logical disk. Valid values are 'JBOD', '0', '1', '2', '5', '6', '1+0', '5+0' and '6+0'. Required."},
                        "size_gb": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "enum": ["MAX"]}],
                            "description": "Size in GiB (Integer) for the logical disk. Use 'MAX' as size_gb if this logical disk is supposed to use the rest of the space available. Required."},
                        "volume_name": {"type": "string",
                            "description": "Name of the volume to be created. If this is not specified, it will be auto-generated. Optional."},
                        "is_root_volume": {"type": "boolean",
                            "description": "Specifies whether this disk is a root volume. By default, this is False. Optional."},
                        "share_physical_disks": {"type": "boolean",
                            "description": "Specifies whether other logical disks can share physical disks with this logical disk. By default, this is False. Optional."},
                        "disk_type": {"type": "string", "enum": ["hdd", "ssd"],
                            "description": "The type of disk preferred. Valid values are 'hdd' and 'ssd'. If this is not specified, disk type will not be a selection criterion for choosing backing physical disks. Optional."},
                        "interface_type": {"type": "string", "enum": ["sata", "scsi", "sas"],
                            "description": "The interface type of disk. Valid values are 'sata', 'scsi' and 'sas'. If this is not specified, interface type will not be a selection criterion for choosing backing physical disks. Optional."},
                        "number_of_physical_disks": {"type": "integer", "minimum": 0, "exclusiveMinimum": true,
                            "description": "Number of physical disks to use for this logical disk. By default, the driver uses the minimum number of disks required for that RAID level. Optional."},
                        "controller": {"type": "string",
                            "description": "Controller to use for this logical disk. If not specified, the driver will choose a suitable RAID controller on the bare metal node. Optional."},
                        "physical_disks": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                                     {"type": "array", "items": {"type": "object"}, "minItems": 2}],
                            "description": "The physical disks to use for this logical disk. If not specified, the driver will choose suitable physical disks to use. Optional."}
                    },
                    "required": ["raid_level", "size_gb"],
                    "additionalProperties": false,
                    "dependencies": {"physical_disks": ["controller"]}
                },
                "minItems": 1
            }
        },
        "required": ["logical_disks"],
        "additionalProperties": false
    })
}

/// `GET /v1/drivers/{name}/raid/logical_disk_properties`: property → description. Every RAID
/// interface (even `no-raid`) reports the schema's properties, as Ironic's base class does.
pub fn raid_logical_disk_properties() -> BTreeMap<String, String> {
    let s = raid_schema();
    let props = &s["properties"]["logical_disks"]["items"]["properties"];
    props
        .as_object()
        .map(|m| {
            m.iter().map(|(k, v)| (k.clone(), v["description"].as_str().unwrap_or_default().to_string())).collect()
        })
        .unwrap_or_default()
}

/// Validates a target RAID configuration with the node's RAID interface.
pub fn validate_raid_config(iface: &str, driver: &str, config: &Value) -> Result<(), DriverError> {
    if iface.starts_with("no-") || iface.is_empty() {
        return Err(unsupported(driver, "raid"));
    }
    if let Some(e) = schema::validate(&raid_schema(), config, PATTERNS) {
        return Err(DriverError::InvalidParameter(format!("RAID config validation error: {}", e.message)));
    }
    let roots = config["logical_disks"]
        .as_array()
        .map(|d| d.iter().filter(|d| d.get("is_root_volume") == Some(&Value::Bool(true))).count())
        .unwrap_or(0);
    if roots > 1 {
        return Err(DriverError::InvalidParameter(format!(
            "Raid config cannot have more than one root volume. {roots} root volumes were specified"
        )));
    }
    Ok(())
}

/// Validates the console interface (enabling or disabling a console).
pub fn validate_console(iface: &str, driver: &str) -> Result<(), DriverError> {
    if iface.starts_with("no-") || iface.is_empty() {
        return Err(unsupported(driver, "console"));
    }
    Ok(())
}

/// A vendor passthru method and its metadata (`GET .../vendor_passthru/methods`).
#[derive(Debug, Clone, PartialEq)]
pub struct VendorRoute {
    pub name: &'static str,
    pub http_methods: &'static [&'static str],
    pub is_async: bool,
    pub description: &'static str,
    pub attach: bool,
    pub require_exclusive_lock: bool,
}

impl VendorRoute {
    /// The metadata Ironic shows for a node-level method.
    pub fn metadata(&self, node_level: bool) -> Value {
        let mut m = json!({
            "http_methods": self.http_methods,
            "async": self.is_async,
            "description": self.description,
            "attach": self.attach,
        });
        if node_level {
            m["require_exclusive_lock"] = json!(self.require_exclusive_lock);
        }
        m
    }
}

/// Node-level methods of a vendor interface (Ironic's `FakeVendorB` for `fake`).
pub fn vendor_routes(iface: &str) -> Vec<VendorRoute> {
    if iface != "fake" {
        return Vec::new();
    }
    let r = |name, is_async, description, lock| VendorRoute {
        name,
        http_methods: &["POST"],
        is_async,
        description,
        attach: false,
        require_exclusive_lock: lock,
    };
    vec![
        r("second_method", true, "Test if the value of bar is kazoo", true),
        r("third_method_sync", false, "Test if the value of bar is meow", true),
        r("fourth_method_shared_lock", true, "Test if the value of bar is woof", false),
        r("log_passthrough", true, "Test pass-through to wait.", true),
    ]
}

/// Driver-level methods of a vendor interface (none for `fake` or `no-vendor`).
pub fn driver_vendor_routes(_iface: &str) -> Vec<VendorRoute> {
    Vec::new()
}

/// Finds `method` among `routes` and checks the HTTP method, with Ironic's messages.
pub fn find_route<'a>(routes: &'a [VendorRoute], method: &str, http: &str) -> Result<&'a VendorRoute, DriverError> {
    let r = routes
        .iter()
        .find(|r| r.name == method)
        .ok_or_else(|| DriverError::InvalidParameter(format!("No handler for method {method}")))?;
    if !r.http_methods.contains(&http) {
        return Err(DriverError::InvalidParameter(format!("The method {method} does not support HTTP {http}")));
    }
    Ok(r)
}

/// Runs a node-level method of the `fake` vendor interface: validates its arguments and returns
/// its result (which the API shows only for synchronous methods).
pub fn call_fake_vendor(method: &str, args: &Value) -> Result<Value, DriverError> {
    let bar = args.get("bar").filter(|b| !b.is_null() && *b != &json!("") && *b != &json!(false));
    let expect = match method {
        "second_method" => "kazoo",
        "third_method_sync" => "meow",
        "fourth_method_shared_lock" => "woof",
        _ => return Ok(Value::Null),
    };
    let bar =
        bar.ok_or_else(|| DriverError::MissingParameter(format!("Parameter 'bar' not passed to method '{method}'.")))?;
    Ok(Value::Bool(bar == &json!(expect)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raid_validation_messages() {
        assert!(
            validate_raid_config(
                "fake",
                "fake-hardware",
                &json!({"logical_disks": [{"raid_level": "1", "size_gb": 10}]})
            )
            .is_ok()
        );
        let e = validate_raid_config(
            "fake",
            "fake-hardware",
            &json!({"logical_disks": [{"raid_level": "7", "size_gb": 10}]}),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "RAID config validation error: '7' is not one of ['JBOD', '0', '1', '2', '5', '6', '1+0', '5+0', '6+0']"
        );
        let e = validate_raid_config("no-raid", "ipmi", &json!({})).unwrap_err();
        assert_eq!(e.to_string(), "Driver ipmi does not support raid (disabled or not implemented).");
        let two_roots = json!({"logical_disks": [
            {"raid_level": "1", "size_gb": 10, "is_root_volume": true},
            {"raid_level": "0", "size_gb": "MAX", "is_root_volume": true}]});
        assert!(
            validate_raid_config("fake", "fake-hardware", &two_roots)
                .unwrap_err()
                .to_string()
                .contains("2 root volumes")
        );
        assert_eq!(raid_logical_disk_properties().len(), 10);
    }
}
