# A local stand-in for gcr.io/distroless/cc-debian12, for machines that cannot pull it
# (dev/containers.sh): the shared libraries a C/Rust program links (glibc, libgcc_s, libssl3 with
# libcrypto), CA certificates, /etc/passwd with `nonroot`, and nothing else: no shell, no package
# manager. Debian's own packages, unpacked with dpkg-deb into an empty root.
FROM docker.io/library/debian:bookworm-slim AS unpack
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && mkdir -p /root-fs /debs && cd /debs \
 && apt-get download libc6 libgcc-s1 libssl3 \
 && for deb in /debs/*.deb; do dpkg-deb -x "$deb" /root-fs; done \
 && rm -rf /root-fs/usr/share/doc /root-fs/usr/share/lintian /root-fs/usr/share/locale \
      /root-fs/usr/lib/x86_64-linux-gnu/gconv /root-fs/usr/lib/x86_64-linux-gnu/audit \
      /root-fs/usr/share/i18n /root-fs/usr/bin /root-fs/usr/sbin /root-fs/sbin /root-fs/bin \
      /root-fs/etc/ld.so.conf.d /root-fs/usr/libexec \
 && mkdir -p /root-fs/etc/ssl/certs /root-fs/tmp /root-fs/home/nonroot \
 && cp /etc/ssl/certs/ca-certificates.crt /root-fs/etc/ssl/certs/ca-certificates.crt \
 && printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >/root-fs/etc/passwd \
 && printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >/root-fs/etc/group \
 && printf 'hosts: files dns\n' >/root-fs/etc/nsswitch.conf \
 && chmod 1777 /root-fs/tmp \
 && rm -rf /var/lib/apt/lists/*

FROM scratch
COPY --from=unpack /root-fs/ /
