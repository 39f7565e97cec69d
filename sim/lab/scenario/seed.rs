//! The user guide's two sequence diagrams as message lists, and the comparison of a recorded
//! deploy with them.
//!
//! The diagram text is kept verbatim in `scenarios/seed/` (see the README there): the guide's
//! copy lost the backslash of each `\n` in the labels, so a seed label matches a recorded one
//! when it is the recorded words joined with nothing or with that stray `n`.

use ferric_types::trace::{Actor, TraceEvent};

/// Example 1: PXE boot and iSCSI deploy (verbatim from the guide).
pub const EXAMPLE1_ISCSI: &str = include_str!("../../../scenarios/seed/example1-pxe-iscsi.diag");
/// Example 2: PXE boot and direct deploy (verbatim from the guide).
pub const EXAMPLE2_DIRECT: &str = include_str!("../../../scenarios/seed/example2-pxe-direct.diag");

/// One item of a seqdiag list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedItem {
    Message {
        from: Actor,
        to: Actor,
        label: String,
    },
    /// `=== text ===`
    Separator(String),
}

fn actor(name: &str) -> Option<Actor> {
    Some(match name.trim().trim_matches('"') {
        "Nova" => Actor::Nova,
        "API" => Actor::Api,
        "Conductor" => Actor::Conductor,
        "Neutron" => Actor::Neutron,
        "HTTPStore" => Actor::HttpStore,
        "TFTP/HTTPd" => Actor::TftpHttpd,
        "Node" => Actor::Node,
        _ => return None,
    })
}

/// Parses the edges and separators of a seqdiag block (participants and settings are skipped).
pub fn parse(text: &str) -> Vec<SeedItem> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        // Separators sit between statements: `=== ... ===`.
        let sep = rest.find("===");
        let arrow = rest.find("->");
        match (sep, arrow) {
            (Some(s), a) if a.is_none_or(|a| s < a) => {
                let after = &rest[s + 3..];
                let Some(end) = after.find("===") else { break };
                out.push(SeedItem::Separator(after[..end].trim().to_string()));
                rest = &after[end + 3..];
            }
            (_, Some(a)) => {
                let start = rest[..a].rfind([';', '\n', '{']).map_or(0, |i| i + 1);
                let from = &rest[start..a];
                let after = &rest[a + 2..];
                let Some(br) = after.find('[') else { break };
                let to = &after[..br];
                let Some(q1) = after[br..].find('"') else { break };
                let lab_start = br + q1 + 1;
                let Some(q2) = after[lab_start..].find('"') else { break };
                let label = &after[lab_start..lab_start + q2];
                if let (Some(f), Some(t)) = (actor(from), actor(to)) {
                    out.push(SeedItem::Message { from: f, to: t, label: label.to_string() });
                }
                rest = &after[lab_start + q2 + 1..];
            }
            _ => break,
        }
    }
    out
}

/// Whether `seed` (a label of the guide's copy) is `recorded` with its line breaks lost: every
/// `\n` of the original became a bare `n`, so a seed `n` may stand for the whitespace between two
/// recorded words, or for nothing when it sits next to a space of its own (`device \nthrough`).
/// Whitespace runs compare as one space.
pub fn label_matches(seed: &str, recorded: &str) -> bool {
    let norm = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect::<Vec<char>>();
    let s = norm(seed);
    let r = norm(recorded);
    // reach[j]: recorded[..j] matches seed[..i] (for the current i).
    let mut reach = vec![false; r.len() + 1];
    reach[0] = true;
    for i in 0..s.len() {
        let lost_break = s[i] == 'n';
        let beside_space = lost_break && ((i > 0 && s[i - 1] == ' ') || s.get(i + 1) == Some(&' '));
        let mut next = vec![false; r.len() + 1];
        for j in 0..=r.len() {
            if !reach[j] {
                continue;
            }
            if beside_space {
                next[j] = true;
            }
            if let Some(&c) = r.get(j)
                && (c == s[i] || (lost_break && c == ' '))
            {
                next[j + 1] = true;
            }
        }
        reach = next;
    }
    reach[r.len()]
}

fn same(item: &SeedItem, e: &TraceEvent) -> bool {
    matches!(item, SeedItem::Message { from, to, label } if *from == e.from && *to == e.to && label_matches(label, &e.label))
}

/// Compares a recorded deploy with a seed list. Every message outside the seed's periodic section
/// must appear, in order; messages of the periodic section (between its `===` separators) may
/// appear any number of times; and every other recorded message must repeat one already seen
/// (further heartbeats). Returns what went wrong, with the recorded sequence for context.
pub fn compare(seed: &[SeedItem], recorded: &[TraceEvent]) -> Result<(), String> {
    let mut periodic = Vec::new();
    let mut mandatory = Vec::new();
    let mut inside = false;
    for item in seed {
        match item {
            // "=== Heartbeat periodically ===" opens the periodic section, "=== ... ===" closes it.
            SeedItem::Separator(t) => inside = t.trim() != "...",
            m => {
                if inside {
                    periodic.push(m.clone());
                } else {
                    mandatory.push(m.clone());
                }
            }
        }
    }
    let mut seen: Vec<&TraceEvent> = Vec::new();
    let mut next = 0;
    for (i, e) in recorded.iter().enumerate() {
        if mandatory.get(next).is_some_and(|m| same(m, e)) {
            next += 1;
            seen.push(e);
            continue;
        }
        let repeat = periodic.iter().any(|m| same(m, e))
            || seen.iter().any(|s| s.from == e.from && s.to == e.to && s.label == e.label);
        if !repeat {
            let want = mandatory.get(next).map(|m| format!("{m:?}")).unwrap_or_else(|| "nothing more".into());
            return Err(format!(
                "recorded message {i} ({} -> {}: {:?}) is not the next one of the seed ({want}) nor a repetition\n{}",
                e.from.as_str(),
                e.to.as_str(),
                e.label,
                render(recorded)
            ));
        }
    }
    if next < mandatory.len() {
        return Err(format!(
            "the recorded deploy ends before the seed's message {} ({:?})\n{}",
            next,
            mandatory[next],
            render(recorded)
        ));
    }
    Ok(())
}

fn render(events: &[TraceEvent]) -> String {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| format!("  {i:3} {} -> {}: {}", e.from.as_str(), e.to.as_str(), e.label))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_examples() {
        let e1 = parse(EXAMPLE1_ISCSI);
        let e2 = parse(EXAMPLE2_DIRECT);
        assert_eq!(e1.iter().filter(|i| matches!(i, SeedItem::Message { .. })).count(), 36);
        assert_eq!(e1.iter().filter(|i| matches!(i, SeedItem::Separator(_))).count(), 0);
        assert_eq!(e2.iter().filter(|i| matches!(i, SeedItem::Separator(_))).count(), 2);
        let first = &e2[0];
        assert!(matches!(first, SeedItem::Message { from: Actor::Nova, to: Actor::Api, .. }));
        let last = e2.last().unwrap();
        assert!(matches!(last, SeedItem::Message { label, .. } if label == "Mark node asnACTIVE"));
    }

    #[test]
    fn lost_line_breaks_match_words() {
        assert!(label_matches("Prepare PXEnenvironment forndeployment", "Prepare PXE environment for deployment"));
        assert!(label_matches("Set PXE boot device nthrough the BMC", "Set PXE boot device through the BMC"));
        assert!(label_matches(
            "Set instance_infon(image_source,nroot_gb, etc.)",
            "Set instance_info (image_source, root_gb, etc.)"
        ));
        assert!(label_matches("POWER OFF", "POWER OFF"));
        assert!(!label_matches("POWER OFF", "POWER ON"));
        assert!(!label_matches("Mark node asnACTIVE", "Mark node ACTIVE"));
        assert!(!label_matches("Cache deploynkernel", "Cache deployn kernel"));
    }

    #[test]
    fn periodic_section_and_repeats() {
        let seed = parse(EXAMPLE2_DIRECT);
        let ev = |from, to, label: &str| TraceEvent {
            at_ms: 0,
            node: ferric_types::models::NodeId(uuid::Uuid::nil()),
            from,
            to,
            label: label.into(),
        };
        let mut rec: Vec<TraceEvent> = Vec::new();
        for item in &seed {
            if let SeedItem::Message { from, to, label } = item {
                // Restore the lost line breaks as spaces: what a recorder writes.
                let l = label.replace("PXEnenvironment forndeployment", "PXE environment for deployment");
                rec.push(ev(*from, *to, &l));
            }
        }
        // Labels with lost breaks are matched as they are when recorded verbatim too.
        assert!(compare(&seed, &rec).is_ok(), "{:?}", compare(&seed, &rec));
        // Heartbeats repeat; the periodic poll may be absent.
        let hb = rec.iter().position(|e| e.label == "Heartbeat (UUID)").unwrap();
        rec.insert(hb + 3, rec[hb].clone());
        rec.retain(|e| e.label != "Still working...");
        assert!(compare(&seed, &rec).is_ok(), "{:?}", compare(&seed, &rec));
        // A missing mandatory message fails.
        let mut short = rec.clone();
        short.retain(|e| e.label != "Bind tenant port");
        assert!(compare(&seed, &short).is_err());
        // An unknown message fails.
        let mut extra = rec.clone();
        extra.insert(3, ev(Actor::Conductor, Actor::Node, "Format the disk"));
        assert!(compare(&seed, &extra).is_err());
    }
}
