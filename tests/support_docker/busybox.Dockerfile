# What a user does with the binary-only image: FROM it, add a userland, keep the runner as the
# entrypoint and the nonroot user. busybox comes from the host (Debian's busybox-static).
ARG BASE
FROM ${BASE}
USER root
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
USER 65532:65532
