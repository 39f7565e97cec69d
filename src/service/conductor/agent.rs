//! The agent's session, in one place: its token is issued once (at lookup), checked on every
//! heartbeat, and forgotten when the ramdisk goes away (a power change other than "on"); its
//! callback URL is the one its first heartbeat gave.

use super::{Conductor, Result};
use crate::drivers::Task;
use ferric_types::models::{AgentSession, Node, NodeId};
use ferric_types::rpc::{Heartbeat, RpcError};
use ferric_types::trace::{Actor, seed};

/// What a second lookup gets instead of the secret, as in Ironic.
const MASKED: &str = "******";

/// Compares tokens in time that does not depend on where they differ.
fn token_eq(a: &str, b: &str) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Forgets the agent's token and URL (the ramdisk is gone); its version and last heartbeat stay
/// for the operator, as Ironic keeps them.
pub(crate) fn forget_agent(node: &mut Node) {
    if let Some(s) = &mut node.agent {
        s.token = None;
        s.url = None;
        if *s == AgentSession::default() {
            node.agent = None;
        }
    }
}

/// Issues the node's agent token, once: a second request (another lookup before the ramdisk
/// went away) gets an unusable token instead of the secret.
pub(crate) fn issue_token(t: &mut Task) -> String {
    let session = t.node.agent.get_or_insert_with(AgentSession::default);
    if session.token.is_some() {
        tracing::warn!(node = %t.node.uuid, "agent token already issued; refusing to issue another");
        return MASKED.to_string();
    }
    let token = t.env.clock.new_token();
    session.token = Some(token.clone());
    token
}

impl Conductor {
    /// Checks a heartbeat against the node's session: the token must be the one issued, and the
    /// callback URL the one the agent gave first. Returns whether this is the first heartbeat of
    /// this ramdisk boot. Reads the node without its lock: a refused heartbeat changes nothing.
    pub(crate) fn check_heartbeat(&self, node: NodeId, hb: &Heartbeat) -> Result<bool> {
        let (token, url) = self.db().view_node(node, |n, _| {
            let s = n.agent.as_ref();
            (s.and_then(|s| s.token.clone()), s.and_then(|s| s.url.clone()))
        })?;
        let Some(given) = hb.token.as_deref() else {
            tracing::warn!(node = %node, "heartbeat without an agent token");
            return Err(RpcError::Invalid("Agent token is required for heartbeat processing.".into()).into());
        };
        let expected = token.unwrap_or_default();
        if expected.is_empty() || expected == MASKED || !token_eq(&expected, given) {
            tracing::warn!(node = %node, "heartbeat with an invalid agent token");
            return Err(RpcError::Invalid("Invalid or missing agent token received.".into()).into());
        }
        if let Some(url) = &url
            && url != &hb.callback_url
        {
            return Err(RpcError::Invalid("Detected change in ramdisk provided \"callback_url\"".into()).into());
        }
        let first = url.is_none();
        if first {
            // The first heartbeat of a ramdisk boot is the diagrams' "Heartbeat".
            self.env().trace.record(node, Actor::Node, Actor::Api, seed::HEARTBEAT_UUID);
            self.env().trace.record(node, Actor::Api, Actor::Conductor, seed::HEARTBEAT);
        }
        Ok(first)
    }
}

/// Records a heartbeat in the node's session.
pub(crate) fn record_heartbeat(t: &mut Task, hb: &Heartbeat) {
    let now = t.env.clock.now();
    let session = t.node.agent.get_or_insert_with(AgentSession::default);
    session.url = Some(hb.callback_url.clone());
    session.last_heartbeat = Some(now);
    if let Some(v) = &hb.agent_version {
        session.version = Some(v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(token_eq("abc", "abc"));
        assert!(!token_eq("abc", "abd"));
        assert!(!token_eq("abc", "abcd"));
    }

    #[test]
    fn forgetting_keeps_what_the_operator_reads() {
        let mut n = Node {
            agent: Some(AgentSession {
                token: Some("t".into()),
                url: Some("http://192.0.2.9:9999".into()),
                version: Some("10.0.0".into()),
                ..Default::default()
            }),
            ..Node::default()
        };
        forget_agent(&mut n);
        let s = n.agent.clone().unwrap();
        assert_eq!((s.token, s.url, s.version.as_deref()), (None, None, Some("10.0.0")));
        n.agent.as_mut().unwrap().version = None;
        forget_agent(&mut n);
        assert!(n.agent.is_none());
    }
}
