#!/usr/bin/env bash
# Kafka's command-line tools, as /opt/kafka/bin/*.sh of the official image: the script's name
# picks the class. A small client heap and C1 only, as healthchecks run these every few seconds.
set -euo pipefail
case "$(basename "$0")" in
  kafka-topics.sh) class=org.apache.kafka.tools.TopicCommand ;;
  kafka-broker-api-versions.sh) class=org.apache.kafka.tools.BrokerApiVersionsCommand ;;
  kafka-consumer-groups.sh) class=org.apache.kafka.tools.consumer.group.ConsumerGroupCommand ;;
  kafka-get-offsets.sh) class=org.apache.kafka.tools.GetOffsetShell ;;
  *) echo "$(basename "$0"): not part of the stand-in" >&2; exit 2 ;;
esac
exec java -Xms32m -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xshare:auto \
  -Dlog4j2.configurationFile=/opt/kafka/config/tools-log4j2.properties -cp '/opt/kafka/libs/*' "$class" "$@"
