# The other way users take the runner: COPY --from the binary-only image into an image of their
# own (here a bare busybox one), set the user and the entrypoint themselves.
ARG RUNNER
FROM ${RUNNER} AS runner

FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-m", "1777", "/tmp"]
COPY --from=runner /usr/local/bin/direktiv-cmd /usr/local/bin/direktiv-cmd
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/direktiv-cmd"]
