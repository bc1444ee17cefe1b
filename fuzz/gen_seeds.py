#!/usr/bin/env python3
"""Writes the seeds of mm2_properties, strimzi_yaml, mm2_records and sasl_server into
fuzz/seeds/<target>/ (see fuzz/README.md). Run from anywhere: python3 fuzz/gen_seeds.py"""
import os, struct
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'seeds')
def w(target, name, data):
    d = os.path.join(root, target); os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), 'wb').write(data)

# ---------------- mm2_properties
w('mm2_properties', 'readme-minimal.properties', """clusters = A, B
A.bootstrap.servers = a1:9092,a2:9092
B.bootstrap.servers = b1:9092
A->B.enabled = true
A->B.topics = orders.*, payments
""")
w('mm2_properties', 'demo.properties', """clusters = A, B
A.bootstrap.servers = localhost:19092
B.bootstrap.servers = localhost:29092
A->B.enabled = true
A->B.topics = .*
replication.factor = 1
offset-syncs.topic.replication.factor = 1
checkpoints.topic.replication.factor = 1
heartbeats.topic.replication.factor = 1
offset.storage.replication.factor = 1
emit.checkpoints.interval.seconds = 1
""")
w('mm2_properties', 'overrides.properties', """# two clusters, both directions
clusters = A, B
A.bootstrap.servers = a1:9092, a2:9092
B.bootstrap.servers = b1:9092
A->B.enabled = true
B->A.enabled = true
A->B.topics = orders.*, payments
offset.lag.max = 50
A->B.offset.lag.max = 7
sync.group.offsets.enabled=true
sync.group.offsets.interval.seconds=30
emit.checkpoints.interval.seconds=5
refresh.groups.interval.seconds=-1
replication.factor=-1
replication.policy.class=IdentityReplicationPolicy
A->B.strait.inflight.bytes=1024
strait.coalesce.bytes=0
strait.offset-map.max-runs=128
strait.metrics.listen=127.0.0.1:9464
topics.blacklist=secret.*
groups.exclude=console-consumer-.*
config.properties.exclude=follower\\.replication\\.throttled\\.replicas
use.defaults.from=source
offset-syncs.topic.location=target
B.offset.storage.partitions=5
B.offset.storage.replication.factor=2
A.consumer.isolation.level=read_uncommitted
A->B.producer.linger.ms=5
admin.request.timeout.ms=1000
exactly.once.source.support=enabled
tasks.max=4
key.converter=org.apache.kafka.connect.converters.ByteArrayConverter
frobnicate=1
A.flux=3
A->B.wat=2
""")
w('mm2_properties', 'security-providers.properties', """clusters = A, B
security.protocol = SASL_SSL
sasl.mechanism = SCRAM-SHA-512
A.bootstrap.servers = a:9093
A.sasl.jaas.config = org.apache.kafka.common.security.scram.ScramLoginModule required username=\\"alice\\" password=\\"${env:A_PW}\\";
A.ssl.truststore.location = /etc/ca.p12
A.ssl.truststore.password = ${file:/etc/mm2/secrets.properties:truststore}
A.ssl.enabled.protocols = TLSv1.3,TLSv1.2
A.consumer.isolation.level = read_uncommitted
B.bootstrap.servers = ${env:B_BOOTSTRAP}
B.security.protocol = PLAINTEXT
A->B.enabled = true
A->B.topics = ${env:TOPICS}
""")
w('mm2_properties', 'declared-providers.properties', """config.providers = secrets, dir, k8s, env2, bad
config.providers.secrets.class = org.apache.kafka.common.config.provider.FileConfigProvider
config.providers.dir.class = org.apache.kafka.common.config.provider.DirectoryConfigProvider
config.providers.k8s.class = io.strimzi.kafka.KubernetesSecretConfigProvider
config.providers.env2.class = org.apache.kafka.common.config.provider.EnvVarConfigProvider
clusters = A, B
A.bootstrap.servers = ${secrets:/etc/mm2/secrets.properties:bootstrap}
B.bootstrap.servers = ${env2::B_BOOTSTRAP}
B.security.protocol = SASL_PLAINTEXT
B.sasl.mechanism = PLAIN
B.sasl.jaas.config = org.apache.kafka.common.security.plain.PlainLoginModule required username="${secrets:/etc/mm2/secrets.properties:user}" password="${dir:/run/secrets:pw}";
A.ssl.keystore.password = ${k8s:ns/mm2-user:password}
A->B.enabled = true
""")
w('mm2_properties', 'syntax.properties',
  "# comment\r\n! also\r\n  clusters : us, us.east\r\nus.bootstrap.servers u:1\r\n"
  "us.east.bootstrap.servers = e:1,\\\r\n     e2:1\r\nus->us.east.enabled=true\r\n"
  "us->us.east.topics=a\\u0041\\tb, c\\\\\r\nkey\\ with\\=escapes\\:=v\r\n"
  "us.east->us.emit.heartbeats.enabled = false\r\nus->us.east.replication.policy.separator=_\r\n")
w('mm2_properties', 'oauth.properties', """clusters = A, B
A.bootstrap.servers = a:9093
B.bootstrap.servers = b:9093
A.security.protocol = SASL_SSL
A.sasl.mechanism = OAUTHBEARER
A.sasl.jaas.config = org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub="alice" unsecuredLoginExtension_traceId="abc";
A.sasl.oauthbearer.token.endpoint.url = file:/run/token
B.security.protocol = SSL
B.ssl.truststore.type = PEM
B.ssl.truststore.certificates = -----BEGIN CERTIFICATE-----\\nMII\\n-----END CERTIFICATE-----
B.ssl.endpoint.identification.algorithm =
A->B.enabled = true
B->A.enabled = false
""")

# ---------------- strimzi_yaml
STRIMZI = r'''apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
metadata:
  name: mm2
spec:
  version: 3.9.0
  replicas: 1
  connectCluster: target
  clusters:
    - alias: source
      bootstrapServers: src-kafka:9093
      tls:
        trustedCertificates:
          - secretName: src-ca
            certificate: ca.crt
      authentication:
        type: scram-sha-512
        username: mm2-user
        passwordSecret:
          secretName: mm2-user
          password: password
    - alias: target
      bootstrapServers: tgt-kafka:9092
      config:
        config.storage.replication.factor: 1
        offset.storage.replication.factor: 1
  mirrors:
    - sourceCluster: source
      targetCluster: target
      sourceConnector:
        tasksMax: 4
        config:
          replication.factor: 1
          offset-syncs.topic.replication.factor: 1
          sync.topic.acls.enabled: "false"
          replication.policy.separator: "_"
      checkpointConnector:
        config:
          checkpoints.topic.replication.factor: 1
          sync.group.offsets.enabled: true
      topicsPattern: "orders.*, payments"
      groupsPattern: ".*"
      topicsBlacklistPattern: "orders-internal"
'''
w('strimzi_yaml', 'v1beta2-scram-tls.yaml', STRIMZI)
w('strimzi_yaml', 'tls-auth-patterns.yaml', r'''apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
spec:
  connectCluster: b
  clusters:
    - alias: a
      bootstrapServers: a:9093
      tls:
        trustedCertificates:
          - secretName: ca
            pattern: "*.crt"
      authentication:
        type: tls
        certificateAndKey:
          secretName: user
          certificate: user.crt
          key: user.key
    - alias: b
      bootstrapServers: b:9092
  mirrors:
    - sourceCluster: a
      targetCluster: b
      sourceConnector: {}
      heartbeatConnector: {}
''')
w('strimzi_yaml', 'v1-layout-oauth.yaml', r'''apiVersion: kafka.strimzi.io/v1
kind: KafkaMirrorMaker2
metadata:
  name: mm2
spec:
  target:
    alias: dst
    bootstrapServers: dst-kafka:9093
    offsetStorageTopic: my-offsets
    authentication:
      type: oauth
      clientId: mm2
      tokenEndpointUri: https://sso/token
      scope: kafka
      clientSecret:
        secretName: oauth
        key: secret
    tls:
      trustedCertificates:
        - secretName: src-ca
          pattern: "*"
  mirrors:
    - source:
        alias: src
        bootstrapServers: src-kafka:9092
        authentication:
          type: plain
          username: mm2-user
          passwordSecret:
            secretName: mm2-user
            password: password
        config:
          consumer.isolation.level: read_uncommitted
      sourceConnector:
        tasksMax: 2
        state: running
        config:
          replication.policy.class: org.apache.kafka.connect.mirror.IdentityReplicationPolicy
          offset-syncs.topic.location: target
      heartbeatConnector:
        pause: true
      checkpointConnector:
        config:
          emit.checkpoints.interval.seconds: 10
      topicsPattern: ".*"
      topicsExcludePattern: "internal.*"
      groupsExcludePattern: "console.*"
''')
w('strimzi_yaml', 'two-mirrors-anchors.yaml', r'''apiVersion: kafka.strimzi.io/v1beta2
kind: KafkaMirrorMaker2
spec:
  connectCluster: "c"
  clusters:
  - &a {alias: a, bootstrapServers: "a:9092", config: {request.timeout.ms: 5000}}
  - {alias: b, bootstrapServers: "b:9092"}
  - {alias: c, bootstrapServers: "c1:9092,c2:9092", authentication: {type: scram-sha-256, username: u, passwordSecret: {secretName: mm2-user, password: password}}}
  mirrors:
  - {sourceCluster: a, targetCluster: c, sourceConnector: {config: {sync.topic.configs.enabled: false}}, checkpointConnector: {}, groupsBlacklistPattern: "x"}
  - {sourceCluster: b, targetCluster: c, sourceConnector: {state: stopped}, heartbeatConnector: {config: {emit.heartbeats.interval.seconds: 5}}}
''')

# ---------------- mm2_records
def string(s):
    b = s.encode(); return struct.pack('>h', len(b)) + b
def single(kind, key, value, tomb=False):
    assert len(key) < 256
    return bytes([kind | (0x80 if tomb else 0), len(key)]) + key + (b'' if tomb else value)
sync_k = lambda t, p: string(t) + struct.pack('>i', p)
sync_v = lambda u, d: struct.pack('>qq', u, d)
cp_k = lambda g, t, p: string(g) + string(t) + struct.pack('>i', p)
cp_v = lambda u, d, m, ver=0: struct.pack('>hqq', ver, u, d) + string(m)
hb_k = lambda s, t: string(s) + string(t)
hb_v = lambda ts, ver=0: struct.pack('>hq', ver, ts)
om_head_k = lambda t, p: struct.pack('>hb', 0, 0) + string(t) + struct.pack('>i', p)
om_head_v = lambda s, f, e: struct.pack('>hqqq', 0, s, f, e)
om_run_k = lambda t, p, u: struct.pack('>hb', 0, 1) + string(t) + struct.pack('>iq', p, u)
om_run_v = lambda d, c: struct.pack('>hqq', 0, d, c)

w('mm2_records', 'offset-sync-golden', single(0, sync_k('orders', 7), sync_v(1000, 742)))
w('mm2_records', 'offset-sync-t1', single(0, sync_k('t1', 2), sync_v(100, 50)))
w('mm2_records', 'checkpoint-golden', single(1, cp_k('analytics', 'orders', 7), cp_v(1000, 742, '')))
w('mm2_records', 'checkpoint-metadata-v1-trailing', single(1, cp_k('g', 'A.orders', 0), cp_v(5, 3, 'meta', 1) + b'\x01\x02\x03'))
w('mm2_records', 'checkpoint-key', single(2, cp_k('analytics', 'orders', 7), b''))
w('mm2_records', 'heartbeat-golden', single(3, hb_k('us-east', 'eu-west'), hb_v(100)))
pk = b'["MirrorSourceConnector",{"cluster":"A","partition":0,"topic":"t"}]'
w('mm2_records', 'source-progress', bytes([4, len(pk)]) + pk + b'{"offset":41}')
pk2 = br' [ "A->B.MirrorSourceConnector" , { "topic" : "t\n\"x", "partition": 3, "cluster": "A" } ] '
w('mm2_records', 'source-progress-reordered', bytes([4, len(pk2)]) + pk2 + b'{"offset":null}')
w('mm2_records', 'source-progress-tombstone', bytes([4 | 0x80, len(pk)]) + pk)
w('mm2_records', 'offset-map-head', single(5, om_head_k('t', 1), om_head_v(0, 10, 7)))
w('mm2_records', 'offset-map-head-unknown-end', single(5, om_head_k('t', 1), om_head_v(5, 5, -1)))
w('mm2_records', 'offset-map-run', single(5, om_run_k('t', 1, 3), om_run_v(1, 4)))
w('mm2_records', 'offset-map-run-tombstone', single(5, om_run_k('t', 1, 3), b'', tomb=True))

def log(kind, param, records, prefix=b''):
    out = bytes([kind, param]) + prefix
    for k, v in records:
        assert len(k) < 256 and (v is None or len(v) < 255)
        out += bytes([len(k), 0xff if v is None else len(v)]) + k + (v or b'')
    return out
# An offset map log: runs 0..10 -> 0..10, marker at 10, 11..20 -> 10..19, then a head; a dropped run.
w('mm2_records', 'log-offset-map', log(6, 15, [
    (om_run_k('t', 0, 0), om_run_v(0, 10)),
    (om_run_k('t', 0, 11), om_run_v(10, 9)),
    (om_run_k('t', 0, 30), om_run_v(25, 5)),
    (om_run_k('t', 0, 30), None),
    (om_head_k('t', 0), om_head_v(0, 21, 19)),
    (om_run_k('u', 3, 100), om_run_v(7, 1)),
    (om_head_k('u', 3), om_head_v(50, 120, -1)),
]))
w('mm2_records', 'log-offset-map-bounded', log(6, 1, [
    (om_run_k('t', 0, 0), om_run_v(0, 5)),
    (om_run_k('t', 0, 6), om_run_v(5, 5)),
    (om_run_k('t', 0, 12), om_run_v(10, 5)),
    (om_head_k('t', 0), om_head_v(0, 17, 15)),
]))
syncs = [(sync_k('t', 0), sync_v(u, u // 2)) for u in (0, 1, 2, 4, 8, 16, 100, 200, 1000, 4096)]
syncs += [(sync_k('t', 1), sync_v(50, 40)), (sync_k('t', 1), sync_v(10, 5))]
w('mm2_records', 'log-offset-syncs-full', log(7, 1, syncs, struct.pack('>qq', 500, 300)))
w('mm2_records', 'log-offset-syncs-pessimistic', log(7, 2 * 5, syncs, struct.pack('>qq', 2000, 900)))
w('mm2_records', 'log-checkpoints', log(8, 0, [
    (cp_k('g', 'A.t', 0), cp_v(10, 5, '')),
    (cp_k('g', 'A.t', 0), cp_v(20, 15, 'm')),
    (cp_k('g', 'A.t', 0), cp_v(20, 15, 'm')),
    (cp_k('g', 'A.t', 0), cp_v(5, 2, '')),
    (cp_k('g', 'A.t', 1), cp_v(5, -1, '')),
    (cp_k('h', 'A.t', 0), cp_v(1, 1, '')),
]))

# ---------------- sasl_server
def msgs(*ms):
    return b''.join(struct.pack('>H', len(m)) + m for m in ms)
SF = b'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
SFIN = b'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='
w('sasl_server', 'scram-sha256-rfc7677', bytes([0]) + msgs(SF, SFIN))
w('sasl_server', 'scram-sha256-rfc7677-wrong-signature', bytes([0]) + msgs(SF, b'v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='))
w('sasl_server', 'scram-sha256-invalid-proof', bytes([0]) + msgs(SF, b'e=invalid-proof'))
w('sasl_server', 'scram-sha512-server-first-ext', bytes([1]) + msgs(SF + b',x=ext', b'v=AAAA,y=z'))
w('sasl_server', 'scram-unknown-user', bytes([1]) + msgs(b'e=unknown-user'))
w('sasl_server', 'scram-mandatory-extension', bytes([0]) + msgs(b'm=ext,' + SF))
w('sasl_server', 'scram-too-many-iterations', bytes([0]) + msgs(SF.replace(b'i=4096', b'i=10000001')))
w('sasl_server', 'scram-too-few-iterations', bytes([0]) + msgs(SF.replace(b'i=4096', b'i=4095')))
w('sasl_server', 'plain-accepted', bytes([2]) + msgs(b''))
w('sasl_server', 'plain-unexpected', bytes([2]) + msgs(b'unexpected\n\x1b[31m', b''))
w('sasl_server', 'oauth-accepted', bytes([3]) + msgs(b''))
w('sasl_server', 'oauth-error-json', bytes([3]) + msgs(
    b'{"status":"invalid_token","scope":"kafka","openid-configuration":"https://sso/.well-known/openid-configuration"}', b''))
w('sasl_server', 'oauth-error-escapes', bytes([3]) + msgs(b'{ "status" : "bad\\u0041\\n\\"x\\"" }', b''))
for struct_sel, name in ((0x08, 'scram-sha256-structured'), (0x09, 'scram-sha512-structured')):
    for mode in range(6):
        body = bytes([15]) + bytes(range(16)) + bytes([7, 21]) + b'%hvYDpWUa2RaTCAfuxFIlj' + bytes([2, 3]) + b'abc' + bytes([1]) + b'q' + bytes([mode]) + b'\x05\x03tail'
        w('sasl_server', f'{name}-final-{mode}', bytes([struct_sel]) + body)
# Wrapped: SaslAuthenticate v2 (flexible) and v0 responses around the RFC exchange.
def uvarint(n):
    out = b''
    while True:
        b = n & 0x7f; n >>= 7
        if n: out += bytes([b | 0x80])
        else: return out + bytes([b])
def auth_v2(auth, lifetime=0, err=0):
    # header tagged fields, error_code, error_message (compact nullable: 0 = null), auth_bytes (compact), lifetime, tagged fields
    return b'\x00' + struct.pack('>h', err) + b'\x00' + uvarint(len(auth) + 1) + auth + struct.pack('>q', lifetime) + b'\x00'
def auth_v0(auth, err=0):
    return struct.pack('>h', err) + struct.pack('>h', -1) + struct.pack('>i', len(auth)) + auth
w('sasl_server', 'wrapped-v2-scram-rfc7677', bytes([0x04 | (2 << 4)]) + msgs(auth_v2(SF, 3600000), auth_v2(SFIN, 3600000)))
w('sasl_server', 'wrapped-v0-scram-rfc7677', bytes([0x04]) + msgs(auth_v0(SF), auth_v0(SFIN)))
w('sasl_server', 'wrapped-v2-plain', bytes([0x06 | (2 << 4)]) + msgs(auth_v2(b'', 1 << 62)))
w('sasl_server', 'wrapped-v2-oauth-error', bytes([0x07 | (2 << 4)]) + msgs(auth_v2(b'{"status":"invalid_token"}'), auth_v2(b'')))
w('sasl_server', 'wrapped-v1-auth-failed', bytes([0x04 | (1 << 4)]) + msgs(struct.pack('>h', 58) + struct.pack('>h', 6) + b'denied' + struct.pack('>i', 0) + struct.pack('>q', 0)))
# SaslHandshake v1 response: error_code, mechanisms array
hs = struct.pack('>hi', 0, 2) + string('SCRAM-SHA-512') + string('PLAIN')
w('sasl_server', 'wrapped-handshake-v1', bytes([0x05]) + hs)
