# Stand-in for python:3.12-slim when no registry is at hand (docker/base-image.sh): the Debian
# base plus Debian's python3 (3.11 on bookworm) and its venv module, which the public image has.
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
CMD ["python3"]
