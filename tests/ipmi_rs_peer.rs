//! ipmi-rs (a third, independent Rust IPMI client; blocking, so it runs off the runtime) against
//! the virtual BMC. The BMC offers suites 1-3 here: ipmi-rs panics if suite 17 is negotiated.

use ferric_lab::machine::power::SimMachine;
use ferric_sim::machine::PowerState;
use ferric_sim::vbmc::{Bmc, BmcConfig, Faults, serve_udp};
use ipmi_rs::connection::{IpmiConnection, LogicalUnit, Message, Request, RequestTargetAddress};
use ipmi_rs::rmcp::Rmcp;
use std::sync::Arc;
use std::time::Duration;

fn raw(r: &mut Rmcp, netfn: u8, cmd: u8, data: Vec<u8>) -> (u8, Vec<u8>) {
    let mut req = Request::new(Message::new_raw(netfn, cmd, data), RequestTargetAddress::Bmc(LogicalUnit::Zero));
    let rsp = r.send_recv(&mut req).expect("ipmi-rs round trip");
    (rsp.cc(), rsp.data().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_rs_against_the_virtual_bmc() {
    let machine = Arc::new(SimMachine::new("n", Default::default()));
    let config = BmcConfig { cipher_suites: vec![1, 2, 3], ..Default::default() };
    let bmc = Bmc::new("n", config, machine.clone(), Arc::new(Faults::default())).unwrap();
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = socket.local_addr().unwrap().port();
    let task = tokio::spawn(serve_udp(bmc.clone(), socket));

    let (status, power_on_cc, bad_password) = tokio::task::spawn_blocking(move || {
        let addr = format!("127.0.0.1:{port}");
        let mut r = Rmcp::new(addr.clone(), Duration::from_secs(2)).unwrap();
        r.activate(true, Some("admin"), Some(b"password")).expect("RMCP+ session with ipmi-rs");
        let (cc, _) = raw(&mut r, 0x00, 0x02, vec![0x01]); // Chassis Control: power up
        let (scc, status) = raw(&mut r, 0x00, 0x01, vec![]); // Get Chassis Status
        assert_eq!(scc, 0);
        let (ucc, _) = raw(&mut r, 0x06, 0x99, vec![]);
        assert_eq!(ucc, 0xC1);
        let mut bad = Rmcp::new(addr, Duration::from_secs(2)).unwrap();
        let bad_password = bad.activate(true, Some("admin"), Some(b"wrong")).is_err();
        (status, cc, bad_password)
    })
    .await
    .unwrap();
    assert_eq!(power_on_cc, 0);
    assert_eq!(status[0] & 1, 1, "chassis reports power on");
    assert_eq!(machine.power_now(), PowerState::On);
    assert!(bad_password, "a wrong password must fail activation");
    task.abort();
}
