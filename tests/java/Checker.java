// MirrorMaker 2's own client library, run against a cluster Strait (or MM2) wrote to.
//
//   java -cp '<kafka libs>/*' tests/java/Checker.java <command> <args...> [+ <command> <args...>]...
//
// A single source file (Java 11+ source launch, no build step). Every result line starts with
// "CHECK " followed by a kind and space-separated key=value fields (values never contain spaces);
// log4j's output goes wherever it goes and is ignored by the caller. Exit status 0 when every
// record decoded, 1 when some did not, 2 on usage errors or exceptions.
//
// Commands:
//   translate <bootstrap> <sourceAlias> <group>
//       RemoteClusterUtils.translateOffsets(...) -> "CHECK offset topic=.. partition=.. offset=.."
//   client <bootstrap> <alias>
//       MirrorClient: upstreamClusters, heartbeatTopics, checkpointTopics, remoteTopics,
//       replicationHops(alias), and per remote topic countHopsForTopic(topic, alias) (the
//       method replicationHops uses; package-private, called by reflection) and topicSource.
//   decode <bootstrap> <topic> [checkpoint|heartbeat|offset-sync|progress]
//       reads every partition of the topic from its log start to its end offset and decodes
//       each record with MM2's own classes (Checkpoint/Heartbeat/OffsetSync.deserializeRecord,
//       Connect's JsonConverter for mm2-offsets.*); the kind is guessed from the name if absent.
//   move-leaders <bootstrap> <shift> <topic>...
//       moves the leadership of every partition of the topics with Kafka's Admin API, as an
//       operator does: a reassignment to the same replicas in an order whose first (preferred)
//       replica is another in-sync one (the shift-th after the leader), then a preferred leader
//       election -> "CHECK leader topic=.. partition=.. before=.. after=.. election=.." lines.
//   scram <bootstrap> <SCRAM-SHA-256|SCRAM-SHA-512> <user> <password|->
//       sets the user's SCRAM credential for the mechanism to a new password, or deletes it with
//       "-", with Admin.alterUserScramCredentials (as kafka-configs --alter --add-config
//       'SCRAM-SHA-512=[password=...]' does) -> "CHECK scram user=.. mechanism=.. action=.."

import java.lang.reflect.Method;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import java.util.Collections;
import java.util.Optional;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewPartitionReassignment;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialDeletion;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.common.ElectionType;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.mirror.Checkpoint;
import org.apache.kafka.connect.mirror.Heartbeat;
import org.apache.kafka.connect.mirror.MirrorClient;
import org.apache.kafka.connect.mirror.OffsetSync;
import org.apache.kafka.connect.mirror.RemoteClusterUtils;

public class Checker {
    static void out(String line) {
        System.out.println("CHECK " + line);
        System.out.flush();
    }

    static String join(Set<String> s) {
        return s.isEmpty() ? "" : String.join(",", new TreeSet<>(s));
    }

    /// No spaces in values: the caller splits on them.
    static String clean(Object o) {
        return String.valueOf(o).replace(' ', '_').replace('\n', '_');
    }

    public static void main(String[] args) {
        // Several commands in one JVM (compiling this file takes a few seconds): separated by "+".
        List<List<String>> commands = new ArrayList<>();
        commands.add(new ArrayList<>());
        for (String a : args) {
            if (a.equals("+")) commands.add(new ArrayList<>());
            else commands.get(commands.size() - 1).add(a);
        }
        int worst = 0;
        for (List<String> c : commands) {
            String[] argv = c.toArray(new String[0]);
            int status;
            if (argv.length < 2) {
                System.err.println("usage: Checker translate|client|decode <bootstrap> ... [+ more]");
                status = 2;
            } else {
                out("command " + String.join(" ", argv));
                try {
                    switch (argv[0]) {
                        case "translate": status = translate(argv); break;
                        case "client": status = client(argv); break;
                        case "decode": status = decode(argv); break;
                        case "move-leaders": status = moveLeaders(argv); break;
                        case "scram": status = scram(argv); break;
                        default:
                            System.err.println("unknown command " + argv[0]);
                            status = 2;
                    }
                } catch (Throwable t) {
                    out("exception " + clean(t));
                    t.printStackTrace();
                    status = 2;
                }
            }
            out("done status=" + status);
            worst = Math.max(worst, status);
        }
        System.exit(worst);
    }

    static int scram(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        ScramMechanism mechanism = ScramMechanism.fromMechanismName(args[2]);
        if (mechanism == ScramMechanism.UNKNOWN) throw new IllegalArgumentException("mechanism " + args[2]);
        String user = args[3];
        boolean delete = args[4].equals("-");
        UserScramCredentialAlteration change = delete
            ? new UserScramCredentialDeletion(user, mechanism)
            : new UserScramCredentialUpsertion(user, new ScramCredentialInfo(mechanism, 4096), args[4]);
        try (Admin admin = Admin.create(props)) {
            admin.alterUserScramCredentials(List.of(change)).all().get();
        }
        out("scram user=" + user + " mechanism=" + args[2] + " action=" + (delete ? "deleted" : "set"));
        return 0;
    }

    static int moveLeaders(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        int shift = Math.max(1, Integer.parseInt(args[2]));
        List<String> topics = Arrays.asList(args).subList(3, args.length);
        try (Admin admin = Admin.create(props)) {
            Map<String, TopicDescription> before = admin.describeTopics(topics).allTopicNames().get();
            Map<TopicPartition, Optional<NewPartitionReassignment>> moves = new HashMap<>();
            Map<TopicPartition, Integer> was = new HashMap<>();
            for (TopicDescription d : before.values()) {
                for (TopicPartitionInfo p : d.partitions()) {
                    TopicPartition tp = new TopicPartition(d.name(), p.partition());
                    int leader = p.leader() == null ? -1 : p.leader().id();
                    List<Integer> isr = new ArrayList<>();
                    for (Node n : p.isr()) if (n.id() != leader) isr.add(n.id());
                    Collections.sort(isr);
                    if (isr.isEmpty()) {
                        out("leader topic=" + tp.topic() + " partition=" + tp.partition()
                            + " before=" + leader + " after=" + leader + " election=no_other_in_sync_replica");
                        continue;
                    }
                    int chosen = isr.get((shift - 1) % isr.size());
                    List<Integer> order = new ArrayList<>();
                    order.add(chosen);
                    for (Node n : p.replicas()) if (n.id() != chosen) order.add(n.id());
                    moves.put(tp, Optional.of(new NewPartitionReassignment(order)));
                    was.put(tp, leader);
                }
            }
            if (moves.isEmpty()) return 0;
            admin.alterPartitionReassignments(moves).all().get();
            long deadline = System.currentTimeMillis() + 60_000;
            while (!admin.listPartitionReassignments(moves.keySet()).reassignments().get().isEmpty()) {
                if (System.currentTimeMillis() > deadline) throw new IllegalStateException("reassignment not done in 60 s");
                Thread.sleep(200);
            }
            Map<TopicPartition, Optional<Throwable>> elected =
                admin.electLeaders(ElectionType.PREFERRED, moves.keySet()).partitions().get();
            Map<String, TopicDescription> after = admin.describeTopics(topics).allTopicNames().get();
            for (TopicDescription d : after.values()) {
                for (TopicPartitionInfo p : d.partitions()) {
                    TopicPartition tp = new TopicPartition(d.name(), p.partition());
                    if (!was.containsKey(tp)) continue;
                    Optional<Throwable> e = elected.getOrDefault(tp, Optional.empty());
                    out("leader topic=" + tp.topic() + " partition=" + tp.partition()
                        + " before=" + was.get(tp) + " after=" + (p.leader() == null ? -1 : p.leader().id())
                        + " election=" + clean(e.map(t -> t.getClass().getSimpleName()).orElse("ok")));
                }
            }
        }
        return 0;
    }

    static int translate(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        Map<TopicPartition, OffsetAndMetadata> m =
            RemoteClusterUtils.translateOffsets(props, args[2], args[3], Duration.ofSeconds(20));
        for (Map.Entry<TopicPartition, OffsetAndMetadata> e : m.entrySet()) {
            out("offset topic=" + e.getKey().topic() + " partition=" + e.getKey().partition()
                + " offset=" + e.getValue().offset());
        }
        out("translated count=" + m.size());
        return 0;
    }

    static int client(String[] args) throws Exception {
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        String alias = args.length > 2 ? args[2] : "A";
        try (MirrorClient c = new MirrorClient(props)) {
            out("upstreamClusters value=" + join(c.upstreamClusters()));
            out("heartbeatTopics value=" + join(c.heartbeatTopics()));
            out("checkpointTopics value=" + join(c.checkpointTopics()));
            Set<String> remote = c.remoteTopics();
            out("remoteTopics value=" + join(remote));
            out("remoteTopicsFrom alias=" + alias + " value=" + join(c.remoteTopics(alias)));
            out("replicationHops alias=" + alias + " value=" + c.replicationHops(alias));
            Method count = MirrorClient.class.getDeclaredMethod("countHopsForTopic", String.class, String.class);
            count.setAccessible(true);
            for (String t : new TreeSet<>(remote)) {
                out("topicHops topic=" + t + " alias=" + alias + " hops=" + count.invoke(c, t, alias)
                    + " source=" + c.replicationPolicy().topicSource(t)
                    + " upstream=" + c.replicationPolicy().upstreamTopic(t));
            }
        }
        return 0;
    }

    static String guessKind(String topic) {
        if (topic.endsWith("checkpoints.internal")) return "checkpoint";
        if (topic.startsWith("mm2-offset-syncs")) return "offset-sync";
        if (topic.startsWith("mm2-offsets")) return "progress";
        if (topic.endsWith("heartbeats")) return "heartbeat";
        throw new IllegalArgumentException("cannot tell the record kind of " + topic);
    }

    static int decode(String[] args) throws Exception {
        String topic = args[2];
        String kind = args.length > 3 ? args[3] : guessKind(topic);
        Map<String, Object> props = new HashMap<>();
        props.put("bootstrap.servers", args[1]);
        props.put("enable.auto.commit", "false");
        props.put("isolation.level", "read_committed");
        JsonConverter keys = new JsonConverter();
        keys.configure(Map.of("schemas.enable", "false"), true);
        JsonConverter values = new JsonConverter();
        values.configure(Map.of("schemas.enable", "false"), false);
        int count = 0;
        int errors = 0;
        try (KafkaConsumer<byte[], byte[]> consumer =
                 new KafkaConsumer<>(props, new ByteArrayDeserializer(), new ByteArrayDeserializer())) {
            List<PartitionInfo> infos = consumer.partitionsFor(topic, Duration.ofSeconds(20));
            if (infos == null || infos.isEmpty()) {
                out("error topic=" + topic + " msg=no_such_topic");
                return 1;
            }
            List<TopicPartition> tps = new ArrayList<>();
            for (PartitionInfo i : infos) tps.add(new TopicPartition(topic, i.partition()));
            int partitions = tps.size();
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(20));
            long deadline = System.currentTimeMillis() + 60_000;
            while (true) {
                boolean done = true;
                for (TopicPartition tp : tps) {
                    if (consumer.position(tp, Duration.ofSeconds(20)) < end.get(tp)) done = false;
                }
                if (done) break;
                if (System.currentTimeMillis() > deadline) {
                    out("error topic=" + topic + " msg=timeout_reading_to_end");
                    return 1;
                }
                for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
                    count++;
                    String where = "p=" + r.partition() + " o=" + r.offset();
                    try {
                        switch (kind) {
                            case "checkpoint": {
                                Checkpoint c = Checkpoint.deserializeRecord(r);
                                out("checkpoint " + where + " group=" + c.consumerGroupId()
                                    + " topic=" + c.topicPartition().topic()
                                    + " partition=" + c.topicPartition().partition()
                                    + " upstream=" + c.upstreamOffset()
                                    + " downstream=" + c.downstreamOffset()
                                    + " metadata=" + clean(c.metadata()));
                                break;
                            }
                            case "heartbeat": {
                                Heartbeat h = Heartbeat.deserializeRecord(r);
                                out("heartbeat " + where + " source=" + h.sourceClusterAlias()
                                    + " target=" + h.targetClusterAlias()
                                    + " timestamp=" + h.timestamp()
                                    + " record_timestamp=" + r.timestamp());
                                break;
                            }
                            case "offset-sync": {
                                OffsetSync s = OffsetSync.deserializeRecord(r);
                                out("offsetsync " + where + " topic=" + s.topicPartition().topic()
                                    + " partition=" + s.topicPartition().partition()
                                    + " upstream=" + s.upstreamOffset()
                                    + " downstream=" + s.downstreamOffset());
                                break;
                            }
                            case "progress": {
                                errors += progress(r, partitions, keys, values, where);
                                break;
                            }
                            default:
                                throw new IllegalArgumentException("unknown kind " + kind);
                        }
                    } catch (Exception e) {
                        errors++;
                        out("error " + where + " msg=" + clean(e));
                    }
                }
            }
        }
        out("decoded topic=" + topic + " kind=" + kind + " count=" + count + " errors=" + errors);
        return errors == 0 ? 0 : 1;
    }

    /// A Connect source-offset record as MM2's worker reads it (JsonConverter, schemas off):
    /// key [connector, {cluster, partition, topic}], value {offset: N}. Also checks that the key
    /// is byte for byte what MM2's worker would write for that partition (Connect looks offsets
    /// up by the serialized key) and that the record sits in the partition Kafka's default
    /// partitioner picks for that key (so later writes of the same key by MM2 and Strait land in
    /// one partition, where the last one wins).
    @SuppressWarnings("unchecked")
    static int progress(ConsumerRecord<byte[], byte[]> r, int partitions, JsonConverter keys,
                        JsonConverter values, String where) {
        SchemaAndValue k = keys.toConnectData(r.topic(), r.key());
        List<Object> key = (List<Object>) k.value();
        String connector = (String) key.get(0);
        Map<String, Object> part = (Map<String, Object>) key.get(1);
        if (!connector.equals("MirrorSourceConnector")) {
            // MM2's heartbeat and checkpoint connectors keep their offsets in the same topic.
            Object v = r.value() == null ? null : values.toConnectData(r.topic(), r.value()).value();
            out("connector-offset " + where + " connector=" + connector
                + " partition_map=" + clean(new TreeMap<>(part)) + " value=" + clean(v));
            return 0;
        }
        String cluster = (String) part.get("cluster");
        String topic = (String) part.get("topic");
        int partition = ((Number) part.get("partition")).intValue();
        Map<String, Object> wrapped = new HashMap<>();  // MirrorUtils.wrapPartition
        wrapped.put("topic", topic);
        wrapped.put("partition", partition);
        wrapped.put("cluster", cluster);
        byte[] canonical = keys.fromConnectData(r.topic(), null, Arrays.asList(connector, wrapped));
        boolean canonicalKey = Arrays.equals(canonical, r.key());
        int expectedPartition = Utils.toPositive(Utils.murmur2(r.key())) % partitions;
        String offset;
        boolean canonicalValue = true;
        if (r.value() == null) {
            offset = "null";
        } else {
            Map<String, Object> v = (Map<String, Object>) values.toConnectData(r.topic(), r.value()).value();
            long n = ((Number) v.get("offset")).longValue();  // MirrorUtils.unwrapOffset
            offset = Long.toString(n);
            byte[] c = values.fromConnectData(r.topic(), null, Map.of("offset", n));
            canonicalValue = Arrays.equals(c, r.value());
        }
        out("progress " + where + " connector=" + connector + " cluster=" + cluster
            + " topic=" + topic + " partition=" + partition + " offset=" + offset
            + " canonical_key=" + canonicalKey + " canonical_value=" + canonicalValue
            + " expected_p=" + expectedPartition
            + " key=" + clean(new String(r.key(), StandardCharsets.UTF_8)));
        int errors = 0;
        if (!canonicalKey || !canonicalValue || expectedPartition != r.partition()) {
            out("error " + where + " msg=progress_record_not_as_MM2_writes_it");
            errors++;
        }
        return errors;
    }
}
