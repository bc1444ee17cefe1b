//! Telling a source topic from a topic deleted and re-created under the same name.
//!
//! Fetch (up to v12, what Strait speaks) names topics, so a topic deleted and re-created while
//! Strait runs is fetched like the old one: at Strait's position, which in the new log is an
//! unrelated record (or past its end). Forwarding it would mix the new topic's records into the
//! old remote partition at the wrong offsets. Kafka gives every topic an id (KIP-516), reported
//! by Metadata: the id seen when a topic's partitions were assigned is remembered, and a topic
//! whose id changes is re-created. Pure: metadata snapshots in, topic names out.
//!
//! Brokers that report no id (all zeros) are not checked. Across restarts the id is not stored:
//! a topic re-created while Strait was down is caught only when its log ends before the stored
//! position (the fetcher's past-the-end report).

use std::collections::{BTreeSet, HashMap};

use protocol_client::cluster::Metadata;

/// The source topic ids seen at assignment, and the topics found re-created since.
#[derive(Debug, Default)]
pub(crate) struct TopicIds {
    ids: HashMap<String, [u8; 16]>,
    recreated: BTreeSet<String>,
}

impl TopicIds {
    /// Remembers the current id of each of `topics` not remembered yet.
    pub(crate) fn remember<'a>(
        &mut self,
        md: &Metadata,
        topics: impl IntoIterator<Item = &'a str>,
    ) {
        for topic in topics {
            if self.ids.contains_key(topic) {
                continue;
            }
            if let Some(id) = md
                .topics
                .get(topic)
                .map(|t| t.id)
                .filter(|id| *id != [0; 16])
            {
                self.ids.insert(topic.to_string(), id);
            }
        }
    }

    /// Topics whose id in `md` is not the remembered one, each reported once. A topic absent
    /// from `md` (deleted, or not in this answer) is not reported.
    pub(crate) fn changed(&mut self, md: &Metadata) -> Vec<String> {
        let mut out = Vec::new();
        for (topic, id) in &self.ids {
            if self.recreated.contains(topic) {
                continue;
            }
            let now = md.topics.get(topic).map(|t| t.id);
            if now.is_some_and(|now| now != [0; 16] && now != *id) {
                out.push(topic.clone());
            }
        }
        self.recreated.extend(out.iter().cloned());
        out
    }

    /// Whether `topic` was found re-created (its partitions are never assigned again).
    /// Whether `md` gives `topic` an id other than the one remembered (without marking it:
    /// [`TopicIds::changed`] does that, and the caller of `changed` stops the topic).
    pub(crate) fn differs(&self, md: &Metadata, topic: &str) -> bool {
        let Some(id) = self.ids.get(topic) else {
            return false;
        };
        md.topics
            .get(topic)
            .map(|t| t.id)
            .is_some_and(|now| now != [0; 16] && now != *id)
    }

    pub(crate) fn is_recreated(&self, topic: &str) -> bool {
        self.recreated.contains(topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_client::cluster::TopicInfo;

    fn md(topics: &[(&str, u8)]) -> Metadata {
        Metadata {
            topics: topics
                .iter()
                .map(|(name, id)| {
                    (
                        name.to_string(),
                        TopicInfo {
                            name: name.to_string(),
                            id: [*id; 16],
                            is_internal: false,
                            partitions: Vec::new(),
                            error: None,
                        },
                    )
                })
                .collect(),
            ..Metadata::default()
        }
    }

    #[test]
    fn a_new_id_under_the_same_name_is_reported_once() {
        let mut ids = TopicIds::default();
        ids.remember(&md(&[("t", 1), ("u", 2), ("z", 0)]), ["t", "u", "z"]);
        assert!(ids.changed(&md(&[("t", 1), ("u", 2)])).is_empty());
        // Deleted: absent, not re-created (yet).
        assert!(ids.changed(&md(&[("u", 2)])).is_empty());
        assert_eq!(ids.changed(&md(&[("t", 3), ("u", 2), ("z", 4)])), ["t"]);
        assert!(ids.is_recreated("t") && !ids.is_recreated("u"));
        assert!(ids.changed(&md(&[("t", 5)])).is_empty(), "reported once");
        // Remembering again does not replace the id it was assigned with.
        ids.remember(&md(&[("u", 9)]), ["u"]);
        assert_eq!(ids.changed(&md(&[("u", 9)])), ["u"]);
    }

    #[test]
    fn differs_looks_without_marking() {
        let mut ids = TopicIds::default();
        ids.remember(&md(&[("t", 1)]), ["t"]);
        let later = md(&[("t", 2), ("n", 3)]);
        assert!(ids.differs(&later, "t"));
        assert!(!ids.differs(&later, "n"), "never seen: not re-created");
        assert!(!ids.differs(&md(&[]), "t"), "absent: not re-created");
        assert_eq!(ids.changed(&later), ["t"], "still reported to the loop");
    }
}
