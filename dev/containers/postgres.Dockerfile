# A local stand-in for the official postgres image (dev/containers/standins.sh), for machines that
# cannot pull it: Debian bookworm's PostgreSQL 15 behind the official image's interface that
# compose and Kubernetes rely on: POSTGRES_USER / POSTGRES_PASSWORD[_FILE] / POSTGRES_DB, PGDATA at
# /var/lib/postgresql/data, scripts in /docker-entrypoint-initdb.d run once on an empty data
# directory, then the server as PID 1 listening on every address with scram-sha-256.
FROM docker.io/library/debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PGDATA=/var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
EXPOSE 5432
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
