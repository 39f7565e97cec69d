//! The provision state machine, as a table (Ironic's `state_machine.py` transitions).

use crate::models::ProvisionState::{self, *};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Events that move a node between provision states. API verbs map onto some of them
/// ([`Verb::event`]); the rest are raised by the conductor as work progresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    Deploy,
    Rebuild,
    Delete,
    Manage,
    Provide,
    Inspect,
    Abort,
    Clean,
    Adopt,
    Rescue,
    Unrescue,
    Unhold,
    Service,
    // Internal events.
    Done,
    Fail,
    Wait,
    Resume,
    Hold,
}

impl Event {
    pub const ALL: &'static [Event] = &[
        Event::Deploy,
        Event::Rebuild,
        Event::Delete,
        Event::Manage,
        Event::Provide,
        Event::Inspect,
        Event::Abort,
        Event::Clean,
        Event::Adopt,
        Event::Rescue,
        Event::Unrescue,
        Event::Unhold,
        Event::Service,
        Event::Done,
        Event::Fail,
        Event::Wait,
        Event::Resume,
        Event::Hold,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Event::Deploy => "deploy",
            Event::Rebuild => "rebuild",
            Event::Delete => "delete",
            Event::Manage => "manage",
            Event::Provide => "provide",
            Event::Inspect => "inspect",
            Event::Abort => "abort",
            Event::Clean => "clean",
            Event::Adopt => "adopt",
            Event::Rescue => "rescue",
            Event::Unrescue => "unrescue",
            Event::Unhold => "unhold",
            Event::Service => "service",
            Event::Done => "done",
            Event::Fail => "fail",
            Event::Wait => "wait",
            Event::Resume => "resume",
            Event::Hold => "hold",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Event {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Event::ALL.iter().copied().find(|e| e.as_str() == s).ok_or(())
    }
}

/// A provisioning verb of the API (`target` of `PUT /v1/nodes/{id}/states/provision`): parsed
/// once, by the API, and sent to the conductor as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    Active,
    Deploy,
    Rebuild,
    Deleted,
    Undeploy,
    Manage,
    Provide,
    Inspect,
    Abort,
    Clean,
    Adopt,
    Rescue,
    Unrescue,
    Unhold,
    Service,
}

impl Verb {
    pub const ALL: &'static [Verb] = &[
        Verb::Active,
        Verb::Deploy,
        Verb::Rebuild,
        Verb::Deleted,
        Verb::Undeploy,
        Verb::Manage,
        Verb::Provide,
        Verb::Inspect,
        Verb::Abort,
        Verb::Clean,
        Verb::Adopt,
        Verb::Rescue,
        Verb::Unrescue,
        Verb::Unhold,
        Verb::Service,
    ];

    /// The API's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Active => "active",
            Verb::Deploy => "deploy",
            Verb::Rebuild => "rebuild",
            Verb::Deleted => "deleted",
            Verb::Undeploy => "undeploy",
            Verb::Manage => "manage",
            Verb::Provide => "provide",
            Verb::Inspect => "inspect",
            Verb::Abort => "abort",
            Verb::Clean => "clean",
            Verb::Adopt => "adopt",
            Verb::Rescue => "rescue",
            Verb::Unrescue => "unrescue",
            Verb::Unhold => "unhold",
            Verb::Service => "service",
        }
    }

    /// The verb an API `target` names, if any.
    pub fn parse(target: &str) -> Option<Verb> {
        Verb::ALL.iter().copied().find(|v| v.as_str() == target)
    }

    /// The event it raises, as Ironic's `VERBS` maps them.
    pub fn event(self) -> Event {
        match self {
            Verb::Active | Verb::Deploy => Event::Deploy,
            Verb::Rebuild => Event::Rebuild,
            Verb::Deleted | Verb::Undeploy => Event::Delete,
            Verb::Manage => Event::Manage,
            Verb::Provide => Event::Provide,
            Verb::Inspect => Event::Inspect,
            Verb::Abort => Event::Abort,
            Verb::Clean => Event::Clean,
            Verb::Adopt => Event::Adopt,
            Verb::Rescue => Event::Rescue,
            Verb::Unrescue => Event::Unrescue,
            Verb::Unhold => Event::Unhold,
            Verb::Service => Event::Service,
        }
    }

    /// The API minor version that introduced it (table data: Ironic's API version history).
    pub fn since(self) -> u32 {
        match self {
            Verb::Active | Verb::Deleted | Verb::Rebuild => 1,
            Verb::Manage | Verb::Provide => 4,
            Verb::Inspect => 6,
            Verb::Abort => 13,
            Verb::Clean => 15,
            Verb::Adopt => 17,
            Verb::Rescue | Verb::Unrescue => 38,
            Verb::Deploy | Verb::Undeploy => 73,
            Verb::Unhold => 85,
            Verb::Service => 87,
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// (from, event, to): the whole machine.
pub const TRANSITIONS: &[(ProvisionState, Event, ProvisionState)] = &[
    // Deploy.
    (Available, Event::Deploy, Deploying),
    (Deploying, Event::Fail, DeployFailed),
    (DeployFailed, Event::Rebuild, Deploying),
    (DeployFailed, Event::Deploy, Deploying),
    (Deploying, Event::Wait, DeployWait),
    (Deploying, Event::Hold, DeployHold),
    (DeployWait, Event::Hold, DeployHold),
    (DeployWait, Event::Resume, Deploying),
    (DeployWait, Event::Fail, DeployFailed),
    (DeployHold, Event::Unhold, DeployWait),
    (DeployHold, Event::Abort, DeployFailed),
    (DeployWait, Event::Abort, DeployFailed),
    (Deploying, Event::Done, Active),
    (Active, Event::Rebuild, Deploying),
    // Undeploy.
    (Active, Event::Delete, Deleting),
    (DeployWait, Event::Delete, Deleting),
    (DeployFailed, Event::Delete, Deleting),
    (Deleting, Event::Fail, Error),
    (Deleting, Event::Clean, Cleaning),
    // Cleaning.
    (Cleaning, Event::Done, Available),
    (Cleaning, Event::Fail, CleanFailed),
    (CleanWait, Event::Fail, CleanFailed),
    (CleanWait, Event::Abort, CleanFailed),
    (Cleaning, Event::Wait, CleanWait),
    (Cleaning, Event::Hold, CleanHold),
    (CleanWait, Event::Hold, CleanHold),
    (CleanWait, Event::Resume, Cleaning),
    (CleanHold, Event::Abort, CleanFailed),
    (CleanHold, Event::Unhold, CleanWait),
    (CleanFailed, Event::Manage, Manageable),
    (Manageable, Event::Provide, Cleaning),
    (Manageable, Event::Clean, Cleaning),
    (Cleaning, Event::Manage, Manageable),
    (Available, Event::Manage, Manageable),
    // Error.
    (Error, Event::Rebuild, Deploying),
    (Error, Event::Delete, Deleting),
    // Inspection.
    (Manageable, Event::Inspect, Inspecting),
    (Inspecting, Event::Done, Manageable),
    (Inspecting, Event::Fail, InspectFailed),
    (Inspecting, Event::Wait, InspectWait),
    (InspectWait, Event::Done, Manageable),
    (InspectWait, Event::Fail, InspectFailed),
    (InspectWait, Event::Abort, InspectFailed),
    (InspectWait, Event::Resume, Inspecting),
    (InspectFailed, Event::Manage, Manageable),
    (InspectFailed, Event::Inspect, Inspecting),
    // Rescue.
    (Active, Event::Rescue, Rescuing),
    (Rescuing, Event::Done, Rescue),
    (Rescuing, Event::Wait, RescueWait),
    (RescueWait, Event::Resume, Rescuing),
    (Rescue, Event::Rescue, Rescuing),
    (Rescue, Event::Delete, Deleting),
    (RescueWait, Event::Fail, RescueFailed),
    (Rescuing, Event::Fail, RescueFailed),
    (RescueWait, Event::Abort, RescueFailed),
    (RescueFailed, Event::Rescue, Rescuing),
    (RescueFailed, Event::Unrescue, Unrescuing),
    (RescueFailed, Event::Delete, Deleting),
    (RescueWait, Event::Delete, Deleting),
    (Rescue, Event::Unrescue, Unrescuing),
    (Unrescuing, Event::Done, Active),
    (Unrescuing, Event::Fail, UnrescueFailed),
    (UnrescueFailed, Event::Rescue, Rescuing),
    (UnrescueFailed, Event::Unrescue, Unrescuing),
    (UnrescueFailed, Event::Delete, Deleting),
    // Enrollment and verification.
    (Enroll, Event::Manage, Verifying),
    (Verifying, Event::Done, Manageable),
    (Verifying, Event::Fail, Enroll),
    // Adoption.
    (Manageable, Event::Adopt, Adopting),
    (Adopting, Event::Done, Active),
    (Adopting, Event::Fail, AdoptFailed),
    (AdoptFailed, Event::Adopt, Adopting),
    (AdoptFailed, Event::Manage, Manageable),
    // Servicing.
    (Servicing, Event::Done, Active),
    (Active, Event::Service, Servicing),
    (Servicing, Event::Fail, ServiceFailed),
    (Servicing, Event::Wait, ServiceWait),
    (Servicing, Event::Hold, ServiceHold),
    (ServiceWait, Event::Hold, ServiceHold),
    (ServiceHold, Event::Service, Servicing),
    (ServiceHold, Event::Unhold, ServiceWait),
    (ServiceWait, Event::Resume, Servicing),
    (ServiceWait, Event::Fail, ServiceFailed),
    (ServiceHold, Event::Fail, ServiceFailed),
    (ServiceWait, Event::Abort, ServiceFailed),
    (ServiceHold, Event::Abort, ServiceFailed),
    (ServiceFailed, Event::Service, Servicing),
    (ServiceFailed, Event::Rescue, Rescuing),
    (ServiceFailed, Event::Wait, ServiceWait),
    (ServiceFailed, Event::Hold, ServiceHold),
    (ServiceFailed, Event::Delete, Deleting),
    (ServiceFailed, Event::Abort, Active),
    (ServiceWait, Event::Delete, Deleting),
];

/// Where `event` takes a node in `from`, if anywhere.
pub fn next(from: ProvisionState, event: Event) -> Option<ProvisionState> {
    TRANSITIONS.iter().find(|(f, e, _)| *f == from && *e == event).map(|(_, _, to)| *to)
}

/// States that change only on request: they have no target.
pub fn is_stable(s: ProvisionState) -> bool {
    matches!(s, Enroll | Manageable | Available | Active | Error | Rescue)
}

/// Failure states: entered with `last_error` set.
pub fn is_failure(s: ProvisionState) -> bool {
    matches!(
        s,
        DeployFailed | CleanFailed | InspectFailed | RescueFailed | UnrescueFailed | AdoptFailed | ServiceFailed
    )
}

/// States in which work is under way in a conductor (cannot be resumed after a crash).
pub fn is_working(s: ProvisionState) -> bool {
    matches!(s, Deploying | Cleaning | Verifying | Inspecting | Adopting | Rescuing | Unrescuing | Deleting | Servicing)
}

/// States that wait for a ramdisk callback, with a timeout.
pub fn is_waiting(s: ProvisionState) -> bool {
    matches!(s, DeployWait | CleanWait | InspectWait | RescueWait | ServiceWait)
}

/// States in which a ramdisk may look itself up (`/v1/lookup`).
pub fn lookup_allowed(s: ProvisionState) -> bool {
    matches!(
        s,
        Deploying | DeployWait | Cleaning | CleanWait | Inspecting | InspectWait | Rescuing | RescueWait | ServiceWait
    )
}

/// The stable state an unstable state works towards (Ironic's per-state `target`).
pub fn target_of(s: ProvisionState) -> Option<ProvisionState> {
    Some(match s {
        Verifying => Manageable,
        Deploying | DeployWait | DeployFailed | DeployHold => Active,
        Cleaning | CleanWait | CleanFailed | CleanHold | Deleting => Available,
        Inspecting | InspectFailed | InspectWait => Manageable,
        Adopting | AdoptFailed => Active,
        Rescuing | RescueWait | RescueFailed => Rescue,
        Unrescuing | UnrescueFailed => Active,
        Servicing | ServiceWait | ServiceFailed | ServiceHold => Active,
        Enroll | Manageable | Available | Active | Error | Rescue => return None,
    })
}

/// The failure state a working or waiting state falls into, and the event that gets it there.
pub fn failure_of(s: ProvisionState) -> Option<(Event, ProvisionState)> {
    let to = next(s, Event::Fail)?;
    Some((Event::Fail, to))
}

/// Can `event` be raised in `state`?
pub fn is_actionable(state: ProvisionState, event: Event) -> bool {
    next(state, event).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_state_reachable_from_enroll() {
        let mut seen = vec![Enroll];
        let mut i = 0;
        while i < seen.len() {
            let s = seen[i];
            for (f, _, t) in TRANSITIONS {
                if *f == s && !seen.contains(t) {
                    seen.push(*t);
                }
            }
            i += 1;
        }
        for s in ProvisionState::ALL {
            assert!(seen.contains(s), "{s} unreachable");
        }
    }

    #[test]
    fn table_is_a_function() {
        for (i, (f, e, _)) in TRANSITIONS.iter().enumerate() {
            for (f2, e2, _) in &TRANSITIONS[i + 1..] {
                assert!(!(f == f2 && e == e2), "duplicate transition {f} --{e}-->");
            }
        }
    }

    #[test]
    fn unstable_states_have_targets() {
        for s in ProvisionState::ALL {
            assert_eq!(is_stable(*s), target_of(*s).is_none(), "{s}");
        }
    }

    #[test]
    fn working_and_waiting_states_can_fail() {
        for s in ProvisionState::ALL {
            if is_working(*s) || is_waiting(*s) {
                assert!(failure_of(*s).is_some(), "{s} has no failure transition");
            }
        }
    }

    proptest! {
        #[test]
        fn random_events_follow_the_table(events in proptest::collection::vec(0..Event::ALL.len(), 0..64)) {
            let mut s = Enroll;
            for i in events {
                let e = Event::ALL[i];
                if let Some(to) = next(s, e) {
                    prop_assert!(TRANSITIONS.contains(&(s, e, to)));
                    s = to;
                }
            }
        }
    }
}
