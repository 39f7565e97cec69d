//! The invariants every run must keep, checked once the fleet has settled.

use super::report::Check;
use crate::sim::SimLab;
use ferric_service::drivers::network::PROVISIONING_KEY;
use ferric_service::pxe::MacAddr;
use ferric_types::models::{Node, ProvisionState};
use ferric_types::state_machine;

/// Nodes in states where the ramdisk legitimately runs.
fn ramdisk_state(s: ProvisionState) -> bool {
    !state_machine::is_stable(s) && !state_machine::is_failure(s)
}

/// Checks every invariant; `records[i]` is machine i's node (None when not enrolled);
/// `powered[i]`: the last action on machine i was a power action, whose success clears
/// `last_error` (as Ironic's does), so a failed state without one is expected there.
pub fn check(lab: &SimLab, records: &[Option<Node>], powered: &[bool]) -> Vec<Check> {
    let mut out = Vec::new();
    let enrolled = || records.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r)));

    let transient: Vec<String> = enrolled()
        .filter(|(_, r)| !state_machine::is_stable(r.provision_state) && !state_machine::is_failure(r.provision_state))
        .map(|(i, r)| format!("node-{i}: {}", r.provision_state))
        .collect();
    out.push(Check::list("no node left in a transient state", &transient));

    let no_error: Vec<String> = enrolled()
        .filter(|(i, _)| !powered.get(*i).copied().unwrap_or(false))
        .filter(|(_, r)| state_machine::is_failure(r.provision_state) || r.provision_state == ProvisionState::Error)
        .filter(|(_, r)| r.last_error.as_deref().unwrap_or("").is_empty())
        .map(|(i, r)| format!("node-{i}: {} without last_error", r.provision_state))
        .collect();
    out.push(Check::list("every failed node has last_error", &no_error));

    let locked: Vec<String> = enrolled()
        .filter(|(_, r)| r.reservation.is_some())
        .map(|(i, r)| format!("node-{i}: locked by {}", r.reservation.as_deref().unwrap_or("")))
        .collect();
    let count = lab.db.count_reserved().unwrap_or(usize::MAX);
    let mut locked = locked;
    if count != 0 && locked.is_empty() {
        locked.push(format!("{count} locks held"));
    }
    out.push(Check::list("no lock held", &locked));

    let mut leaked = Vec::new();
    for (i, r) in enrolled() {
        if ramdisk_state(r.provision_state) {
            continue;
        }
        for p in lab.db.node_ports(r.uuid).unwrap_or_default() {
            if p.internal_info.get(PROVISIONING_KEY).and_then(|v| v.as_bool()).unwrap_or(false) {
                leaked.push(format!("node-{i}: port {} still on the provisioning network", p.address));
            }
            if let Some(h) = lab.net.hosts.lookup(&MacAddr(p.address.0))
                && !(r.provision_state == ProvisionState::Active && netboot(r))
            {
                leaked.push(format!("node-{i}: DHCP still answers {} ({:?})", p.address, h.loader));
            }
        }
    }
    out.push(Check::list("no provisioning port or DHCP entry leaked", &leaked));

    out.push(Check::list("recorded power state equals the machine's", &power_mismatches(lab, records)));

    let stray = lab.shared.stray_writes.lock().clone();
    out.push(Check::list("nothing written to a disk that was not being deployed", &stray));

    // A failed node the conductor could not power off (its BMC stopped answering) may still run
    // its ramdisk: the record does not claim it off (on, unknown, or in maintenance) and last_error
    // says why. Anywhere else a running
    // agent is one the conductor does not know about.
    let known_on = |i: usize, r: &Node| {
        (state_machine::is_failure(r.provision_state) || r.provision_state == ProvisionState::Error)
            && (r.maintenance || r.power_state != Some(ferric_types::models::PowerState::Off))
            && (r.last_error.as_deref().is_some_and(|e| !e.is_empty()) || powered.get(i).copied().unwrap_or(false))
    };
    let agents: Vec<String> = enrolled()
        .filter(|(i, r)| {
            lab.nodes.get(*i).is_some_and(|m| m.agent_running())
                && !ramdisk_state(r.provision_state)
                && !known_on(*i, r)
        })
        .map(|(i, r)| format!("node-{i}: agent running while {}", r.provision_state))
        .collect();
    out.push(Check::list("no agent left running unknown to the conductor", &agents));
    out
}

/// Nodes (not in maintenance) whose recorded power state is not their machine's.
pub fn power_mismatches(lab: &SimLab, records: &[Option<Node>]) -> Vec<String> {
    let mut power = Vec::new();
    for (i, r) in records.iter().enumerate().filter_map(|(i, r)| r.as_ref().map(|r| (i, r))) {
        let (Some(rec), false) = (r.power_state, r.maintenance) else { continue };
        let Some(m) = lab.nodes.get(i) else { continue };
        let actual = super::run::machine_power(m.machine.power_now());
        if rec != actual {
            power.push(format!("node-{i}: recorded {rec}, machine {actual}"));
        }
    }
    power
}

/// Whether an active node boots its instance over the network (its DHCP entry stays).
fn netboot(n: &Node) -> bool {
    n.instance_info.get("boot_option").and_then(|v| v.as_str()) == Some("netboot")
        || n.instance_info.get("capabilities").map(|c| c.to_string().contains("netboot")).unwrap_or(false)
}

/// The invariants of several conductors: never two conductors acting on one node (sampled:
/// `double_acts`); no node is left locked by a conductor that is not running; every node of a lost conductor was a live conductor's again by the loss's deadline
/// (heartbeat_timeout + 2 heartbeat_interval after it); no node that waited for its agent when
/// its conductor was lost was failed by the takeover (those deploys go on).
pub fn cluster_checks(
    lab: &SimLab,
    records: &[Option<Node>],
    losses: &[super::run::Loss],
    double_acts: &[String],
) -> Vec<Check> {
    let mut out = Vec::new();
    out.push(Check::list("never two conductors acting on one node", double_acts));
    let live = lab.live_hosts();
    let locked: Vec<String> = records
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
        .filter_map(|(i, r)| {
            let h = r.reservation.as_deref()?;
            (!live.iter().any(|l| l == h)).then(|| format!("node-{i}: locked by {h}"))
        })
        .collect();
    out.push(Check::list("no node locked by a conductor that is not alive", &locked));
    for l in losses {
        let name = format!(
            "{} nodes of {} (lost at {:.0} s) owned by a live conductor by {:.0} s",
            l.nodes.len(),
            l.host,
            l.at,
            l.deadline
        );
        match &l.owned {
            Some(bad) => out.push(Check::list(&name, bad)),
            None => out.push(Check::new(name, false, "the run ended before the deadline".into())),
        }
        let failed: Vec<String> = l
            .waiting
            .iter()
            .filter_map(|&i| {
                let r = records.get(i)?.as_ref()?;
                let e = r.last_error.as_deref().unwrap_or("");
                e.contains("went offline").then(|| format!("node-{i}: {} ({e})", r.provision_state))
            })
            .collect();
        out.push(Check::list(
            &format!("{} agent-waiting nodes of {} not failed by the takeover", l.waiting.len(), l.host),
            &failed,
        ));
    }
    out
}
