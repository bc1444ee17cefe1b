//! ApiVersions negotiation (KIP-35, KIP-511).
//!
//! The client sends ApiVersions at its highest version; a broker that does not know that version
//! answers `UNSUPPORTED_VERSION` with a v0-format body listing its own ranges, and the client
//! retries at the highest ApiVersions version the broker listed (or v0). For every other API the
//! version used is the highest both sides support.

use std::collections::HashMap;

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use kafka_protocol::protocol::Message;

use super::CodecError;

/// The versions of each API this client speaks.
#[derive(Debug, Clone, Copy)]
pub struct Supported;

impl Supported {
    /// Our range for `api`: kafka-protocol's schemas, capped where a newer version changes what we
    /// send (Produce v13 and Fetch v13+ address topics by id only, Metadata v13 is not needed).
    ///
    /// Also capped at what the schemas of the request and its response actually encode and
    /// decode: `ApiKey::valid_versions` can announce more (InitProducerId: 6 announced, 5
    /// encoded), and a broker offering that version must not make us pick it.
    pub fn range(api: ApiKey) -> (i16, i16) {
        let r = api.valid_versions();
        let cap = match api {
            ApiKey::Produce => 12,
            ApiKey::Fetch => 12,
            ApiKey::Metadata => 12,
            ApiKey::ApiVersions => 3,
            _ => r.max,
        };
        (r.min, r.max.min(cap).min(codable_max(api)))
    }
}

/// The highest version both the request and the response schema of `api` handle, for the
/// APIs this client sends (others: what `valid_versions` says).
fn codable_max(api: ApiKey) -> i16 {
    use kafka_protocol::messages::*;
    macro_rules! max_of {
        ($($key:ident => $req:ty, $resp:ty;)*) => {
            match api {
                $(ApiKey::$key => <$req as Message>::VERSIONS.max.min(<$resp as Message>::VERSIONS.max),)*
                _ => api.valid_versions().max,
            }
        };
    }
    max_of! {
        Produce => ProduceRequest, ProduceResponse;
        Fetch => FetchRequest, FetchResponse;
        ListOffsets => ListOffsetsRequest, ListOffsetsResponse;
        Metadata => MetadataRequest, MetadataResponse;
        OffsetCommit => OffsetCommitRequest, OffsetCommitResponse;
        OffsetFetch => OffsetFetchRequest, OffsetFetchResponse;
        FindCoordinator => FindCoordinatorRequest, FindCoordinatorResponse;
        JoinGroup => JoinGroupRequest, JoinGroupResponse;
        Heartbeat => HeartbeatRequest, HeartbeatResponse;
        LeaveGroup => LeaveGroupRequest, LeaveGroupResponse;
        SyncGroup => SyncGroupRequest, SyncGroupResponse;
        DescribeGroups => DescribeGroupsRequest, DescribeGroupsResponse;
        ListGroups => ListGroupsRequest, ListGroupsResponse;
        SaslHandshake => SaslHandshakeRequest, SaslHandshakeResponse;
        ApiVersions => ApiVersionsRequest, ApiVersionsResponse;
        CreateTopics => CreateTopicsRequest, CreateTopicsResponse;
        DeleteTopics => DeleteTopicsRequest, DeleteTopicsResponse;
        DeleteRecords => DeleteRecordsRequest, DeleteRecordsResponse;
        InitProducerId => InitProducerIdRequest, InitProducerIdResponse;
        DescribeAcls => DescribeAclsRequest, DescribeAclsResponse;
        CreateAcls => CreateAclsRequest, CreateAclsResponse;
        DescribeConfigs => DescribeConfigsRequest, DescribeConfigsResponse;
        SaslAuthenticate => SaslAuthenticateRequest, SaslAuthenticateResponse;
        CreatePartitions => CreatePartitionsRequest, CreatePartitionsResponse;
        IncrementalAlterConfigs => IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse;
        DescribeCluster => DescribeClusterRequest, DescribeClusterResponse;
    }
}

/// The version ranges a broker announced.
#[derive(Debug, Clone, Default)]
pub struct ApiVersionTable {
    ranges: HashMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    /// Reads the table out of an ApiVersions response.
    pub fn from_response(resp: &ApiVersionsResponse) -> ApiVersionTable {
        let ranges = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        ApiVersionTable { ranges }
    }

    /// The broker's range for `api`, if it offers it.
    pub fn broker_range(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.ranges.get(&(api as i16)).copied()
    }

    /// The highest version of `api` both sides support.
    pub fn pick(&self, api: ApiKey) -> Result<i16, CodecError> {
        let (cmin, cmax) = Supported::range(api);
        self.pick_within(api, cmin, cmax)
    }

    /// The highest version of `api` in `min..=max` the broker supports.
    pub fn pick_within(&self, api: ApiKey, min: i16, max: i16) -> Result<i16, CodecError> {
        let (bmin, bmax) = self
            .broker_range(api)
            .ok_or(CodecError::UnsupportedApi(api))?;
        let v = bmax.min(max);
        if v < bmin.max(min) {
            return Err(CodecError::NoCommonVersion {
                api,
                broker_min: bmin,
                broker_max: bmax,
                client_min: min,
                client_max: max,
            });
        }
        Ok(v)
    }

    /// The ApiVersions version to retry with after an `UNSUPPORTED_VERSION` answer.
    pub fn api_versions_fallback(resp: &ApiVersionsResponse) -> i16 {
        let ours = kafka_protocol::messages::ApiVersionsRequest::VERSIONS;
        ApiVersionTable::from_response(resp)
            .pick_within(ApiKey::ApiVersions, ours.min, ours.max.min(3))
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    /// A broker offering InitProducerId v6 (KIP-939), which kafka-protocol lists as valid but
    /// its schema cannot encode: picking it would fail every producer start with an encode error.
    #[test]
    fn a_version_the_schema_cannot_encode_is_never_picked() {
        use kafka_protocol::protocol::Encodable;
        let t = table(&[(ApiKey::InitProducerId, 0, 6)]);
        assert_eq!(t.pick(ApiKey::InitProducerId).unwrap(), 5);
        let req = kafka_protocol::messages::InitProducerIdRequest::default();
        let mut buf = bytes::BytesMut::new();
        req.encode(&mut buf, 5).expect("v5 encodes");
    }

    fn table(entries: &[(ApiKey, i16, i16)]) -> ApiVersionTable {
        let resp = ApiVersionsResponse::default().with_api_keys(
            entries
                .iter()
                .map(|(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*min)
                        .with_max_version(*max)
                })
                .collect(),
        );
        ApiVersionTable::from_response(&resp)
    }

    #[test]
    fn picks_highest_common_version() {
        let t = table(&[
            (ApiKey::Produce, 0, 11),
            (ApiKey::Fetch, 0, 17),
            (ApiKey::Metadata, 0, 1),
        ]);
        assert_eq!(t.pick(ApiKey::Produce).unwrap(), 11);
        assert_eq!(
            t.pick(ApiKey::Fetch).unwrap(),
            12,
            "capped: v13+ address topics by id"
        );
        assert_eq!(t.pick(ApiKey::Metadata).unwrap(), 1);
        assert!(matches!(
            t.pick(ApiKey::CreateTopics),
            Err(CodecError::UnsupportedApi(ApiKey::CreateTopics))
        ));
    }

    #[test]
    fn disjoint_ranges_are_an_error() {
        let t = table(&[(ApiKey::Produce, 0, 2)]);
        assert!(matches!(
            t.pick(ApiKey::Produce),
            Err(CodecError::NoCommonVersion {
                broker_max: 2,
                client_min: 3,
                ..
            })
        ));
    }

    #[test]
    fn api_versions_fallback_uses_brokers_range() {
        let resp = ApiVersionsResponse::default().with_api_keys(vec![ApiVersion::default()
            .with_api_key(ApiKey::ApiVersions as i16)
            .with_min_version(0)
            .with_max_version(2)]);
        assert_eq!(ApiVersionTable::api_versions_fallback(&resp), 2);
        assert_eq!(
            ApiVersionTable::api_versions_fallback(&ApiVersionsResponse::default()),
            0
        );
    }
}
