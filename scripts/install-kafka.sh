#!/usr/bin/env bash
# Installs Apache Kafka (broker, tools, MirrorMaker 2) from Maven Central jars, idempotently:
# resolves scripts/kafka/pom.xml with Maven into ${XDG_CACHE_HOME:-$HOME/.cache}/strait/kafka-<v>/libs
# (override the cache root with STRAIT_KAFKA_HOME), so later runs are offline and take a second.
# Installs a JDK (>= 17) and Maven from apt when they are missing. Prints the libs directory last.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
pom="$root/scripts/kafka/pom.xml"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom")"
home="${STRAIT_KAFKA_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/strait/kafka-$version}"
stamp="$home/libs/.complete-$(sha256sum "$pom" | cut -c1-16)"

java_major() {
  java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

if [ -f "$stamp" ] && command -v java >/dev/null 2>&1; then
  echo "kafka: $version in $home/libs (cached)" >&2
  echo "$home/libs"
  exit 0
fi

need=()
if ! command -v java >/dev/null 2>&1 || [ "$(java_major)" -lt 17 ]; then need+=(openjdk-17-jre-headless); fi
command -v mvn >/dev/null 2>&1 || need+=(maven)
if [ ${#need[@]} -gt 0 ]; then
  echo "kafka: installing ${need[*]} from apt" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >&2; then
    echo "kafka: cannot install ${need[*]}: Apache Kafka needs Java 17 or newer and Maven (apt-get install openjdk-17-jre-headless maven)" >&2
    exit 1
  fi
fi

mkdir -p "$home"
rm -rf "$home/libs.tmp"
echo "kafka: resolving Apache Kafka $version and MirrorMaker 2 from Maven Central into $home/libs" >&2
if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
     -DoutputDirectory="$home/libs.tmp" >&2; then
  echo "kafka: Maven could not resolve org.apache.kafka:kafka_2.13:$version (is Maven Central reachable?)" >&2
  exit 1
fi
rm -rf "$home/libs"
mv "$home/libs.tmp" "$home/libs"
touch "$stamp"
echo "kafka: $version installed, $(ls "$home/libs" | wc -l) jars" >&2
echo "$home/libs"
