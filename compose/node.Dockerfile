# taskmesh/node, the offline path: built by compose/build-images.sh from a context that
# holds only this file and the host-built, debug-stripped `taskmesh` binary. The base is
# taskmesh/base:bookworm (debootstrap minbase, imported locally): no registry involved.
# With a registry, compose/Dockerfile builds the same image in a multi-stage build.
FROM taskmesh/base:bookworm

# The user first: this layer stays cached when only the binary changes.
RUN groupadd --system --gid 10001 taskmesh \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin taskmesh \
 && install -d -o taskmesh -g taskmesh -m 0750 /data

COPY taskmesh /usr/local/bin/taskmesh

# Every flag of `taskmesh node` reads a TASKMESH_* variable; override with -e / environment:.
# Logs are JSON lines on stderr; Docker's log driver records stdout and stderr alike.
ENV TASKMESH_LISTEN=0.0.0.0:8080 \
    TASKMESH_DATA_DIR=/data \
    TASKMESH_LOG_FORMAT=json

USER 10001:10001
# The embedded store lives here. No VOLUME: a node on Redis keeps nothing in /data, and
# every replica would leave an anonymous volume behind. On the embedded store, mount one:
# `-v taskmesh-data:/data` (a new named volume takes /data's owner, uid 10001).
WORKDIR /data
# 8080: HTTP API, /health, /metrics. 4697: cluster port (reserved for the cluster work).
EXPOSE 8080 4697

# Liveness from inside the container with no extra tool: bash's /dev/tcp sends
# GET /health to the port of TASKMESH_LISTEN and wants a 200 status line.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${TASKMESH_LISTEN##*:} && printf 'GET /health HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && read -r line <&3 && [[ $line == HTTP/1.?' 200 '* ]]"]

# taskmesh is PID 1 and handles SIGTERM itself: it drains (up to
# TASKMESH_SHUTDOWN_GRACE_SECS, 30 s by default) and exits 0. Give `docker stop -t` /
# compose's stop_grace_period a little more than that grace.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/taskmesh"]
CMD ["node"]
