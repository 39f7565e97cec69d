//! ferric's IPMI client against OpenIPMI's `ipmi_sim`, an independent BMC implementation
//! (Debian package openipmi, installed by .ci/install-deps). Loopback only; its configuration,
//! state and chassis hook live in a temp dir. ipmi_sim offers cipher suite 3 (not 17).

use ferric_service::ipmi::{BootDevice, ClientConfig, IpmiClient, IpmiError, PowerState, Target, UdpConnector};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// A running ipmi_sim in its own process group (its chassis hook runs as children).
struct IpmiSim {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for IpmiSim {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill").args(["-TERM", "--", &format!("-{pgid}")]).status();
        let _ = self.child.wait();
    }
}

/// Our chassis hook: ipmi_sim runs `hook <mc> get power boot` / `hook <mc> set power 1 ...`.
const HOOK: &str = r#"#!/bin/sh
dir=$(dirname "$0")
shift
op=$1; shift
echo "$op $*" >> "$dir/calls.log"
case $op in
get)
  for p in "$@"; do
    case $p in
      power) echo "power:$(cat "$dir/power" 2>/dev/null || echo 0)" ;;
      boot) echo "boot:$(cat "$dir/boot" 2>/dev/null || echo default)" ;;
      *) echo "unknown parameter $p"; exit 1 ;;
    esac
  done ;;
set)
  while [ $# -ge 2 ]; do
    case $1 in
      power) echo "$2" > "$dir/power" ;;
      shutdown) echo 0 > "$dir/power" ;;
      reset) : ;;
      boot) echo "$2" > "$dir/boot" ;;
      *) echo "unknown parameter $1"; exit 1 ;;
    esac
    shift 2
  done ;;
*) echo "unknown operation $op"; exit 1 ;;
esac
"#;

fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap().port()
}

fn start_ipmi_sim() -> IpmiSim {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_udp_port();
    let hook = d.join("chassis.sh");
    std::fs::write(&hook, HOOK).unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let lan = format!(
        r#"name "ferric"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {port}
    priv_limit admin
    allowed_auths_callback md5
    allowed_auths_user md5
    allowed_auths_operator md5
    allowed_auths_admin md5
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{hook} 0x20"
  user 2 true "admin" "password" admin 10 md5
"#,
        hook = hook.display()
    );
    std::fs::write(d.join("lan.conf"), lan).unwrap();
    std::fs::write(
        d.join("bmc.emu"),
        "mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\nmc_enable 0x20\n",
    )
    .unwrap();
    std::fs::create_dir(d.join("state")).unwrap();
    let child = Command::new("ipmi_sim")
        .current_dir(d)
        .args(["-c", "lan.conf", "-f", "bmc.emu", "-n", "-p", "-s"])
        .arg(d.join("state"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("ipmi_sim is installed (openipmi, .ci/install-deps)");
    IpmiSim { child, dir, port }
}

fn calls(d: &Path) -> String {
    std::fs::read_to_string(d.join("calls.log")).unwrap_or_default()
}

#[tokio::test]
async fn client_against_openipmi_ipmi_sim() {
    let sim = start_ipmi_sim();
    let config = ClientConfig {
        attempt_timeout: Duration::from_millis(500),
        retries: 2,
        min_interval: Duration::ZERO,
        ..Default::default()
    };
    let target = Target::new("127.0.0.1", "admin", "password").with_port(sim.port).with_cipher_suite(3);
    let c = IpmiClient::new(target.clone(), Arc::new(UdpConnector), config.clone());
    // Wait for the simulator to listen (bounded).
    let mut id = None;
    for _ in 0..40 {
        match c.device_id().await {
            Ok(d) => {
                id = Some(d);
                break;
            }
            Err(e) if e.is_transient() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let id = id.expect("ipmi_sim answered");
    assert_eq!(id.manufacturer_id, 0x1291);
    assert_eq!(id.product_id, 0x0f02);
    assert_eq!(id.ipmi_version, (2, 0));

    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    c.power_on().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::On);
    c.power_cycle().await.unwrap();
    c.power_reset().await.unwrap();
    c.power_soft().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);
    c.power_on().await.unwrap();
    c.power_off().await.unwrap();
    assert_eq!(c.power_state().await.unwrap(), PowerState::Off);

    c.set_boot_device(BootDevice::Pxe, false, false).await.unwrap();
    let b = c.get_boot_device().await.unwrap();
    assert_eq!(b.device, BootDevice::Pxe);
    let log = calls(sim.dir.path());
    assert!(log.contains("set power 1"), "{log}");
    assert!(log.contains("set reset 1"), "{log}");
    assert!(log.contains("set shutdown 1"), "{log}");
    assert!(log.contains("set boot pxe"), "{log}");
    c.close().await;

    // Wrong password: ipmi_sim's RAKP 2 proof does not verify with ours.
    let bad = IpmiClient::new(
        Target { password: ferric_service::ipmi::Secret("nope".into()), ..target.clone() },
        Arc::new(UdpConnector),
        config.clone(),
    );
    let e = bad.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::AuthFailed { status: 0x0F, .. }), "{e}");

    // Unknown user: ipmi_sim says so in RAKP 2.
    let nobody = IpmiClient::new(
        Target::new("127.0.0.1", "nobody", "password").with_port(sim.port),
        Arc::new(UdpConnector),
        config,
    );
    let e = nobody.power_state().await.unwrap_err();
    assert!(matches!(e, IpmiError::AuthFailed { .. }), "{e}");
}
