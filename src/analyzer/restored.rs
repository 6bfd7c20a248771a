//! The analysis of a flow restored from the sensor's state file: what its
//! analyzer knew when the sensor stopped (facts, the EVE object), kept as
//! it was. It reads no more bytes; the flow's identity, its alert state
//! and age go on, so the policy neither forgets the tunnel nor alerts on
//! it twice.

use super::facts::{AppFacts, SshFacts};
use super::{Analyzer, AppEvent, Emit};
use crate::json::Rendered;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// An analysis as the state file keeps it. Only SSH is kept today: the
/// flows that matter across a restart are the tunnels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SavedApp {
    pub app_proto: String,
    pub revision: u32,
    pub ssh: Box<SshFacts>,
    /// The `ssh` EVE object as it was.
    pub object: Option<String>,
}

impl SavedApp {
    /// What is kept of an analysis: its facts, when the flow is SSH (not
    /// SSH inferred inside another protocol).
    pub fn of(facts: &AppFacts, object: Option<(&'static str, Rendered)>) -> Option<SavedApp> {
        let ssh = facts.ssh.clone()?;
        let app_proto = facts.app_proto.filter(|p| *p == "ssh")?;
        Some(SavedApp {
            app_proto: app_proto.to_string(),
            revision: facts.revision,
            ssh,
            object: object.map(|(_, o)| o.as_str().to_string()),
        })
    }
}

/// The restored analysis of one flow.
pub struct Restored {
    facts: AppFacts,
    object: Option<Rendered>,
}

impl Restored {
    /// The analysis `saved` describes; `None` for a protocol this build
    /// does not restore, or an EVE object that is not one.
    pub fn new(saved: SavedApp) -> Option<Restored> {
        if saved.app_proto != "ssh" {
            return None;
        }
        let object = match saved.object {
            Some(text) => Some(Rendered::parse(text)?),
            None => None,
        };
        let facts = AppFacts {
            app_proto: Some("ssh"),
            revision: saved.revision,
            ssh: Some(saved.ssh),
            ..AppFacts::default()
        };
        Some(Restored { facts, object })
    }
}

impl Analyzer for Restored {
    fn done(&self) -> bool {
        true
    }

    fn facts(&self) -> &AppFacts {
        &self.facts
    }

    fn alert_object(&self) -> Option<(&'static str, Rendered)> {
        Some(("ssh", self.object.clone()?))
    }

    fn finish(&mut self, last_ts: Timestamp, out: &mut Emit) {
        if let Some(body) = self.object.take() {
            out.push(AppEvent {
                ts: last_ts,
                event_type: "ssh",
                body,
                extra: None,
                dns: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::facts::Evidence;

    fn ssh_facts() -> AppFacts {
        let ssh = SshFacts {
            client_banner: Some("SSH-2.0-OpenSSH_9.2p1".into()),
            remote_forward: Some(Evidence::new(
                "tcpip-forward",
                &[7, 8],
                Timestamp::from_secs(5),
                Timestamp::from_secs(6),
            )),
            ..SshFacts::default()
        };
        AppFacts {
            app_proto: Some("ssh"),
            revision: 9,
            ssh: Some(Box::new(ssh)),
            ..AppFacts::default()
        }
    }

    #[test]
    fn ssh_facts_and_object_come_back_as_they_were() {
        let facts = ssh_facts();
        let object = Rendered::build(|o| o.str("client", "x"));
        let saved = SavedApp::of(&facts, Some(("ssh", object.clone()))).unwrap();
        let text = serde_json::to_string(&saved).unwrap();
        let back: SavedApp = serde_json::from_str(&text).unwrap();
        assert_eq!(back, saved);
        let mut r = Restored::new(back).unwrap();
        assert!(r.done());
        assert_eq!(r.facts().ssh, facts.ssh);
        assert_eq!(r.facts().revision, 9);
        assert_eq!(r.alert_object().unwrap().1, object);
        let mut out = Vec::new();
        r.finish(Timestamp::from_secs(9), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].body, object);
    }

    #[test]
    fn only_ssh_is_kept_and_a_broken_object_is_refused() {
        let mut facts = ssh_facts();
        facts.ssh = None;
        assert!(SavedApp::of(&facts, None).is_none());
        let mut inside_tls = ssh_facts();
        inside_tls.app_proto = Some("tls");
        assert!(SavedApp::of(&inside_tls, None).is_none());
        let mut saved = SavedApp::of(&ssh_facts(), None).unwrap();
        saved.object = Some("{not json".into());
        assert!(Restored::new(saved.clone()).is_none());
        saved.object = None;
        saved.app_proto = "tls".into();
        assert!(Restored::new(saved).is_none());
    }
}
