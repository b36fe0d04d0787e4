# A local stand-in for confluentinc/cp-schema-registry (dev/containers/standins.sh), for machines
# that cannot pull it: Apicurio Registry (the native stack's, from Maven Central) serving the
# Confluent-compatible API at /apis/ccompat/v7 on port 8081, on the host's JDK 21+ (Debian
# bookworm has none). Schemas are kept in memory: a stand-in for one smoke run.
FROM docker.io/library/debian:bookworm-slim
COPY jdk/ /opt/java/
COPY app/ /opt/apicurio/
ENV PATH=/opt/java/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    QUARKUS_HTTP_PORT=8081 \
    QUARKUS_HTTP_HOST=0.0.0.0 \
    APICURIO_REST_DELETION_ARTIFACT_ENABLED=true \
    APICURIO_REST_DELETION_ARTIFACT_VERSION_ENABLED=true \
    APICURIO_REST_DELETION_GROUP_ENABLED=true
WORKDIR /opt/apicurio
USER 1001:1001
EXPOSE 8081
ENTRYPOINT ["java", "-Xms128m", "-Xmx512m", "-jar", "/opt/apicurio/quarkus-run.jar"]
