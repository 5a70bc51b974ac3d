# A busybox image of the user's own, without the runner: the README's COPY --from Dockerfile
# adds the runner to it. busybox comes from the host (Debian's busybox-static).
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-m", "1777", "/tmp"]
CMD ["/bin/sh"]
