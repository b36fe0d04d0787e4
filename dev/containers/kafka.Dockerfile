# A local stand-in for apache/kafka:4.1.1 (dev/containers/standins.sh), for machines that cannot
# pull it: the same Kafka 4.1.1 jars the native stack takes from Maven Central, on Debian's
# JRE 17, with the official image's interface that compose relies on: KAFKA_* environment
# variables as server properties, CLUSTER_ID to format the storage, /opt/kafka/bin tools, uid 1000.
FROM docker.io/library/debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && mkdir -p /usr/share/man/man1 \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1000 appuser && useradd --uid 1000 --gid 1000 --home-dir /home/appuser --create-home appuser \
 && mkdir -p /opt/kafka/config /var/lib/kafka/data && chown -R 1000:1000 /opt/kafka/config /var/lib/kafka
COPY libs/ /opt/kafka/libs/
COPY kafka-bin/ /opt/kafka/bin/
COPY kafka-log4j2.properties /opt/kafka/config/log4j2.properties
COPY kafka-tools-log4j2.properties /opt/kafka/config/tools-log4j2.properties
USER 1000:1000
EXPOSE 9092
ENTRYPOINT ["/opt/kafka/bin/stand-in-entrypoint.sh"]
